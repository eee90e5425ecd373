"""Entities under their limits: quotas, tenant isolation, listings, wire encodings, change log.

Faces come from the real /face/detection endpoint fed with CelebA photos holding one face each.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from app.db.models import Face, Faceset, Group, IndexChange, Person
from app.db.session import session_scope
from app.services.accounts import QUOTA_NAMES
from tests.conftest import Credentials, make_account
from tests.utils.api import (
    UNKNOWN,
    detect_faces,
    fails,
    info,
    listed,
    new_faceset,
    new_group,
    new_person,
    ok,
    post,
    quota,
    usage,
)

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
