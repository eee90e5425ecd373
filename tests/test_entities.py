"""/person/*, /group/*, /faceset/* and the /info/* listings, on both databases.

Faces come from the real /face/detection endpoint fed with CelebA photos holding one face each.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select, update

from app.db.models import Face, Faceset, Group, IndexChange, Person
from app.db.session import session_scope
from app.services.accounts import QUOTA_NAMES
from tests.conftest import DEFAULT_QUOTA, SHARED_DATA, Credentials, make_account

HEX32 = re.compile(r"^[0-9a-f]{32}$")
UNKNOWN = "0" * 32
PHOTOS = SHARED_DATA / "celeba-dev" / "images"

# Bytes of photos known to hold exactly one face; ids are per account and database, so only the
# photos are cached, never the face ids.
_single_face_photos: list[bytes] = []
_photos_seen = 0


def _photo_paths() -> list:
    return sorted(PHOTOS.glob("*.jpg"))


def detect_faces(client: TestClient, creds: Credentials, count: int) -> list[str]:
    """`count` fresh face ids of `creds`, one per photo, from the real /face/detection."""
    global _photos_seen
    face_ids: list[str] = []
    for photo in list(_single_face_photos):
        if len(face_ids) == count:
            return face_ids
        face_ids.append(_detect_one(client, creds, photo))
    paths = _photo_paths()
    while len(face_ids) < count:
        assert _photos_seen < len(paths), "ran out of single-face photos"
        photo = paths[_photos_seen].read_bytes()
        _photos_seen += 1
        response = client.post("/face/detection", params=creds.query, files={"file": photo})
        assert response.status_code == 200, response.text
        faces = response.json()["faces"]
        if len(faces) == 1:
            _single_face_photos.append(photo)
            face_ids.append(faces[0]["face_id"])
    return face_ids


def _detect_one(client: TestClient, creds: Credentials, photo: bytes) -> str:
    response = client.post("/face/detection", params=creds.query, files={"file": photo})
    assert response.status_code == 200, response.text
    (face,) = response.json()["faces"]
    return face["face_id"]


@pytest.fixture
def faces(client: TestClient, account: Credentials) -> Callable[[int], list[str]]:
    return lambda count: detect_faces(client, account, count)


# --- helpers ---------------------------------------------------------------------------------


def post(client: TestClient, path: str, creds: Credentials, **params: object) -> Response:
    """A JSON POST with the credentials in the body, as most SDKs send it."""
    return client.post(path, json={**creds.query, **params})


def ok(response: Response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "OK", body
    assert body["request_id"]
    return body


def fails(response: Response, status: str, http: int = 400) -> dict:
    assert response.status_code == http, response.text
    body = response.json()
    assert body["status"] == status, body
    return body


def keys(body: dict, *expected: str) -> None:
    """The seed sample's key order, then request_id last."""
    assert list(body) == [*expected, "request_id"], list(body)


def usage(client: TestClient, creds: Credentials) -> dict:
    return ok(client.get("/info/api", params=creds.query))["usage"]


def info(client: TestClient, creds: Credentials, kind: str, public_id: str) -> dict:
    return ok(client.get(f"/info/{kind}", params={**creds.query, f"{kind}_id": public_id}))


def listed(client: TestClient, creds: Credentials, kind: str, **params: object) -> list[str]:
    body = ok(client.get(f"/info/list_{kind}s", params={**creds.query, **params}))
    keys(body, "status", f"{kind}s")
    return [item[f"{kind}_id"] for item in body[f"{kind}s"]]


def new_person(client: TestClient, creds: Credentials, name: str = "p", **params: object) -> str:
    return ok(post(client, "/person/create", creds, name=name, **params))["person_id"]


def new_group(client: TestClient, creds: Credentials, name: str = "g", **params: object) -> str:
    return ok(post(client, "/group/create", creds, name=name, **params))["group_id"]


def new_faceset(client: TestClient, creds: Credentials, name: str = "s", **params: object) -> str:
    return ok(post(client, "/faceset/create", creds, name=name, **params))["faceset_id"]


def quota(**overrides: int) -> dict[str, int]:
    return {**DEFAULT_QUOTA, **overrides}


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

    keys(ok(post(client, "/person/change", account, person_id=person, name="xiaohong")), "status")
    assert info(client, account, "person", person)["name"] == "xiaohong"
    ok(post(client, "/person/change", account, person_id=person, user_data="ww"))
    shown = info(client, account, "person", person)
    assert (shown["name"], shown["user_data"]) == ("xiaohong", "ww")
    ok(post(client, "/person/change", account, person_id=person, name="n2", user_data="u2"))
    shown = info(client, account, "person", person)
    assert (shown["name"], shown["user_data"]) == ("n2", "u2")
    fails(post(client, "/person/change", account, person_id=person), "INVALID_ARGUMENT")
    fails(post(client, "/person/change", account, person_id=UNKNOWN, name="x"), "INVALID_PERSON")

    keys(ok(post(client, "/person/delete", account, person_id=person)), "status")
    fails(
        client.get("/info/person", params={**account.query, "person_id": person}), "INVALID_PERSON"
    )
    fails(post(client, "/person/delete", account, person_id=person), "INVALID_PERSON")
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

    ok(post(client, "/group/change", account, group_id=group, name="renamed"))
    ok(post(client, "/group/change", account, group_id=group, user_data="xx"))
    shown = info(client, account, "group", group)
    assert (shown["name"], shown["user_data"]) == ("renamed", "xx")
    fails(post(client, "/group/change", account, group_id=group), "INVALID_ARGUMENT")
    fails(post(client, "/group/change", account, group_id=UNKNOWN, name="x"), "INVALID_GROUP")

    keys(ok(post(client, "/group/delete", account, group_id=group)), "status")
    fails(client.get("/info/group", params={**account.query, "group_id": group}), "INVALID_GROUP")
    fails(post(client, "/group/delete", account, group_id=group), "INVALID_GROUP")
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

    ok(post(client, "/faceset/change", account, faceset_id=faceset, name="N", user_data="U"))
    shown = info(client, account, "faceset", faceset)
    assert (shown["name"], shown["user_data"]) == ("N", "U")
    fails(post(client, "/faceset/change", account, faceset_id=faceset), "INVALID_ARGUMENT")
    fails(post(client, "/faceset/change", account, faceset_id=UNKNOWN, name="x"), "INVALID_FACESET")

    for public_id in (faceset, bare["faceset_id"]):
        keys(ok(post(client, "/faceset/delete", account, faceset_id=public_id)), "status")
    fails(post(client, "/faceset/delete", account, faceset_id=faceset), "INVALID_FACESET")
    body = ok(client.get("/info/list_facesets", params=account.query))
    assert body["facesets"] == []
    assert '"facesets":[]' in client.get("/info/list_facesets", params=account.query).text
    assert usage(client, account) == {"groups": 0, "persons": 0, "facesets": 0}


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


# --- quotas ----------------------------------------------------------------------------------


def _quota_error(response: Response, name: str) -> None:
    body = fails(response, "QUOTA_EXCEEDED")
    assert name in body["reason"], body


def test_entity_count_quotas(client: TestClient, configured: str) -> None:
    creds = make_account(quota=quota(persons=2, groups=1, facesets=1))
    persons = [new_person(client, creds, f"p{n}") for n in range(2)]
    _quota_error(post(client, "/person/create", creds, name="p3"), "persons")
    new_group(client, creds)
    _quota_error(post(client, "/group/create", creds, name="g2"), "groups")
    new_faceset(client, creds)
    _quota_error(post(client, "/faceset/create", creds, name="s2"), "facesets")
    assert usage(client, creds) == {"groups": 1, "persons": 2, "facesets": 1}
    assert len(listed(client, creds, "person")) == 2

    ok(post(client, "/person/delete", creds, person_id=persons[0]))
    assert usage(client, creds)["persons"] == 1
    new_person(client, creds, "p3")
    assert usage(client, creds)["persons"] == 2


def test_membership_quotas(client: TestClient, configured: str) -> None:
    creds = make_account(quota=quota(faces_per_person=2, faces_per_faceset=2, persons_per_group=2))
    f1, f2, f3 = detect_faces(client, creds, 3)

    _quota_error(
        post(client, "/person/create", creds, name="x", face_id=[f1, f2, f3]), "faces_per_person"
    )
    assert usage(client, creds)["persons"] == 0
    person = new_person(client, creds, face_id=[f1, f2])
    _quota_error(
        post(client, "/person/add_face", creds, person_id=person, face_id=f3), "faces_per_person"
    )
    body = ok(post(client, "/person/add_face", creds, person_id=person, face_id=[f1, f2]))
    assert (body["face_count"], body["added_count"]) == (2, 0)  # present faces don't count

    _quota_error(
        post(client, "/faceset/create", creds, name="x", face_id=[f1, f2, f3]), "faces_per_faceset"
    )
    assert usage(client, creds)["facesets"] == 0
    faceset = new_faceset(client, creds, face_id=[f1])
    _quota_error(
        post(client, "/faceset/add_face", creds, faceset_id=faceset, face_id=[f2, f3]),
        "faces_per_faceset",
    )
    assert info(client, creds, "faceset", faceset)["face_ids"] == [f1]
    body = ok(post(client, "/faceset/add_face", creds, faceset_id=faceset, face_id=[f1, f2]))
    assert (body["face_count"], body["added_count"]) == (2, 1)

    p = [new_person(client, creds, f"p{n}") for n in range(3)]
    _quota_error(post(client, "/group/create", creds, name="g", person_id=p), "persons_per_group")
    assert usage(client, creds)["groups"] == 0
    group = new_group(client, creds, person_id=p[0])
    _quota_error(
        post(client, "/group/add_person", creds, group_id=group, person_id=p[1:]),
        "persons_per_group",
    )
    body = ok(post(client, "/group/add_person", creds, group_id=group, person_id=p[:2]))
    assert (body["person_count"], body["added_count"]) == (2, 1)
    ok(post(client, "/group/remove_person", creds, group_id=group, person_id=p[0]))
    body = ok(post(client, "/group/add_person", creds, group_id=group, person_id=p[2]))
    assert body["person_count"] == 2
    quota_shown = ok(client.get("/info/api", params=creds.query))["quota"]
    assert list(quota_shown) == list(QUOTA_NAMES)
    assert quota_shown["persons_per_group"] == 2


# --- isolation -------------------------------------------------------------------------------


def test_other_accounts_ids_are_unknown(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    other = make_account()
    (their_face,) = detect_faces(client, other, 1)
    their_person = new_person(client, other, "theirs", face_id=their_face)
    their_group = new_group(client, other, "theirs", person_id=their_person)
    their_faceset = new_faceset(client, other, "theirs", face_id=their_face)
    (my_face,) = faces(1)
    mine = new_person(client, account, "mine")
    my_group = new_group(client, account, "mine")
    my_faceset = new_faceset(client, account, "mine")

    for kind, public_id, status in (
        ("person", their_person, "INVALID_PERSON"),
        ("group", their_group, "INVALID_GROUP"),
        ("faceset", their_faceset, "INVALID_FACESET"),
    ):
        id_key = f"{kind}_id"
        fails(client.get(f"/info/{kind}", params={**account.query, id_key: public_id}), status)
        fails(post(client, f"/{kind}/change", account, **{id_key: public_id}, name="x"), status)
        fails(post(client, f"/{kind}/delete", account, **{id_key: public_id}), status)
        assert listed(client, account, kind) == [
            {"person": mine, "group": my_group, "faceset": my_faceset}[kind]
        ]
    fails(
        post(client, "/person/add_face", account, person_id=their_person, face_id=my_face),
        "INVALID_PERSON",
    )
    fails(
        post(client, "/person/remove_face", account, person_id=their_person, face_id=their_face),
        "INVALID_PERSON",
    )
    fails(
        post(client, "/faceset/add_face", account, faceset_id=their_faceset, face_id=my_face),
        "INVALID_FACESET",
    )
    fails(
        post(client, "/group/add_person", account, group_id=their_group, person_id=mine),
        "INVALID_GROUP",
    )
    fails(
        post(client, "/person/add_face", account, person_id=mine, face_id=their_face),
        "INVALID_FACE",
    )
    fails(
        post(client, "/faceset/add_face", account, faceset_id=my_faceset, face_id=their_face),
        "INVALID_FACE",
    )
    fails(
        post(client, "/group/add_person", account, group_id=my_group, person_id=their_person),
        "INVALID_PERSON",
    )
    fails(post(client, "/person/create", account, name="x", face_id=their_face), "INVALID_FACE")
    fails(post(client, "/faceset/create", account, name="x", face_id=their_face), "INVALID_FACE")
    fails(
        post(client, "/group/create", account, name="x", person_id=their_person), "INVALID_PERSON"
    )
    fails(client.get("/info/face", params={**account.query, "face_id": their_face}), "INVALID_FACE")

    # Removing someone else's members through my collections touches nothing.
    body = ok(
        post(client, "/group/remove_person", account, group_id=my_group, person_id=their_person)
    )
    assert body["removed_count"] == 0
    body = ok(
        post(client, "/faceset/remove_face", account, faceset_id=my_faceset, face_id=their_face)
    )
    assert body["removed_count"] == 0
    body = ok(post(client, "/person/remove_face", account, person_id=mine, face_id=their_face))
    assert body["removed_count"] == 0

    # Their data is untouched.
    assert info(client, other, "person", their_person)["face_ids"] == [their_face]
    assert info(client, other, "person", their_person)["name"] == "theirs"
    assert info(client, other, "group", their_group)["persons"][0]["person_id"] == their_person
    assert info(client, other, "faceset", their_faceset)["face_ids"] == [their_face]
    assert usage(client, other) == {"groups": 1, "persons": 1, "facesets": 1}
    assert usage(client, account) == {"groups": 1, "persons": 1, "facesets": 1}


# --- listings --------------------------------------------------------------------------------


def test_listings_everything_by_default_and_limit_offset(
    client: TestClient, account: Credentials
) -> None:
    persons = [new_person(client, account, f"p{n}") for n in range(5)]
    groups = [new_group(client, account, f"g{n}") for n in range(3)]
    facesets = [new_faceset(client, account, f"s{n}") for n in range(3)]

    body = ok(client.get("/info/list_persons", params=account.query))
    assert body["persons"] == [{"person_id": p, "name": f"p{n}"} for n, p in enumerate(persons)]
    assert all(list(item) == ["person_id", "name"] for item in body["persons"])
    body = ok(client.get("/info/list_groups", params=account.query))
    assert body["groups"] == [{"group_id": g, "name": f"g{n}"} for n, g in enumerate(groups)]
    body = ok(client.post("/info/list_facesets", json=account.query))
    assert body["facesets"] == [{"faceset_id": s, "name": f"s{n}"} for n, s in enumerate(facesets)]

    assert listed(client, account, "person", limit=2) == persons[:2]
    assert listed(client, account, "person", limit=2, offset=2) == persons[2:4]
    assert listed(client, account, "person", offset=3) == persons[3:]
    assert listed(client, account, "person", offset=10) == []
    assert listed(client, account, "group", limit="1", offset="1") == groups[1:2]
    assert listed(client, account, "faceset", limit=100) == facesets
    for bad in ({"limit": 0}, {"limit": "x"}, {"offset": -1}):
        body = fails(
            client.get("/info/list_persons", params={**account.query, **bad}), "INVALID_ARGUMENT"
        )
        assert next(iter(bad)) in body["reason"]


# --- wire encodings --------------------------------------------------------------------------


def _encodings(creds: Credentials, id_key: str, target: str, ids: list[str]) -> list:
    """(name, request kwargs) for one call carrying `ids` in every client style of wire-compat."""
    joined = ",".join(ids)
    query = {**creds.query, id_key: target}
    multipart_repeated = [(id_key, (None, target))] + [("face_id", (None, i)) for i in ids]
    multipart_repeated += [(k, (None, v)) for k, v in creds.query.items()]
    return [
        ("json array", {"json": {**query, "face_id": ids}}),
        ("json comma string", {"json": {**query, "face_id": f" {joined} ,"}}),
        (
            "json charset",
            {
                "content": json.dumps({**query, "face_id": ids}, indent=2).encode(),
                "headers": {"Content-Type": "application/json;charset=UTF-8"},
            },
        ),
        (
            "json wrong content type",
            {
                "content": json.dumps({**query, "face_id": ids}).encode(),
                "headers": {"Content-Type": "application/octet-stream"},
            },
        ),
        ("urlencoded comma", {"data": {**query, "face_id": joined}}),
        ("urlencoded repeated", {"data": {**query, "face_id": ids}}),
        ("urlencoded json array", {"data": {**query, "face_id": json.dumps(ids)}}),
        ("query only POST", {"params": [*query.items(), *(("face_id", i) for i in ids)]}),
        ("query comma POST", {"params": {**query, "face_id": joined}}),
        ("split query/body", {"params": creds.query, "data": {id_key: target, "face_id": joined}}),
        (
            "multipart comma",
            {"files": {**{k: (None, v) for k, v in query.items()}, "face_id": (None, joined)}},
        ),
        ("multipart repeated", {"files": multipart_repeated}),
    ]


def test_id_lists_in_every_encoding(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    ids = faces(2)
    faceset = new_faceset(client, account)
    for name, kwargs in _encodings(account, "faceset_id", faceset, ids):
        response = client.post("/faceset/add_face", **kwargs)
        body = ok(response)
        assert (body["face_count"], body["added_count"]) == (2, 2), name
        response = client.post("/faceset/remove_face", **kwargs)
        body = ok(response)
        assert (body["face_count"], body["removed_count"]) == (0, 2), name
    single = ok(
        client.post(
            "/faceset/add_face", data={**account.query, "faceset_id": faceset, "face_id": ids[0]}
        )
    )
    assert single["added_count"] == 1
    # The person endpoints read lists the same way.
    person = new_person(client, account)
    for name, kwargs in _encodings(account, "person_id", person, ids):
        body = ok(client.post("/person/add_face", **kwargs))
        assert (body["face_count"], body["added_count"]) == (2, 2), name
        body = ok(client.post("/person/remove_face", **kwargs))
        assert (body["face_count"], body["removed_count"]) == (0, 2), name


def test_person_id_lists_in_every_encoding(client: TestClient, account: Credentials) -> None:
    p1, p2 = new_person(client, account, "a"), new_person(client, account, "b")
    group = new_group(client, account)
    query = {**account.query, "group_id": group}
    variants = [
        {"json": {**query, "person_id": [p1, p2]}},
        {"json": {**query, "person_id": f"{p1},{p2}"}},
        {"data": {**query, "person_id": [p1, p2]}},
        {"data": {**query, "person_id": f"{p1}, {p2}"}},
        {"params": [*query.items(), ("person_id", p1), ("person_id", p2)]},
        {
            "files": [
                *((k, (None, v)) for k, v in query.items()),
                ("person_id", (None, p1)),
                ("person_id", (None, p2)),
            ]
        },
    ]
    for kwargs in variants:
        body = ok(client.post("/group/add_person", **kwargs))
        assert (body["person_count"], body["added_count"]) == (2, 2), kwargs
        body = ok(client.post("/group/remove_person", **kwargs))
        assert (body["person_count"], body["removed_count"]) == (0, 2), kwargs
    created = ok(
        client.post(
            "/group/create", data={**account.query, "name": "g2", "person_id": f"{p1},{p2}"}
        )
    )
    assert created["person_count"] == 2


def test_chinese_names_round_trip_as_ascii_json(client: TestClient, account: Credentials) -> None:
    name, user_data = "小明", "用户数据 ü"
    requests = [
        {"json": {**account.query, "name": name, "user_data": user_data}},
        {"data": {**account.query, "name": name, "user_data": user_data}},
        {
            "files": {
                **{k: (None, v) for k, v in account.query.items()},
                "name": (None, name.encode()),
                "user_data": (None, user_data.encode()),
            }
        },
        {"params": {**account.query, "name": name, "user_data": user_data}},
    ]
    for kind in ("person", "group", "faceset"):
        for kwargs in requests:
            response = client.post(f"/{kind}/create", **kwargs)
            response.content.decode("ascii")
            created = ok(response)
            if kind != "person":
                assert created["name"] == name
                assert "\\u5c0f\\u660e" in response.text
            shown = client.get(
                f"/info/{kind}", params={**account.query, f"{kind}_id": created[f"{kind}_id"]}
            )
            shown.content.decode("ascii")
            assert "\\u5c0f\\u660e" in shown.text
            assert (shown.json()["name"], shown.json()["user_data"]) == (name, user_data)
        listing = client.get(f"/info/list_{kind}s", params=account.query)
        listing.content.decode("ascii")
        assert [item["name"] for item in listing.json()[f"{kind}s"]] == [name] * len(requests)
        public_id = listing.json()[f"{kind}s"][0][f"{kind}_id"]
        ok(post(client, f"/{kind}/change", account, **{f"{kind}_id": public_id}, name="张三"))
        assert info(client, account, kind, public_id)["name"] == "张三"


# --- the change log --------------------------------------------------------------------------


def _internal(model: type[Person | Group | Faceset | Face], public_id: str) -> int:
    with session_scope() as db:
        return db.scalar(select(model.id).where(model.public_id == public_id))


def _log_mark() -> int:
    with session_scope() as db:
        return db.scalar(select(func.max(IndexChange.seq))) or 0


def _log_since(mark: int) -> list[tuple[str, int, int, str]]:
    with session_scope() as db:
        rows = db.execute(
            select(
                IndexChange.collection,
                IndexChange.collection_id,
                IndexChange.face_id,
                IndexChange.op,
            )
            .where(IndexChange.seq > mark)
            .order_by(IndexChange.seq)
        ).all()
    return [tuple(row) for row in rows]


def test_change_log_follows_every_membership_change(
    client: TestClient, account: Credentials, faces: Callable[[int], list[str]]
) -> None:
    f1, f2, f3 = faces(3)
    face = {f: _internal(Face, f) for f in (f1, f2, f3)}
    alice = new_person(client, account, "alice", face_id=[f1])
    bob = new_person(client, account, "bob")

    mark = _log_mark()
    g1 = new_group(client, account, "g1", person_id=alice)
    gid1 = _internal(Group, g1)
    assert _log_since(mark) == [("group", gid1, face[f1], "add")]

    mark = _log_mark()
    ok(post(client, "/person/add_face", account, person_id=alice, face_id=f2))
    assert _log_since(mark) == [("group", gid1, face[f2], "add")]

    g2 = new_group(client, account, "g2", person_id=bob)
    gid2 = _internal(Group, g2)
    mark = _log_mark()
    ok(post(client, "/person/add_face", account, person_id=bob, face_id=f1))  # a move
    assert sorted(_log_since(mark)) == sorted(
        [("group", gid1, face[f1], "remove"), ("group", gid2, face[f1], "add")]
    )

    mark = _log_mark()
    ok(post(client, "/person/remove_face", account, person_id=alice, face_id=[f2, UNKNOWN]))
    assert _log_since(mark) == [("group", gid1, face[f2], "remove")]

    mark = _log_mark()
    ok(post(client, "/person/add_face", account, person_id=bob, face_id=f1))  # already there
    ok(post(client, "/group/add_person", account, group_id=g2, person_id=bob))  # already there
    assert _log_since(mark) == []

    mark = _log_mark()
    ok(post(client, "/group/add_person", account, group_id=g1, person_id=bob))
    assert _log_since(mark) == [("group", gid1, face[f1], "add")]
    mark = _log_mark()
    ok(post(client, "/group/remove_person", account, group_id=g1, person_id=bob))
    assert _log_since(mark) == [("group", gid1, face[f1], "remove")]

    mark = _log_mark()
    ok(post(client, "/person/delete", account, person_id=bob))
    assert _log_since(mark) == [("group", gid2, face[f1], "remove")]

    mark = _log_mark()
    ok(post(client, "/group/delete", account, group_id=g1))
    assert _log_since(mark) == [("group", gid1, 0, "drop")]

    mark = _log_mark()
    s = new_faceset(client, account, face_id=[f1, f2])
    sid = _internal(Faceset, s)
    ok(post(client, "/faceset/add_face", account, faceset_id=s, face_id=[f2, f3]))
    ok(post(client, "/faceset/remove_face", account, faceset_id=s, face_id=[f1, UNKNOWN]))
    ok(post(client, "/faceset/delete", account, faceset_id=s))
    assert _log_since(mark) == [
        ("faceset", sid, face[f1], "add"),
        ("faceset", sid, face[f2], "add"),
        ("faceset", sid, face[f3], "add"),
        ("faceset", sid, face[f1], "remove"),
        ("faceset", sid, 0, "drop"),
    ]

    # Failed calls leave no trace.
    mark = _log_mark()
    fails(
        post(client, "/person/add_face", account, person_id=alice, face_id=[f3, UNKNOWN]),
        "INVALID_FACE",
    )
    fails(post(client, "/faceset/create", account, name="x", face_id=[f3, UNKNOWN]), "INVALID_FACE")
    assert _log_since(mark) == []
