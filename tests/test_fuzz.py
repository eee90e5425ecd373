"""Property-based fuzzing of every endpoint of a real server, on both databases.

Hypothesis generates hostile requests of every kind the hardening issue found (NUL and lone
surrogates, huge and deep values, wrong types, long lists and strings, broken bodies, every
encoding and Content-Type, hostile urls, real and mangled images, right, wrong and missing
credentials) and sends them over real HTTP to a real server. The property: never a 5xx, and
always a JSON object with the seed's `status` ("OK" on a 2xx). The fixed cases stay in
test_hardening.py; this finds the ones nobody thought of.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.dialects.sensetime.routes import entities, face, info, matching
from tests.conftest import Credentials, make_account
from tests.servers import Server
from tests.utils.fuzz import HOSTILE_URLS, IMAGES, PHOTO, endpoints, fuzz_settings, quote, values

pytestmark = pytest.mark.slow

EXAMPLES = 1000  # per database: about a minute each on the 2-core CI machine
MAX_QUERY_CHARS = 60_000  # httpx refuses URLs over 64 KiB (InvalidURL) before sending them


ENDPOINTS = endpoints(entities.router, face.router, info.router, matching.router)
assert len(ENDPOINTS) >= 30, ENDPOINTS
TEXT_NAMES = ["name", "user_data", "image_id", "task_id", "url", "face2_id"]
ID_NAMES = ["face_id", "face_ids", "person_id", "group_id", "faceset_id"]
NUMBER_NAMES = ["top", "limit", "offset"]
FLAG_NAMES = ["with_image", "with_faces", "landmarks106", "attributes", "emotions", "auto_rotate"]
FLAG_NAMES.append("async")
PARAMETER_NAMES = TEXT_NAMES + ID_NAMES + NUMBER_NAMES + FLAG_NAMES


def _plausible(name: str, known_ids: list[str]) -> st.SearchStrategy[Any]:
    """A value a careful client could send for `name`, so requests also get past validation."""
    if name in ID_NAMES:
        return st.one_of(
            st.sampled_from(known_ids), st.lists(st.sampled_from(known_ids), max_size=3)
        )
    if name in NUMBER_NAMES:
        return st.integers(-5, 20)
    if name in FLAG_NAMES:
        return st.sampled_from([0, 1, "1", "true", "false", "no"])
    if name == "url":
        return st.sampled_from(HOSTILE_URLS)
    return st.text(max_size=12)


@st.composite
def requests(draw: st.DrawFn, creds: Credentials, known_ids: list[str]) -> dict[str, Any]:
    """One request: endpoint, credentials, parameters (mostly plausible, some hostile), encoding."""
    method, path = draw(st.sampled_from(ENDPOINTS))
    params: dict[str, Any] = {}
    credentials = draw(st.sampled_from(["valid"] * 5 + ["wrong", "missing", "hostile"]))
    if credentials == "valid":
        params.update(creds.query)
    elif credentials == "wrong":
        params.update(api_id=creds.api_id, api_secret="wrong")
    elif credentials == "hostile":
        params.update(api_id=draw(values), api_secret=draw(values))
    for name in draw(st.lists(st.sampled_from(PARAMETER_NAMES), max_size=5, unique=True)):
        plausible = _plausible(name, known_ids)
        params[name] = draw(st.one_of(plausible, plausible, values))
    if draw(st.integers(0, 30)) == 0:
        depth = draw(st.integers(50, 100_000))
        params["face_ids"] = json.loads("[" * min(depth, 500) + "]" * min(depth, 500))
    encoding = draw(st.sampled_from(["query", "json", "form", "multipart", "raw"]))
    if encoding in ("multipart", "raw") and draw(st.booleans()):
        params["file"] = draw(st.one_of(st.sampled_from(IMAGES), st.binary(max_size=300)))
    return {
        "method": method,
        "path": path,
        "params": params,
        "encoding": encoding,
        "content_type": draw(
            st.sampled_from(
                [
                    None,
                    None,
                    None,
                    "application/json",
                    "text/plain",
                    "application/octet-stream",
                    "x/y; a=",
                ]
            )
        ),
        "raw": draw(st.binary(max_size=200)),
    }


def _form_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def send(http: httpx.Client, request: dict[str, Any]) -> httpx.Response:
    """Encode the request as drawn; JSON as Python writes it (surrogates as \\u escapes)."""
    method, path, params = request["method"], request["path"], dict(request["params"])
    file = params.pop("file", None)
    headers = {"Content-Type": request["content_type"]} if request["content_type"] else {}
    encoding = request["encoding"]
    if method == "GET" or encoding == "query":
        query = _safe_query([(k, _form_value(v)) for k, v in params.items() if v is not None])
        if len(query) <= MAX_QUERY_CHARS:
            return http.request(method, path, params=query)
        if method == "GET":  # too long for httpx's URL; its values cut, still hostile
            pairs = [(k, _form_value(v)[:2000]) for k, v in params.items() if v is not None]
            return http.request(method, path, params=_safe_query(pairs))
        encoding = "form"  # a POST that long goes as a form body, as clients send it
    if encoding == "json":
        content = json.dumps(params, allow_nan=True).encode()
        return http.request(method, path, content=content, headers=headers)
    if encoding == "form":
        text = "&".join(f"{quote(k)}={quote(_form_value(v))}" for k, v in params.items())
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return http.request(method, path, content=text.encode(), headers=headers)
    if encoding == "multipart":
        data = {k: _form_value(v).encode("utf-8", "surrogatepass") for k, v in params.items()}
        files = {k: (None, v) for k, v in data.items()}
        if file is not None:
            files["file"] = ("photo.jpg", file)
        if not files:
            files["x"] = (None, b"")
        return http.request(method, path, files=files)
    query = _safe_query([(k, _form_value(v)) for k, v in params.items() if k.startswith("api_")])
    if len(query) > MAX_QUERY_CHARS:  # too long for httpx's URL: cut, still hostile
        pairs = [(k, _form_value(v)[:2000]) for k, v in params.items() if k.startswith("api_")]
        query = _safe_query(pairs)
    body = request["raw"] if file is None else file
    return http.request(method, path, params=query, content=body, headers=headers)


def _safe_query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)


@pytest.fixture
def fuzz_target(configured: str, tmp_path: Path) -> Iterator[tuple[Server, Credentials, list]]:
    # Failed-auth throttling would answer 403 to everything after 30 wrong secrets.
    server = Server(
        configured, tmp_path / "server", env={"FACESRV_AUTH_FAILURE_LIMIT": "1000000q/60s"}
    )
    creds = make_account(rate_limit="1000000q/10s")
    with server.client() as http:
        detected = http.post("/face/detection", params=creds.query, files={"file": PHOTO}).json()
        face_id = detected["faces"][0]["face_id"]
        person = http.post(
            "/person/create", params={**creds.query, "name": "p", "face_id": face_id}
        ).json()
        group = http.post("/group/create", params={**creds.query, "name": "g"}).json()
        faceset = http.post(
            "/faceset/create", params={**creds.query, "name": "f", "face_id": face_id}
        ).json()
    known = [
        face_id,
        detected["image_id"],
        person["person_id"],
        group["group_id"],
        faceset["faceset_id"],
    ]
    yield server, creds, known
    server.stop()


def test_no_hostile_request_gets_a_5xx_or_a_non_json_answer(
    fuzz_target: tuple[Server, Credentials, list[str]],
) -> None:
    server, creds, known = fuzz_target
    seen: list[int] = []
    with server.client() as http:

        @fuzz_settings(EXAMPLES)
        @given(request=requests(creds, known))
        def check(request: dict[str, Any]) -> None:
            response = send(http, request)
            seen.append(response.status_code)
            assert response.status_code < 500, (request, response.text)
            body = response.json()
            assert isinstance(body, dict) and isinstance(body.get("status"), str), body
            if response.status_code < 300:
                assert body["status"] == "OK", body

        check()
    codes = {code: seen.count(code) for code in sorted(set(seen))}
    print(f"fuzz: {len(seen)} requests, HTTP codes {codes}")
    assert server.process.poll() is None, server.log_text()
