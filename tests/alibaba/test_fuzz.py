"""Property-based fuzzing of every Alibaba sface endpoint of a real server, on both databases.

Bodies are JSON objects of plausible and hostile values (or raw bytes), signed right (mostly),
with a lying Content-MD5, or not at all. The property: never a 5xx; a refusal is the gateway's
`{"Code", "Message", "RequestId"}`, anything else Green's `{"code", ..., "requestId", ...}`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.dialects.alibaba.routes import router
from tests.servers import Server
from tests.utils.alibaba import AlibabaAccount, alibaba_account, signed
from tests.utils.fuzz import HOSTILE_URLS, endpoints, fuzz_settings, values

pytestmark = pytest.mark.slow

EXAMPLES = 400  # per database
ENDPOINTS = endpoints(router)
assert len(ENDPOINTS) == 12, ENDPOINTS
NAMES = ["personId", "groupId", "groupIds", "faceIds", "urls", "url", "name", "note", "top"]


@st.composite
def requests(draw: st.DrawFn, known: list[Any]) -> dict[str, Any]:
    _, path = draw(st.sampled_from(ENDPOINTS))
    body: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=4, unique=True)):
        plausible: st.SearchStrategy[Any] = st.one_of(
            st.sampled_from(known), st.lists(st.sampled_from(known), max_size=3)
        )
        if name.startswith("url"):
            plausible = st.one_of(
                st.sampled_from(HOSTILE_URLS), st.lists(st.sampled_from(HOSTILE_URLS), max_size=2)
            )
        body[name] = draw(st.one_of(plausible, values))
    raw = json.dumps(body, allow_nan=True).encode()
    return {
        "path": path,
        "body": draw(st.one_of(st.just(raw), st.just(raw), st.binary(max_size=100))),
        "auth": draw(st.sampled_from(["signed"] * 6 + ["lying", "none"])),
    }


def send(http: httpx.Client, account: AlibabaAccount, request: dict[str, Any]) -> httpx.Response:
    if request["auth"] == "none":
        return http.post(request["path"], content=request["body"])
    lie = b"other" if request["auth"] == "lying" else None
    return signed(http, account, request["path"], request["body"], md5_of=lie)


def test_no_hostile_request_gets_a_5xx_or_leaves_the_envelopes(server: Server) -> None:
    account = alibaba_account(rate_limit="1000000q/10s")
    seen: list[int] = []
    with server.client() as http:
        signed(http, account, "/green/sface/person/add", b'{"personId":"p","groupIds":["g"]}')
        known: list[Any] = ["p", "g", 200_000_000_000_000_001, "x" * 40, "a b"]

        @fuzz_settings(EXAMPLES)
        @given(request=requests(known))
        def check(request: dict[str, Any]) -> None:
            response = send(http, account, request)
            seen.append(response.status_code)
            assert response.status_code < 500, (request, response.text)
            body = response.json()
            if response.status_code >= 300:
                assert list(body) == ["Code", "Message", "RequestId"], (request, body)
            else:
                assert isinstance(body.get("code"), int) and "requestId" in body, (request, body)

        check()
    statuses = {status: seen.count(status) for status in sorted(set(seen))}
    print(f"alibaba fuzz: {len(seen)} requests, HTTP statuses {statuses}")
    assert server.process.poll() is None, server.log_text()
