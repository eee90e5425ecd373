"""The Tencent legacy face API door, driven by the official Python SDK over real HTTP.

`qcloud-image` 1.0.0 is installed from the registry and used as its users use it: a `Client`
with AppId, SecretId, SecretKey and bucket, repointed through its configuration only. Calls the
SDK lacks (addgroupids, delgroupids) are built as the vendor's other SDKs build them: a JSON
body `{appid, person_id, group_ids: [...]}`, signed the Node SDK's way. One server per
database serves the module; every test has its own account.
"""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image
from qcloud_image import CIBuffer, CIBuffers, CIFile, CIFiles, CIUrl, CIUrls

from tests.photos import CELEBA, celeba_bytes, identity_photos
from tests.servers import Server
from tests.utils.photo_server import PhotoServer
from tests.utils.tencent import (
    TencentAccount,
    code_of,
    fails,
    post,
    sdk,
)

pytestmark = pytest.mark.slow

FACE_ID_DIGITS = 19


ALICE = identity_photos(3)
BOB = identity_photos(3, skip=1)


def _path(name: str) -> str:
    return str(CELEBA / "images" / name)


def _plain_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 180, 160)).save(out, "JPEG")
    return out.getvalue()


def _ok(result: dict) -> dict:
    """An SDK result: the body plus the `httpcode` the SDK adds."""
    assert (result["code"], result["message"], result["httpcode"]) == (0, "OK", 200), result
    return result["data"]


def test_the_official_sdk_drives_every_endpoint_it_has(
    server: Server,
    account: TencentAccount,
    photos: PhotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = sdk(account, server.base_url, monkeypatch)

    created = _ok(
        client.face_newperson(
            "alice", ["friends", "family"], CIFile(_path(ALICE[0])), "Alice", "first"
        )
    )
    assert list(created) == [
        "person_id", "suc_group", "suc_face", "session_id", "face_id", "group_ids"
    ]  # fmt: skip
    assert created["person_id"] == "alice" and created["group_ids"] == ["friends", "family"]
    assert (created["suc_group"], created["suc_face"]) == (2, 1)
    first_face = created["face_id"]
    assert first_face.isdigit() and len(first_face) == FACE_ID_DIGITS
    by_url = _ok(client.face_newperson("bob", ["friends"], CIUrl(photos.url(f"/{BOB[0]}"))))
    assert by_url["group_ids"] == ["friends"] and by_url["suc_face"] == 1
    by_buffer = _ok(client.face_newperson("bob2", ["others"], CIBuffer(celeba_bytes(BOB[1]))))
    assert by_buffer["person_id"] == "bob2"

    added = _ok(client.face_addface("alice", CIFiles([_path(ALICE[1])]), tag="second"))
    assert list(added) == ["added", "session_id", "face_ids", "ret_codes"]
    assert (added["added"], added["ret_codes"]) == (1, [0])
    added = _ok(client.face_addface("alice", CIUrls([photos.url(f"/{ALICE[2]}")])))
    assert added["added"] == 1
    twice = client.face_addface("alice", CIBuffers([celeba_bytes(ALICE[0])]))
    assert twice["code"] == -1312 and twice["data"]["ret_codes"] == [-1312], twice

    assert _ok(client.face_setinfo("alice", person_name="Alice A.", tag="friend")) == {
        "person_id": "alice", "session_id": ""
    }  # fmt: skip
    info = _ok(client.face_getinfo("alice"))
    assert list(info) == ["person_id", "person_name", "face_ids", "group_ids", "tag", "session_id"]
    assert (info["person_name"], info["tag"], info["group_ids"]) == (
        "Alice A.", "friend", ["friends", "family"]
    )  # fmt: skip
    assert len(info["face_ids"]) == 3 and info["face_ids"][0] == first_face

    assert _ok(client.face_getgroupids())["group_ids"] == ["friends", "family", "others"]
    assert _ok(client.face_getpersonids("friends"))["person_ids"] == ["alice", "bob"]
    assert _ok(client.face_getfaceids("alice"))["face_ids"] == info["face_ids"]
    face_info = _ok(client.face_getfaceinfo(first_face))["face_info"]
    assert list(face_info)[:5] == ["face_id", "x", "y", "height", "width"]
    assert face_info["face_id"] == first_face
    assert isinstance(face_info["x"], int) and isinstance(face_info["height"], float)
    assert isinstance(face_info["glass"], bool) and 0 <= face_info["gender"] <= 100
    assert isinstance(face_info["age"], int) and isinstance(face_info["roll"], int)

    found = _ok(client.face_identify("friends", CIFile(_path(ALICE[1]))))
    assert list(found) == ["session_id", "candidates", "group_size", "time_ms"]
    best = found["candidates"][0]
    assert list(best) == ["person_id", "face_id", "confidence", "tag"]
    assert (best["person_id"], best["tag"]) == ("alice", "friend") and best["confidence"] > 60
    stranger = _ok(client.face_identify("family", CIFile(_path(BOB[2]))))
    assert stranger["candidates"] == []

    same = _ok(client.face_verify("alice", CIFile(_path(ALICE[2]))))
    assert list(same) == ["session_id", "ismatch", "confidence"]
    assert same["ismatch"] is True and same["confidence"] > 60
    other = _ok(client.face_verify("alice", CIUrl(photos.url(f"/{BOB[2]}"))))
    assert other["ismatch"] is False and other["confidence"] < 60

    alike = _ok(client.face_compare(CIFile(_path(ALICE[0])), CIFile(_path(ALICE[1]))))
    assert list(alike) == ["session_id", "similarity"] and alike["similarity"] > 60
    unlike = _ok(
        client.face_compare(CIUrl(photos.url(f"/{ALICE[0]}")), CIUrl(photos.url(f"/{BOB[0]}")))
    )
    assert unlike["similarity"] < 60

    detected = _ok(client.face_detect(CIFile(_path(ALICE[0])), mode=1))
    assert list(detected) == ["session_id", "image_height", "image_width", "face"]
    (face,) = detected["face"]
    assert face["face_id"].isdigit() and "beauty" in face
    every = _ok(client.face_detect(CIUrl(photos.url(f"/{ALICE[0]}")), mode=0))
    assert len(every["face"]) >= 1

    gone = _ok(client.face_delface("alice", [first_face]))
    assert gone == {"deleted": 1, "face_ids": [first_face], "session_id": ""}
    assert first_face not in _ok(client.face_getfaceids("alice"))["face_ids"]
    assert _ok(client.face_delperson("bob")) == {
        "deleted": 1, "person_id": "bob", "session_id": ""
    }  # fmt: skip
    assert client.face_getinfo("bob")["code"] == -1303


def test_group_ids_are_added_and_removed_as_the_other_sdks_send_them(
    http: httpx.Client, account: TencentAccount
) -> None:
    photo = {"image": ("face.jpg", celeba_bytes(ALICE[0]))}
    created = post(
        http, "/face/newperson", account, {"person_id": "p", "group_ids[0]": "a"}, files=photo
    )
    assert code_of(created) == 0 and created.json()["data"]["group_ids"] == ["a"]

    joined = post(http, "/face/addgroupids", account, {"person_id": "p", "group_ids": ["b", "c"]})
    assert code_of(joined) == 0
    assert joined.json()["data"] == {
        "person_id": "p", "added": 2, "group_ids": ["a", "b", "c"], "session_id": ""
    }  # fmt: skip
    again = post(http, "/face/addgroupids", account, {"person_id": "p", "group_ids": ["c"]})
    assert again.json()["data"]["added"] == 0

    left = post(http, "/face/delgroupids", account, {"person_id": "p", "group_ids": ["a", "c"]})
    assert left.json()["data"] == {
        "person_id": "p", "deleted": 2, "group_ids": ["b"], "session_id": ""
    }  # fmt: skip
    unknown = post(http, "/face/delgroupids", account, {"person_id": "p", "group_ids": ["zz"]})
    fails(unknown, -1306, 400)


def test_a_person_is_one_person_at_both_doors(
    http: httpx.Client, account: TencentAccount, monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    """Tencent's person in Tencent's group is found by SenseTime's identification, and a
    person SenseTime made is found by Tencent's identify, under the SenseTime ids."""
    client = sdk(account, server.base_url, monkeypatch)
    _ok(client.face_newperson("carol", ["team"], CIFile(_path(ALICE[0]))))
    creds = account.sensetime.query
    groups = http.post("/info/list_groups", params=creds).json()["groups"]
    (team,) = [group for group in groups if group["name"] == "team"]
    probe = http.post("/face/detection", params=creds, files={"file": celeba_bytes(ALICE[1])})
    face_id = probe.json()["faces"][0]["face_id"]
    identified = http.post(
        "/face/identification",
        params={**creds, "face_id": face_id, "group_id": team["group_id"]},
    ).json()
    assert identified["status"] == "OK", identified
    (candidate,) = identified["candidates"]
    persons = http.post("/info/list_persons", params=creds).json()["persons"]
    assert {"person_id": candidate["person_id"], "name": ""} in persons

    detected = http.post("/face/detection", params=creds, files={"file": celeba_bytes(BOB[0])})
    bob_face = detected.json()["faces"][0]["face_id"]
    person = http.post("/person/create", params={**creds, "name": "Bob", "face_id": bob_face})
    group = http.post(
        "/group/create",
        params={**creds, "name": "st", "person_id": person.json()["person_id"]},
    )
    group_id, person_id = group.json()["group_id"], person.json()["person_id"]
    found = _ok(client.face_identify(group_id, CIFile(_path(BOB[1]))))
    assert found["candidates"][0]["person_id"] == person_id
    assert _ok(client.face_getinfo(person_id))["group_ids"] == [group_id]


def test_the_core_s_calibration_is_the_vendor_s_0_to_100_scale() -> None:
    from app.dialects.tencent.presenters import score

    assert [score(value) for value in (0.4, 0.6, 0.9, 1.0)] == [40.0, 60.0, 90.0, 100.0]
