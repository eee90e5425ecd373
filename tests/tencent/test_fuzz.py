"""Property-based fuzzing of every Tencent endpoint of a real server, on both databases.

Requests are signed right (most of the time), wrongly, replayed, or not at all; parameters are
plausible ids, hostile values, urls and images under every field name the SDKs use, sent as
JSON, the Python SDK's file-style multipart, a form or raw bytes. The property: never a 5xx,
always the vendor's envelope (`data` object, integer `code`, string `message`), and code 0
exactly on HTTP 200.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.dialects.tencent.routes import router
from tests.servers import Server
from tests.utils.fuzz import HOSTILE_URLS, IMAGES, PHOTO, endpoints, fuzz_settings, values
from tests.utils.tencent import TencentAccount, post, sign, tencent_account

pytestmark = pytest.mark.slow

EXAMPLES = 500  # per database
ENDPOINTS = endpoints(router)
assert len(ENDPOINTS) == 16, ENDPOINTS
ID_NAMES = ["person_id", "group_id", "face_id"]
LIST_NAMES = ["group_ids", "face_ids", "urls"]
TEXT_NAMES = ["person_name", "tag", "session_id", "url", "urlA", "urlB", "appid", "bucket"]
IMAGE_NAMES = ["image", "images[0]", "images[1]", "imageA", "imageB"]
PARAMETER_NAMES = [*ID_NAMES, *LIST_NAMES, *TEXT_NAMES, "mode", "group_ids[0]", "urls[0]"]


@st.composite
def requests(draw: st.DrawFn, account: TencentAccount, known: list[str]) -> dict[str, Any]:
    method, path = draw(st.sampled_from(ENDPOINTS))
    params: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(PARAMETER_NAMES), max_size=5, unique=True)):
        plausible = st.one_of(st.sampled_from(known), st.lists(st.sampled_from(known), max_size=3))
        if name.startswith("url"):
            plausible = st.sampled_from(HOSTILE_URLS)
        if name == "mode":
            plausible = st.sampled_from([0, 1, "1", 2, "x"])
        params[name] = draw(st.one_of(plausible, plausible, values))
    images = {
        name: draw(st.one_of(st.sampled_from(IMAGES), st.binary(max_size=300)))
        for name in draw(st.lists(st.sampled_from(IMAGE_NAMES), max_size=2, unique=True))
    }
    return {
        "path": path,
        "params": params,
        "images": images,
        "signature": draw(st.sampled_from(["valid"] * 6 + ["wrong", "node", "none", "junk"])),
        "encoding": draw(st.sampled_from(["json", "json", "multipart", "form", "raw"])),
        "raw": draw(st.binary(max_size=200)),
        "junk": draw(st.text(max_size=60)),
    }


def _form_value(value: Any) -> bytes:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.encode("utf-8", "surrogatepass")


def send(http: httpx.Client, account: TencentAccount, request: dict[str, Any]) -> httpx.Response:
    kind = request["signature"]
    authorization = {
        "valid": sign(account),
        "node": sign(account, node=True),
        "wrong": sign(account, key="wrong"),
        "none": "",
        # What an HTTP library lets through: printable ASCII (httpx refuses CR, LF, NUL).
        "junk": "".join(ch for ch in request["junk"] if ch.isascii() and ch.isprintable()).strip(),
    }[kind]
    headers = {"Authorization": authorization} if authorization else {}
    params = {"appid": account.app_id, **request["params"]}
    encoding, path = request["encoding"], request["path"]
    if request["images"] or encoding == "multipart":
        # The Python SDK's shape: every field a file-style part named after itself.
        files = {name: (name, _form_value(value)) for name, value in params.items()}
        files.update({name: (name, data) for name, data in request["images"].items()})
        return http.post(path, files=files, headers=headers)
    if encoding == "json":
        content = json.dumps(params, allow_nan=True).encode()
        return http.post(
            path, content=content, headers={**headers, "Content-Type": "application/json"}
        )
    if encoding == "form":
        form = {
            name: _form_value(value).decode("utf-8", "surrogatepass")
            for name, value in params.items()
        }
        return http.post(
            path,
            content=urlencode(form, encoding="utf-8", errors="surrogatepass").encode(),
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        )
    return http.post(path, content=request["raw"], headers=headers)


def test_no_hostile_request_gets_a_5xx_or_leaves_the_envelope(server: Server) -> None:
    account = tencent_account(rate_limit="1000000q/10s")
    seen: list[int] = []
    codes: list[object] = []
    with server.client() as http:
        created = post(
            http, "/face/newperson", account, {"person_id": "p", "group_ids[0]": "g"},
            files={"image": ("x.jpg", PHOTO)},
        )  # fmt: skip
        face = created.json()["data"]["face_id"]
        known = ["p", "g", face, "1000000000000000001", "x" * 70, "a b"]

        @fuzz_settings(EXAMPLES)
        @given(request=requests(account, known))
        def check(request: dict[str, Any]) -> None:
            response = send(http, account, request)
            seen.append(response.status_code)
            codes.append(response.json().get("code"))
            assert response.status_code < 500, (request, response.text)
            body = response.json()
            assert isinstance(body, dict) and list(body)[:3] == ["data", "code", "message"], body
            assert isinstance(body["code"], int) and isinstance(body["data"], dict), body
            assert (response.status_code == 200) == (body["code"] == 0), body

        check()
    statuses = {status: seen.count(status) for status in sorted(set(seen))}
    by_code = {code: codes.count(code) for code in sorted(set(codes), key=str)}
    print(f"tencent fuzz: {len(seen)} requests, HTTP statuses {statuses}, codes {by_code}")
    assert server.process.poll() is None, server.log_text()
