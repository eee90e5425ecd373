"""Huawei authentication and errors over real HTTP: requests signed with the SDK core's own
Signer (a stale date, a foreign project, a wrong key), `X-Auth-Token` from curl-style callers
on both seed queries, and the error bodies the SDK reads."""

from __future__ import annotations

import base64
import io
import json
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from PIL import Image

from tests.photos import celeba_bytes, identity_photos
from tests.servers import Server
from tests.utils.huawei import HuaweiAccount, error_of, huawei_account, signed

pytestmark = pytest.mark.slow


def photo_base64() -> str:
    """A CelebA photo as base64 (read when a test asks: skips without the research photo set)."""
    return base64.b64encode(celeba_bytes(identity_photos(3)[0])).decode()


def _face_set(http: httpx.Client, account: HuaweiAccount, name: str = "lib") -> None:
    body = {"face_set_name": name, "external_fields": {"n": {"type": "integer"}}}
    assert signed(http, account, "POST", "/face-sets", body=body).status_code == 200


def test_the_date_window_and_the_key_are_checked(
    http: httpx.Client, account: HuaweiAccount
) -> None:
    now = datetime.now(UTC)
    assert (
        signed(http, account, "GET", "/face-sets", date=now - timedelta(minutes=14)).status_code
        == 200
    )
    stale = signed(http, account, "GET", "/face-sets", date=now - timedelta(minutes=16))
    assert error_of(stale) == (401, "APIG.0301") and "expired" in stale.json()["error_msg"]
    future = signed(http, account, "GET", "/face-sets", date=now + timedelta(minutes=16))
    assert error_of(future) == (401, "APIG.0301")
    assert error_of(signed(http, account, "GET", "/face-sets", sk="wrong")) == (401, "APIG.0301")


def test_the_project_in_the_path_must_be_the_credential_s(
    http: httpx.Client, account: HuaweiAccount
) -> None:
    other = huawei_account()
    foreign = signed(http, account, "GET", "/face-sets", project_id=other.project_id)
    assert error_of(foreign) == (401, "APIG.0301")
    assert "project_id" in foreign.json()["error_msg"]


def test_a_tampered_request_fails_its_signature(http: httpx.Client, account: HuaweiAccount) -> None:
    _face_set(http, account)
    good = signed(http, account, "GET", "/face-sets/lib/faces", query=[("limit", "1")])
    assert good.status_code == 200
    request = good.request
    headers = dict(request.headers)
    replayed_elsewhere = http.get(str(request.url).replace("limit=1", "limit=2"), headers=headers)
    assert error_of(replayed_elsewhere) == (401, "APIG.0301")
    no_header = http.get(f"/v2/{account.project_id}/face-sets")
    assert error_of(no_header) == (401, "APIG.0301")
    junk = http.get(f"/v2/{account.project_id}/face-sets", headers={"Authorization": "Basic x"})
    assert error_of(junk) == (401, "APIG.0301")


def test_curl_callers_query_both_seed_pages_with_a_token(
    http: httpx.Client, account: HuaweiAccount
) -> None:
    _face_set(http, account)
    added = signed(
        http, account, "POST", "/face-sets/lib/faces",
        body={"image_base64": photo_base64(),
              "external_image_id": "img", "external_fields": {"n": 5}},
    )  # fmt: skip
    face_id = added.json()["faces"][0]["face_id"]
    token = {"X-Auth-Token": account.token, "Content-Type": "application/json"}
    base = f"/v2/{account.project_id}/face-sets"
    listed = http.get(base, headers=token).json()
    assert [(s["face_set_name"], s["face_number"]) for s in listed["face_sets_info"]] == [
        ("lib", 1)
    ]
    assert list(listed["face_sets_info"][0]) == [
        "face_number", "external_fields", "face_set_id", "face_set_name", "create_date",
        "face_set_capacity",
    ]  # fmt: skip
    page = http.get(f"{base}/lib/faces", params={"offset": 0, "limit": 1}, headers=token).json()
    assert list(page)[:3] == ["face_set_id", "face_set_name", "faces"]  # then request_id
    (face,) = page["faces"]
    assert list(face) == ["bounding_box", "external_fields", "external_image_id", "face_id"]
    assert list(face["bounding_box"]) == ["width", "top_left_y", "top_left_x", "height"]
    assert (face["face_id"], face["external_fields"]) == (face_id, {"n": 5})
    by_id = http.get(f"{base}/lib/faces", params={"face_id": face_id}, headers=token).json()
    assert [f["external_image_id"] for f in by_id["faces"]] == ["img"]
    too_far = http.get(f"{base}/lib/faces", params={"offset": 10_000, "limit": 1}, headers=token)
    assert error_of(too_far) == (400, "FRS.0012")
    unknown = http.get(f"{base}/nolib/faces", headers=token)
    assert error_of(unknown) == (400, "FRS.0302")
    bad_token = http.get(base, headers={"X-Auth-Token": account.token + "x"})
    assert error_of(bad_token) == (403, "FRS.0002")
    other = huawei_account()
    assert error_of(http.get(f"/v2/{other.project_id}/face-sets", headers=token)) == (
        403, "FRS.0002"
    )  # fmt: skip


def _curl(url: str, token: str) -> dict:
    """The curl command line the README shows, run as it is."""
    command = [
        "curl",
        "-sS",
        "-H",
        f"X-Auth-Token: {token}",
        "-H",
        "Content-Type: application/json",
    ]
    return json.loads(subprocess.run([*command, url], capture_output=True, check=True).stdout)


def test_the_seed_queries_answer_curl_itself(
    server: Server, http: httpx.Client, account: HuaweiAccount
) -> None:
    _face_set(http, account)
    signed(
        http, account, "POST", "/face-sets/lib/faces",
        body={"image_base64": photo_base64(), "external_image_id": "img"},
    )  # fmt: skip
    base = f"{server.base_url}/v2/{account.project_id}/face-sets"
    (library,) = _curl(base, account.token)["face_sets_info"]
    assert (library["face_set_name"], library["face_number"]) == ("lib", 1)
    page = _curl(f"{base}/lib/faces?offset=0&limit=5", account.token)
    (face,) = page["faces"]
    by_id = _curl(f"{base}/lib/faces?face_id={face['face_id']}", account.token)
    assert [found["external_image_id"] for found in by_id["faces"]] == ["img"]
    refused = _curl(base, "not-a-token")
    assert refused["error_code"] == "FRS.0002"


def test_bad_input_gets_the_vendor_codes(http: httpx.Client, account: HuaweiAccount) -> None:
    _face_set(http, account)
    cases = [
        ("POST", "/face-sets", {"face_set_name": ""}, (400, "FRS.0011")),
        ("POST", "/face-sets", {"face_set_name": "x", "external_fields": {"a": {"type": "blob"}}},
         (400, "FRS.0012")),
        ("POST", "/face-sets/lib/faces", {"image_base64": "%%%"}, (400, "FRS.0015")),
        ("POST", "/face-sets/lib/faces", {}, (400, "FRS.0011")),
        ("POST", "/face-sets/lib/faces", {"image_base64": "aGVsbG8="}, (400, "FRS.0016")),
        ("POST", "/face-sets/lib/faces",
         {"image_base64": photo_base64(),
          "external_fields": {"n": "five"}}, (400, "FRS.0012")),
        ("POST", "/face-sets/lib/search", {"face_id": "zzzzzzzz"}, (400, "FRS.0403")),
        ("POST", "/face-sets/lib/search", {"face_id": "x", "filter": "n:[1 TO"}, (400, "FRS.0012")),
        ("POST", "/face-sets/lib/search", {"face_id": "x", "filter": "nope:1"}, (400, "FRS.0012")),
        ("POST", "/face-sets/lib/search", {"face_id": "x", "threshold": 2}, (400, "FRS.0012")),
        ("PUT", "/face-sets/lib/faces", {"face_id": "00000001"}, (400, "FRS.0403")),
        ("DELETE", "/face-sets/lib/faces/batch", {}, (400, "FRS.0011")),
        ("DELETE", "/face-sets/nolib", None, (400, "FRS.0302")),
    ]  # fmt: skip
    for method, path, body, expected in cases:
        assert error_of(signed(http, account, method, path, body=body)) == expected, (path, body)
    blank = io.BytesIO()
    Image.new("RGB", (200, 200)).save(blank, "JPEG")
    no_face = {"image_base64": base64.b64encode(blank.getvalue()).decode()}
    assert error_of(signed(http, account, "POST", "/face-sets/lib/faces", body=no_face)) == (
        400, "FRS.0404"
    )  # fmt: skip
    assert error_of(signed(http, account, "POST", "/face-sets/lib/search", body=no_face)) == (
        400, "FRS.0304"
    )  # fmt: skip
    unknown_field = signed(
        http, account, "DELETE", "/face-sets/lib/faces", query=[("colour", "red")]
    )
    assert error_of(unknown_field) == (400, "FRS.0402")
