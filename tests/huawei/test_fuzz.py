"""Property-based fuzzing of every Huawei endpoint of a real server, on both databases.

Requests are signed right (mostly) or wrongly, carry a token or nothing; path names, query and
JSON bodies mix plausible names, hostile values, urls and images. The property: never a 5xx,
and every error is the vendor's `{"error_code", "error_msg"}` body.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.dialects.huawei.routes import router
from tests.servers import Server
from tests.utils.fuzz import HOSTILE_URLS, IMAGES, endpoints, fuzz_settings, values
from tests.utils.huawei import HuaweiAccount, huawei_account, signed

pytestmark = pytest.mark.slow

EXAMPLES = 400  # per database
ENDPOINTS = endpoints(router)
assert len(ENDPOINTS) == 10, ENDPOINTS
NAMES = [
    "face_set_name", "face_set_capacity", "external_fields", "image_base64", "image_url",
    "external_image_id", "single", "face_id", "top_n", "threshold", "filter", "return_fields",
    "sort", "offset", "limit",
]  # fmt: skip


@st.composite
def requests(draw: st.DrawFn, known: list[str]) -> dict[str, Any]:
    method, path = draw(st.sampled_from(ENDPOINTS))
    face_set = draw(st.one_of(st.sampled_from(known), st.text(max_size=12)))
    body: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=5, unique=True)):
        plausible: st.SearchStrategy[Any] = st.sampled_from(known)
        if name == "image_base64":
            plausible = st.sampled_from([base64.b64encode(i).decode() for i in IMAGES])
        elif name == "image_url":
            plausible = st.sampled_from(HOSTILE_URLS)
        elif name == "filter":
            plausible = st.sampled_from(["n:1", "n:[1 TO 5] && external_image_id:x", "((", "n:"])
        elif name == "external_fields":
            plausible = st.sampled_from([{"n": 1}, {"n": {"type": "integer"}}, {"zz": 1}, "{"])
        body[name] = draw(st.one_of(plausible, values))
    return {
        "method": method,
        "path": path.removeprefix("/v2/{project_id}").replace(
            "{face_set_name}", quote(face_set or "x", safe="")
        ),
        "body": body,
        "query": draw(st.lists(st.tuples(st.sampled_from(NAMES), st.text(max_size=8)), max_size=3)),
        "auth": draw(st.sampled_from(["signed"] * 6 + ["wrong", "token", "none"])),
    }


def send(http: httpx.Client, account: HuaweiAccount, request: dict[str, Any]) -> httpx.Response:
    method, path, body = request["method"], request["path"], request["body"]
    content = json.dumps(body, allow_nan=True).encode() if body else b""
    query = [(k, v) for k, v in request["query"] if v.isprintable()]
    if request["auth"] in ("signed", "wrong"):
        sk = None if request["auth"] == "signed" else "wrong"
        return signed(http, account, method, path, content=content, query=query, sk=sk)
    headers = {"Content-Type": "application/json"}
    if request["auth"] == "token":
        headers["X-Auth-Token"] = account.token
    url = f"/v2/{account.project_id}{path}"
    return http.request(method, url, params=query, content=content, headers=headers)


def test_no_hostile_request_gets_a_5xx_or_leaves_the_error_shape(server: Server) -> None:
    account = huawei_account(rate_limit="1000000q/10s")
    seen: list[int] = []
    with server.client() as http:
        signed(http, account, "POST", "/face-sets", body={
            "face_set_name": "lib", "external_fields": {"n": {"type": "integer"}},
        })  # fmt: skip
        added = signed(http, account, "POST", "/face-sets/lib/faces", body={
            "image_base64": base64.b64encode(IMAGES[0]).decode(), "external_fields": {"n": 1},
        })  # fmt: skip
        known = ["lib", added.json()["faces"][0]["face_id"], "00000001", "x" * 70]

        @fuzz_settings(EXAMPLES)
        @given(request=requests(known))
        def check(request: dict[str, Any]) -> None:
            response = send(http, account, request)
            seen.append(response.status_code)
            assert response.status_code < 500, (request, response.text)
            body = response.json()
            assert isinstance(body, dict), body
            if response.status_code >= 400:
                assert isinstance(body.get("error_code"), str), (request, body)
                assert isinstance(body.get("error_msg"), str), (request, body)

        check()
    statuses = {status: seen.count(status) for status in sorted(set(seen))}
    print(f"huawei fuzz: {len(seen)} requests, HTTP statuses {statuses}")
    assert server.process.poll() is None, server.log_text()
