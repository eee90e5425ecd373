"""/person/*, /group/*, /faceset/* and the /info/* listings, on both databases.

Faces come from the real /face/detection endpoint fed with CelebA photos holding one face each.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import update

from app.db.models import Face
from app.db.session import session_scope
from tests.conftest import Credentials
from tests.utils.api import (
    HEX32,
    UNKNOWN,
    fails,
    info,
    keys,
    listed,
    new_faceset,
    new_group,
    new_person,
    ok,
    post,
    usage,
)

# --- create, info, change, delete ------------------------------------------------------------


def test_person_create_info_change_delete(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    f1, f2 = faces(2)
    body = ok(post(client, "/person/create", account, name="xiaoming", face_id=[f1, f2]))
    keys(body, "status", "person_id", "face_count")
    assert HEX32.match(body["person_id"])
    assert body["face_count"] == 2
    person = body["person_id"]

    bare = ok(post(client, "/person/create", account, name="bare"))
    keys(bare, "status", "person_id")  # face_count omitted when 0

    shown = info(client, account, "person", person)
    keys(shown, "status", "person_id", "name", "user_data", "face_ids")
    assert shown["person_id"] == person
    assert shown["name"] == "xiaoming"
    assert shown["user_data"] == ""
    assert shown["face_ids"] == [f1, f2]

    ok(post(client, "/person/delete", account, person_id=person))
    assert listed(client, account, "person") == [bare["person_id"]]


def test_group_create_info_change_delete(client: TestClient, account: Credentials) -> None:
    p1 = new_person(client, account, "testp1")
    body = ok(post(client, "/group/create", account, name="group3", person_id=[p1]))
    keys(body, "status", "group_id", "name", "person_count")
    assert HEX32.match(body["group_id"])
    assert (body["name"], body["person_count"]) == ("group3", 1)
    group = body["group_id"]

    bare = ok(post(client, "/group/create", account, name="empty", user_data="d"))
    keys(bare, "status", "group_id", "name")  # person_count omitted when 0
    assert info(client, account, "group", bare["group_id"])["user_data"] == "d"

    shown = info(client, account, "group", group)
    keys(shown, "status", "group_id", "name", "user_data", "persons")
    assert shown["persons"] == [{"person_id": p1, "name": "testp1"}]
    assert list(shown["persons"][0]) == ["person_id", "name"]

    ok(post(client, "/group/delete", account, group_id=group))
    info(client, account, "person", p1)  # the person outlives the group


def test_faceset_create_info_change_delete(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    f1, f2 = faces(2)
    body = ok(post(client, "/faceset/create", account, name="faceset1", face_id=f"{f1},{f2}"))
    keys(body, "status", "faceset_id", "name", "face_count")
    assert HEX32.match(body["faceset_id"])
    assert (body["name"], body["face_count"]) == ("faceset1", 2)
    faceset = body["faceset_id"]

    bare = ok(post(client, "/faceset/create", account, name="empty"))
    keys(bare, "status", "faceset_id", "name")  # face_count omitted when 0

    shown = info(client, account, "faceset", faceset)
    keys(shown, "status", "faceset_id", "name", "user_data", "face_ids")
    assert shown["face_ids"] == [f1, f2]
    assert info(client, account, "faceset", bare["faceset_id"])["face_ids"] == []

    for public_id in (faceset, bare["faceset_id"]):
        ok(post(client, "/faceset/delete", account, faceset_id=public_id))
    body = ok(client.get("/info/list_facesets", params=account.query))
    assert body["facesets"] == []
    assert '"facesets":[]' in client.get("/info/list_facesets", params=account.query).text
    assert usage(client, account) == {"groups": 0, "persons": 0, "facesets": 0}


@pytest.mark.parametrize("kind", ["person", "group", "faceset"])
def test_change_and_delete_alike_for_every_kind(
    client: TestClient, account: Credentials, kind: str
) -> None:
    id_key, invalid = f"{kind}_id", f"INVALID_{kind.upper()}"
    public_id = ok(post(client, f"/{kind}/create", account, name="first"))[id_key]
    ids = {id_key: public_id}

    def change(**params: object) -> Response:
        return post(client, f"/{kind}/change", account, **params)

    keys(ok(change(**ids, name="renamed")), "status")
    assert info(client, account, kind, public_id)["name"] == "renamed"
    ok(change(**ids, user_data="ww"))
    shown = info(client, account, kind, public_id)
    assert (shown["name"], shown["user_data"]) == ("renamed", "ww")
    ok(change(**ids, name="n2", user_data="u2"))
    shown = info(client, account, kind, public_id)
    assert (shown["name"], shown["user_data"]) == ("n2", "u2")
    fails(change(**ids), "INVALID_ARGUMENT")
    fails(change(**{id_key: UNKNOWN}, name="x"), invalid)

    keys(ok(post(client, f"/{kind}/delete", account, **ids)), "status")
    fails(client.get(f"/info/{kind}", params={**account.query, **ids}), invalid)
    fails(post(client, f"/{kind}/delete", account, **ids), invalid)


def test_create_requires_a_name(client: TestClient, account: Credentials) -> None:
    for path in ("/person/create", "/group/create", "/faceset/create"):
        body = fails(post(client, path, account, user_data="no name"), "INVALID_ARGUMENT")
        assert "name" in body["reason"]
    assert usage(client, account) == {"groups": 0, "persons": 0, "facesets": 0}


def test_missing_ids_are_the_endpoint_invalid_status(
    client: TestClient, account: Credentials
) -> None:
    cases = {
        "/info/person": "INVALID_PERSON",
        "/info/group": "INVALID_GROUP",
        "/info/faceset": "INVALID_FACESET",
        "/person/delete": "INVALID_PERSON",
        "/group/delete": "INVALID_GROUP",
        "/faceset/delete": "INVALID_FACESET",
    }
    for path, status in cases.items():
        response = client.post(path, json=account.query)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["status"] in (status, "INVALID_ARGUMENT"), path


# --- all or nothing on create and add ------------------------------------------------------


def test_create_with_one_invalid_id_creates_nothing(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    (face,) = faces(1)
    person = new_person(client, account)
    before = usage(client, account)

    fails(
        post(client, "/person/create", account, name="x", face_id=[face, UNKNOWN]), "INVALID_FACE"
    )
    fails(
        post(client, "/faceset/create", account, name="x", face_id=f"{face},{UNKNOWN}"),
        "INVALID_FACE",
    )
    fails(
        post(client, "/group/create", account, name="x", person_id=[person, UNKNOWN]),
        "INVALID_PERSON",
    )

    assert usage(client, account) == before
    assert listed(client, account, "person") == [person]
    assert listed(client, account, "group") == []
    assert listed(client, account, "faceset") == []
    # The valid face was not handed to anyone.
    assert info(client, account, "person", person)["face_ids"] == []
    body = ok(post(client, "/person/add_face", account, person_id=person, face_id=face))
    assert body["added_count"] == 1


def test_person_add_face_all_or_nothing_and_counts(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    f1, f2, f3 = faces(3)
    person = new_person(client, account)

    body = ok(post(client, "/person/add_face", account, person_id=person, face_id=[f1]))
    keys(body, "status", "person_id", "face_count", "added_count")
    assert (body["person_id"], body["face_count"], body["added_count"]) == (person, 1, 1)

    fails(
        post(client, "/person/add_face", account, person_id=person, face_id=[f2, UNKNOWN]),
        "INVALID_FACE",
    )
    assert info(client, account, "person", person)["face_ids"] == [f1]

    body = ok(post(client, "/person/add_face", account, person_id=person, face_id=[f1, f2, f3]))
    assert (body["face_count"], body["added_count"]) == (3, 2)
    body = ok(post(client, "/person/add_face", account, person_id=person, face_id=[f1, f2]))
    assert (body["face_count"], body["added_count"]) == (3, 0)

    for params in ({"face_id": ""}, {"face_id": []}, {"face_id": " , "}, {"face_id": None}, {}):
        fails(
            post(client, "/person/add_face", account, person_id=person, **params), "EMPTY_FACE_ID"
        )
    fails(
        post(client, "/person/add_face", account, person_id=UNKNOWN, face_id=f1), "INVALID_PERSON"
    )


def test_faceset_add_face_all_or_nothing_and_counts(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    f1, f2, f3 = faces(3)
    faceset = new_faceset(client, account, "faceset1")

    body = ok(post(client, "/faceset/add_face", account, faceset_id=faceset, face_id=[f1]))
    keys(body, "status", "faceset_id", "name", "face_count", "added_count")
    assert (body["faceset_id"], body["name"]) == (faceset, "faceset1")
    assert (body["face_count"], body["added_count"]) == (1, 1)

    fails(
        post(client, "/faceset/add_face", account, faceset_id=faceset, face_id=[f2, UNKNOWN]),
        "INVALID_FACE",
    )
    assert info(client, account, "faceset", faceset)["face_ids"] == [f1]

    body = ok(
        post(client, "/faceset/add_face", account, faceset_id=faceset, face_id=f"{f1},{f2},{f3}")
    )
    assert (body["face_count"], body["added_count"]) == (3, 2)
    body = ok(post(client, "/faceset/add_face", account, faceset_id=faceset, face_id=f3))
    assert (body["face_count"], body["added_count"]) == (3, 0)

    for empty in ("", [], ",", None):
        params = {} if empty is None else {"face_id": empty}
        fails(
            post(client, "/faceset/add_face", account, faceset_id=faceset, **params),
            "EMPTY_FACE_ID",
        )
    fails(
        post(client, "/faceset/add_face", account, faceset_id=UNKNOWN, face_id=f1),
        "INVALID_FACESET",
    )


def test_group_add_person_all_or_nothing_and_counts(
    client: TestClient, account: Credentials
) -> None:
    p1, p2, p3 = (new_person(client, account, f"p{n}") for n in range(3))
    group = new_group(client, account, "group1")

    body = ok(post(client, "/group/add_person", account, group_id=group, person_id=p1))
    keys(body, "status", "group_id", "name", "person_count", "added_count")
    assert (body["group_id"], body["name"]) == (group, "group1")
    assert (body["person_count"], body["added_count"]) == (1, 1)

    fails(
        post(client, "/group/add_person", account, group_id=group, person_id=[p2, UNKNOWN]),
        "INVALID_PERSON",
    )
    assert [p["person_id"] for p in info(client, account, "group", group)["persons"]] == [p1]

    body = ok(post(client, "/group/add_person", account, group_id=group, person_id=[p1, p2, p3]))
    assert (body["person_count"], body["added_count"]) == (3, 2)
    body = ok(post(client, "/group/add_person", account, group_id=group, person_id=[p2]))
    assert (body["person_count"], body["added_count"]) == (3, 0)

    for empty in ("", [], " ", None):
        params = {} if empty is None else {"person_id": empty}
        fails(
            post(client, "/group/add_person", account, group_id=group, **params), "EMPTY_PERSON_ID"
        )
        fails(
            post(client, "/group/remove_person", account, group_id=group, **params),
            "EMPTY_PERSON_ID",
        )
    fails(
        post(client, "/group/add_person", account, group_id=UNKNOWN, person_id=p1), "INVALID_GROUP"
    )


# --- remove ----------------------------------------------------------------------------------


def test_remove_ignores_invalid_ids_and_counts_what_it_removed(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    f1, f2, f3 = faces(3)
    person = new_person(client, account, face_id=[f1, f2, f3])
    faceset = new_faceset(client, account, "fs", face_id=[f1, f2, f3])
    p1, p2 = new_person(client, account, "a"), new_person(client, account, "b")
    group = new_group(client, account, "grp", person_id=[p1, p2])

    body = ok(
        post(
            client,
            "/person/remove_face",
            account,
            person_id=person,
            face_id=[f1, UNKNOWN, "not-an-id"],
        )
    )
    keys(body, "status", "person_id", "face_count", "removed_count")
    assert (body["person_id"], body["face_count"], body["removed_count"]) == (person, 2, 1)
    body = ok(post(client, "/person/remove_face", account, person_id=person, face_id=[f1]))
    assert (body["face_count"], body["removed_count"]) == (2, 0)
    assert info(client, account, "person", person)["face_ids"] == [f2, f3]

    body = ok(
        post(
            client,
            "/faceset/remove_face",
            account,
            faceset_id=faceset,
            face_id=f"{UNKNOWN},{f2},{f3}",
        )
    )
    keys(body, "status", "faceset_id", "name", "face_count", "removed_count")
    assert (body["name"], body["face_count"], body["removed_count"]) == ("fs", 1, 2)
    assert info(client, account, "faceset", faceset)["face_ids"] == [f1]

    body = ok(
        post(client, "/group/remove_person", account, group_id=group, person_id=[UNKNOWN, p1])
    )
    keys(body, "status", "group_id", "name", "person_count", "removed_count")
    assert (body["name"], body["person_count"], body["removed_count"]) == ("grp", 1, 1)
    info(client, account, "person", p1)  # still a valid person

    for path, id_key, ids in (
        ("/person/remove_face", {"person_id": person}, "face_id"),
        ("/faceset/remove_face", {"faceset_id": faceset}, "face_id"),
    ):
        fails(post(client, path, account, **id_key, **{ids: []}), "EMPTY_FACE_ID")
        fails(post(client, path, account, **id_key), "EMPTY_FACE_ID")
    fails(
        post(client, "/person/remove_face", account, person_id=UNKNOWN, face_id=f1),
        "INVALID_PERSON",
    )
    fails(
        post(client, "/faceset/remove_face", account, faceset_id=UNKNOWN, face_id=f1),
        "INVALID_FACESET",
    )
    fails(
        post(client, "/group/remove_person", account, group_id=UNKNOWN, person_id=p1),
        "INVALID_GROUP",
    )


# --- memberships -----------------------------------------------------------------------------


def test_repeated_ids_count_once(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    f1, f2 = faces(2)
    body = ok(post(client, "/person/create", account, name="p", face_id=f"{f1},{f1}, {f2}"))
    assert body["face_count"] == 2
    body = ok(post(client, "/faceset/create", account, name="s", face_id=[f1, f1]))
    assert body["face_count"] == 1
    body = ok(
        post(
            client,
            "/faceset/add_face",
            account,
            faceset_id=body["faceset_id"],
            face_id=[f2, f2, f1],
        )
    )
    assert (body["face_count"], body["added_count"]) == (2, 1)
    person = new_person(client, account, "q")
    body = ok(post(client, "/group/create", account, name="g", person_id=[person, person]))
    assert body["person_count"] == 1


def test_a_face_moves_silently_to_its_newest_person(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    f1, f2, f3 = faces(3)
    first = new_person(client, account, "first", face_id=[f1, f2])
    body = ok(
        post(
            client, "/person/add_face", account, person_id=new_person(client, account), face_id=[f1]
        )
    )
    assert (body["face_count"], body["added_count"]) == (1, 1)
    assert info(client, account, "person", first)["face_ids"] == [f2]

    third = ok(post(client, "/person/create", account, name="third", face_id=[f2, f3]))
    assert third["face_count"] == 2
    assert info(client, account, "person", first)["face_ids"] == []
    assert info(client, account, "person", third["person_id"])["face_ids"] == [f2, f3]


def test_a_person_in_many_groups_and_a_face_in_many_facesets(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    (face,) = faces(1)
    person = new_person(client, account, "shared")
    groups = [new_group(client, account, f"g{n}", person_id=person) for n in range(3)]
    for group in groups:
        assert info(client, account, "group", group)["persons"] == [
            {"person_id": person, "name": "shared"}
        ]
    facesets = [new_faceset(client, account, f"s{n}", face_id=[face]) for n in range(3)]
    for faceset in facesets:
        assert info(client, account, "faceset", faceset)["face_ids"] == [face]
    ok(post(client, "/person/add_face", account, person_id=person, face_id=face))
    assert info(client, account, "faceset", facesets[0])["face_ids"] == [face]

    # Removing from one collection leaves the others alone.
    body = ok(post(client, "/faceset/remove_face", account, faceset_id=facesets[0], face_id=face))
    assert (body["face_count"], body["removed_count"]) == (0, 1)
    for faceset in facesets[1:]:
        assert info(client, account, "faceset", faceset)["face_ids"] == [face]
    body = ok(post(client, "/group/remove_person", account, group_id=groups[0], person_id=person))
    assert (body["person_count"], body["removed_count"]) == (0, 1)
    for group in groups[1:]:
        assert len(info(client, account, "group", group)["persons"]) == 1


def test_deleting_removes_memberships_and_faces_stay_usable(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    f1, f2 = faces(2)
    doomed = new_person(client, account, "doomed", face_id=[f1])
    keeper = new_person(client, account, "keeper")
    group = new_group(client, account, "g", person_id=[doomed, keeper])
    faceset = new_faceset(client, account, "s", face_id=[f1, f2])

    ok(post(client, "/person/delete", account, person_id=doomed))
    assert info(client, account, "group", group)["persons"] == [
        {"person_id": keeper, "name": "keeper"}
    ]
    body = ok(post(client, "/group/add_person", account, group_id=group, person_id=keeper))
    assert (body["person_count"], body["added_count"]) == (1, 0)
    assert info(client, account, "faceset", faceset)["face_ids"] == [f1, f2]
    body = ok(post(client, "/person/add_face", account, person_id=keeper, face_id=f1))
    assert (body["face_count"], body["added_count"]) == (1, 1)

    ok(post(client, "/faceset/delete", account, faceset_id=faceset))
    other = ok(post(client, "/faceset/create", account, name="again", face_id=[f1, f2]))
    assert other["face_count"] == 2

    ok(post(client, "/group/delete", account, group_id=group))
    assert info(client, account, "person", keeper)["face_ids"] == [f1]
    regroup = ok(post(client, "/group/create", account, name="g2", person_id=keeper))
    assert regroup["person_count"] == 1
    assert usage(client, account) == {"groups": 1, "persons": 1, "facesets": 1}


def test_expired_faces_cannot_be_added_but_can_be_removed(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    f1, f2 = faces(2)
    person = new_person(client, account, face_id=[f1, f2])
    faceset = new_faceset(client, account, face_id=[f1, f2])
    with session_scope() as db:
        db.execute(
            update(Face)
            .where(Face.public_id == f1)
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    other = new_person(client, account, "other")
    fails(post(client, "/person/add_face", account, person_id=other, face_id=f1), "INVALID_FACE")
    fails(post(client, "/person/create", account, name="x", face_id=f1), "INVALID_FACE")
    fails(post(client, "/faceset/create", account, name="x", face_id=f1), "INVALID_FACE")
    fails(
        post(
            client,
            "/faceset/add_face",
            account,
            faceset_id=new_faceset(client, account),
            face_id=f1,
        ),
        "INVALID_FACE",
    )
    assert info(client, account, "person", other)["face_ids"] == []
    assert info(client, account, "person", person)["face_ids"] == [f1, f2]

    body = ok(post(client, "/person/remove_face", account, person_id=person, face_id=f1))
    assert (body["face_count"], body["removed_count"]) == (1, 1)
    body = ok(post(client, "/faceset/remove_face", account, faceset_id=faceset, face_id=f1))
    assert (body["face_count"], body["removed_count"]) == (1, 1)
