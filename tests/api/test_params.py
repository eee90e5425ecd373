"""The request parser against what real SenseTime v1 clients send (wire-compat.md, "Requests").

A tiny Starlette app echoes what `Params` saw, so each test is one real HTTP exchange through the
ASGI stack; multipart quirks are sent as hand-built bytes because client libraries would "fix" them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from app.api.params import MAX_BODY_BYTES, Params
from app.errors import ApiError

TEXT_FIELDS = ("name", "user_data")
LIST_FIELDS = ("face_id", "face_ids", "person_id", "faceset_id", "group_id")
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) + b"\xff\xd9"
BOUNDARY = "----facesrvBoundary7MA4YWxk"
NAME = "张伟 Zhang"


async def echo(request: Request) -> JSONResponse:
    """Report every parameter the parser was asked about, as the routes would read them."""
    params = await Params.from_request(request)
    api_id, api_secret = params.credentials()
    seen: dict[str, Any] = {"api_id": api_id, "api_secret": api_secret}
    for name in TEXT_FIELDS:
        if params.has(name):
            seen[name] = params.text(name)
    seen["attributes"] = params.flag("attributes")
    seen["top"] = params.integer("top", default=3, lo=1, hi=10)
    for name in LIST_FIELDS:
        seen[name] = params.id_list(name)
    image = params.file()
    seen["file"] = None if image is None else image.hex()
    return JSONResponse(seen)


async def need_name(request: Request) -> JSONResponse:
    """A route with a required text argument, to see the missing-argument reason."""
    params = await Params.from_request(request)
    return JSONResponse({"name": params.text("name", required=True)})


async def api_error(request: Request, exc: Exception) -> JSONResponse:
    """Render ApiError as the app does, so tests see the wire status and reason."""
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.http_status)


APP = Starlette(
    routes=[
        Route("/echo", echo, methods=["GET", "POST"]),
        Route("/need_name", need_name, methods=["POST"]),
    ],
    exception_handlers={ApiError: api_error},
)


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(APP)


def part(name: str, content: bytes | str, *headers: str, disposition: str | None = None) -> bytes:
    """One multipart part: Content-Disposition (overridable) plus any extra header lines."""
    if isinstance(content, str):
        content = content.encode("utf-8")
    lines = [disposition or f'Content-Disposition: form-data; name="{name}"', *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + content


def multipart(
    *parts: bytes, boundary: str = BOUNDARY, preamble: bytes = b"", end: bytes = b"--\r\n"
) -> bytes:
    delimiter = b"--" + boundary.encode()
    body = preamble
    for one in parts:
        body += delimiter + b"\r\n" + one + b"\r\n"
    return body + delimiter + end


def mp_type(boundary: str = BOUNDARY) -> dict[str, str]:
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()


def invalid(response: Any) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "INVALID_ARGUMENT"
    return body["reason"]


# --- encodings: the same request in every shape a client may send -----------------------------

FULL = {
    "api_id": "ID",
    "api_secret": "SECRET",
    "name": NAME,
    "attributes": "1",
    "top": "5",
    "face_id": "f1,f2",
}
EXPECTED_FULL = {
    "api_id": "ID",
    "api_secret": "SECRET",
    "name": NAME,
    "attributes": True,
    "top": 5,
    "face_id": ["f1", "f2"],
}


def json_body(**dumps: Any) -> Callable[[dict[str, str]], bytes]:
    return lambda params: json.dumps(params, **dumps).encode("utf-8")


def form_body(params: dict[str, str]) -> bytes:
    return urlencode(params).encode("ascii")


def multipart_body(params: dict[str, str]) -> bytes:
    return multipart(*(part(key, value) for key, value in params.items()))


ENCODINGS: dict[str, tuple[dict[str, str], Callable[[dict[str, str]], bytes]]] = {
    "json": ({"Content-Type": "application/json"}, json_body()),
    "json charset": ({"Content-Type": "application/json; charset=UTF-8"}, json_body()),
    "json charset no space": ({"Content-Type": "application/json;charset=utf-8"}, json_body()),
    "json pretty raw utf8": (
        {"Content-Type": "application/json"},
        json_body(indent=4, ensure_ascii=False),
    ),
    "json as octet-stream": ({"Content-Type": "application/octet-stream"}, json_body()),
    "json as text/plain": ({"Content-Type": "text/plain"}, json_body()),
    "json no content-type": ({}, json_body()),
    "json as urlencoded": ({"Content-Type": "application/x-www-form-urlencoded"}, json_body()),
    "urlencoded": ({"Content-Type": "application/x-www-form-urlencoded"}, form_body),
    "urlencoded charset": (
        {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
        form_body,
    ),
    "multipart": (mp_type(), multipart_body),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_body_encoding_reads_the_same(client: TestClient, encoding: str) -> None:
    headers, encode = ENCODINGS[encoding]
    seen = ok(client.post("/echo", content=encode(FULL), headers=headers))
    assert {key: seen[key] for key in EXPECTED_FULL} == EXPECTED_FULL


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_query_string_only_including_post_with_empty_body(client: TestClient, method: str) -> None:
    seen = ok(client.request(method, "/echo", params=FULL))
    assert {key: seen[key] for key in EXPECTED_FULL} == EXPECTED_FULL


@pytest.mark.parametrize("content_type", ["application/json", mp_type()["Content-Type"], None])
def test_empty_body_with_any_content_type_uses_query(
    client: TestClient, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    seen = ok(client.post("/echo", params=FULL, content=b"", headers=headers))
    assert seen["name"] == NAME and seen["top"] == 5


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_split_between_query_and_body(client: TestClient, encoding: str) -> None:
    headers, encode = ENCODINGS[encoding]
    query = {"api_id": "ID", "api_secret": "SECRET", "attributes": "1"}
    body = {"name": NAME, "top": "5", "face_id": "f1,f2"}
    seen = ok(client.post("/echo", params=query, content=encode(body), headers=headers))
    assert {key: seen[key] for key in EXPECTED_FULL} == EXPECTED_FULL


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_body_wins_on_conflict(client: TestClient, encoding: str) -> None:
    headers, encode = ENCODINGS[encoding]
    query = {"name": "from-query", "top": "2", "face_id": "q1", "api_id": "ID"}
    body = {"name": "from-body", "top": "7", "face_id": "b1,b2"}
    seen = ok(client.post("/echo", params=query, content=encode(body), headers=headers))
    assert (seen["name"], seen["top"], seen["face_id"]) == ("from-body", 7, ["b1", "b2"])
    assert seen["api_id"] == "ID"


def test_split_attributes_in_query_file_in_multipart(client: TestClient) -> None:
    body = multipart(part("file", JPEG, "Content-Type: image/jpeg", disposition=None))
    seen = ok(client.post("/echo?attributes=1&api_id=ID", content=body, headers=mp_type()))
    assert (seen["attributes"], seen["api_id"], seen["file"]) == (True, "ID", JPEG.hex())


@pytest.mark.parametrize(
    "query",
    [
        "api_id=ID&api_secret=S&top=4&api_id=ID&api_secret=S&top=4",  # SDK that repeats them all
        "api_id=ID&api_secret=S&top=4&",  # trailing &
        "api_id=ID&api_secret=S&top=4&&",
        "api_id=ID&api_secret=S&top=4&date=1448000000000",  # unknown param from an SDK
        "api_id=ID&api_secret=S&top=4&date=1&date=2&whatever",  # unknown, even conflicting
    ],
)
def test_query_string_quirks(client: TestClient, query: str) -> None:
    seen = ok(client.get(f"/echo?{query}"))
    assert (seen["api_id"], seen["api_secret"], seen["top"]) == ("ID", "S", 4)


def test_conflicting_repeats_of_a_scalar_are_rejected(client: TestClient) -> None:
    assert "'top'" in invalid(client.get("/echo?top=3&top=4"))


def test_host_header_is_irrelevant(client: TestClient) -> None:
    seen = ok(client.get("/echo?name=x", headers={"Host": "evil.example:1"}))
    assert seen["name"] == "x"


# --- text fields --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "kwargs"),
    [
        ("query percent-encoded", {"params": {"name": NAME}}),
        ("urlencoded", {"data": {"name": NAME}}),
        ("json escaped", {"content": json.dumps({"name": NAME}), "ct": "application/json"}),
        (
            "json raw utf-8",
            {"content": json.dumps({"name": NAME}, ensure_ascii=False), "ct": "application/json"},
        ),
        ("multipart raw utf-8", {"content": multipart(part("name", NAME)), "ct": "multipart"}),
    ],
)
def test_non_ascii_text_round_trips(client: TestClient, how: str, kwargs: dict[str, Any]) -> None:
    ct = kwargs.pop("ct", None)
    if ct == "multipart":
        kwargs["headers"] = mp_type()
    elif ct:
        kwargs["headers"] = {"Content-Type": ct}
    if "content" in kwargs and isinstance(kwargs["content"], str):
        kwargs["content"] = kwargs["content"].encode("utf-8")
    assert ok(client.post("/echo", **kwargs))["name"] == NAME


def test_raw_utf8_in_query_string(client: TestClient) -> None:
    """A client that does not percent-encode: the raw bytes are UTF-8, not Latin-1."""
    scope_query = f"name={NAME}".replace(" ", "+").encode("utf-8")
    messages: list[dict[str, Any]] = []
    run_asgi(
        {"method": "GET", "path": "/echo", "query_string": scope_query, "headers": []},
        [b""],
        messages,
    )
    assert response_of(messages)[1]["name"] == NAME


@pytest.mark.parametrize(
    ("value", "expected"),
    [(123, "123"), (1.5, "1.5"), ("", ""), ("  spaced  ", "  spaced  ")],
)
def test_json_scalar_for_text(client: TestClient, value: Any, expected: str) -> None:
    assert ok(client.post("/echo", json={"name": value}))["name"] == expected


@pytest.mark.parametrize("value", [True, ["a"], {"a": 1}])
def test_json_non_scalar_for_text_is_invalid(client: TestClient, value: Any) -> None:
    assert (
        invalid(client.post("/echo", json={"name": value})) == "argument 'name': must be a string"
    )


def test_json_null_counts_as_absent(client: TestClient) -> None:
    seen = ok(client.post("/echo", json={"name": None, "top": None, "face_id": None}))
    assert "name" not in seen and seen["top"] == 3 and seen["face_id"] is None


@pytest.mark.parametrize(
    "request_kwargs",
    [{}, {"json": {"other": "x"}}, {"data": {"other": "x"}}, {"json": {"name": None}}],
)
def test_required_text_missing(client: TestClient, request_kwargs: dict[str, Any]) -> None:
    assert invalid(client.post("/need_name", **request_kwargs)) == "argument 'name': required"


def test_required_text_present(client: TestClient) -> None:
    assert ok(client.post("/need_name?name=a"))["name"] == "a"


# --- booleans and integers ----------------------------------------------------------------------

FLAG_CASES = [
    (1, True),
    (0, False),
    ("1", True),
    ("0", False),
    ("true", True),
    ("false", False),
    ("True", True),
    ("FALSE", False),
    (True, True),
    (False, False),
    (" 1 ", True),
]


@pytest.mark.parametrize(("value", "expected"), FLAG_CASES)
def test_flag_in_json(client: TestClient, value: Any, expected: bool) -> None:
    assert ok(client.post("/echo", json={"attributes": value}))["attributes"] is expected


@pytest.mark.parametrize(("value", "expected"), [c for c in FLAG_CASES if isinstance(c[0], str)])
@pytest.mark.parametrize("where", ["query", "form", "multipart"])
def test_flag_as_text(client: TestClient, where: str, value: str, expected: bool) -> None:
    assert ok(send_text(client, where, "attributes", value))["attributes"] is expected


@pytest.mark.parametrize("value", [2, -1, 1.0, "2", "yes", "", "on", [1], None])
def test_flag_invalid(client: TestClient, value: Any) -> None:
    if value is None:
        response = client.get("/echo?attributes=")
    else:
        response = client.post("/echo", json={"attributes": value})
    assert invalid(response) == "argument 'attributes': must be 0 or 1"


def test_flag_and_integer_defaults(client: TestClient) -> None:
    seen = ok(client.get("/echo"))
    assert (seen["attributes"], seen["top"]) == (False, 3)


@pytest.mark.parametrize(
    ("value", "expected"), [(3, 3), ("3", 3), (" 3 ", 3), ("+3", 3), (1, 1), (10, 10), ("010", 10)]
)
@pytest.mark.parametrize("where", ["json", "query", "form", "multipart"])
def test_integer_accepted(client: TestClient, where: str, value: Any, expected: int) -> None:
    if where == "json":
        response = client.post("/echo", json={"top": value})
    else:
        response = send_text(client, where, "top", str(value))
    assert ok(response)["top"] == expected


@pytest.mark.parametrize("value", [0, 11, -3, "0", "11", "99999999999999999999"])
def test_integer_out_of_range(client: TestClient, value: Any) -> None:
    assert (
        invalid(client.post("/echo", json={"top": value})) == "argument 'top': not in range(1..10)"
    )


@pytest.mark.parametrize("value", [3.5, 3.0, True, "3.0", "three", "", "3_0", "٣", [3], {"a": 3}])
def test_integer_not_an_integer(client: TestClient, value: Any) -> None:
    assert (
        invalid(client.post("/echo", json={"top": value})) == "argument 'top': must be an integer"
    )


# --- lists --------------------------------------------------------------------------------------

ID_CASES = [
    ("single bare id", "a1", ["a1"]),
    ("comma-joined", "a1,b2,c3", ["a1", "b2", "c3"]),
    ("spaces trimmed", " a1 , b2 ,c3 ", ["a1", "b2", "c3"]),
    ("empty items dropped", ",a1,,b2,", ["a1", "b2"]),
    ("duplicates dropped, order kept", "b2,a1,b2", ["b2", "a1"]),
    ("stringified JSON array", '["a1", "b2"]', ["a1", "b2"]),
    ("nothing usable", " , ", []),
]


@pytest.mark.parametrize("field", LIST_FIELDS)
@pytest.mark.parametrize(("case", "value", "expected"), ID_CASES)
@pytest.mark.parametrize("where", ["query", "form", "multipart", "json"])
def test_id_list_from_a_string(
    client: TestClient, where: str, case: str, value: str, expected: list[str], field: str
) -> None:
    if where == "json":
        response = client.post("/echo", json={field: value})
    else:
        response = send_text(client, where, field, value)
    assert ok(response)[field] == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["a1", "b2"], ["a1", "b2"]),
        ([" a1 ", "", "b2", "a1"], ["a1", "b2"]),
        (["a1,b2", "c3"], ["a1", "b2", "c3"]),
        ([], []),
        (12, ["12"]),
        ([12, "b2"], ["12", "b2"]),
    ],
)
def test_id_list_from_json(client: TestClient, value: Any, expected: list[str]) -> None:
    assert ok(client.post("/echo", json={"face_id": value}))["face_id"] == expected


@pytest.mark.parametrize("value", [[["a"]], [{"id": "a"}], [True], {"a": 1}, True, "[not json]"])
def test_id_list_invalid(client: TestClient, value: Any) -> None:
    reason = invalid(client.post("/echo", json={"face_id": value}))
    assert reason == "argument 'face_id': must be a list of ids"


@pytest.mark.parametrize("where", ["query", "form", "multipart"])
def test_id_list_from_repeated_keys(client: TestClient, where: str) -> None:
    pairs = [("person_id", "p1"), ("person_id", " p2,p3"), ("person_id", "p1"), ("person_id", "")]
    if where == "query":
        response = client.post("/echo", params=pairs)
    elif where == "form":
        response = client.post(
            "/echo",
            content=urlencode(pairs),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    else:
        body = multipart(*(part(key, value) for key, value in pairs))
        response = client.post("/echo", content=body, headers=mp_type())
    assert ok(response)["person_id"] == ["p1", "p2", "p3"]


def test_id_list_absent_is_none(client: TestClient) -> None:
    assert all(ok(client.get("/echo"))[field] is None for field in LIST_FIELDS)


# --- multipart quirks ---------------------------------------------------------------------------

NAME_PARTS = {
    "plain": part("name", NAME),
    "text/plain charset": part("name", NAME, "Content-Type: text/plain; charset=UTF-8"),
    "file-style with filename": part(
        "name",
        NAME,
        "Content-Type: application/octet-stream",
        disposition='Content-Disposition: form-data; name="name"; filename="name.txt"',
    ),
    "unquoted name": part("name", NAME, disposition="Content-Disposition: form-data; name=name"),
    "header case": part("name", NAME, disposition='content-disposition: form-data; NAME="name"'),
}
FILENAMES = [
    None,
    "NoName",
    "C:\\\\Users\\\\face.jpg",
    "C:\\Users\\face.jpg",
    "/tmp/face.jpg",
    "x.mp3",
]
IMAGE_TYPES = [None, "image/jpeg", "application/octet-stream", "multipart/form-data"]


@pytest.mark.parametrize("text_part", NAME_PARTS)
@pytest.mark.parametrize("filename", FILENAMES)
@pytest.mark.parametrize("image_type", IMAGE_TYPES)
def test_multipart_image_by_field_name_only(
    client: TestClient, text_part: str, filename: str | None, image_type: str | None
) -> None:
    disposition = 'Content-Disposition: form-data; name="file"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    extra = [f"Content-Type: {image_type}"] if image_type else []
    body = multipart(NAME_PARTS[text_part], part("file", JPEG, *extra, disposition=disposition))
    seen = ok(client.post("/echo", content=body, headers=mp_type()))
    assert (seen["name"], seen["file"]) == (NAME, JPEG.hex())


@pytest.mark.parametrize(
    ("case", "body", "content_type", "image"),
    [
        (
            "stray CRLF before first boundary",
            multipart(part("file", JPEG), part("top", "4"), preamble=b"\r\n"),
            mp_type()["Content-Type"],
            JPEG,
        ),
        (
            "trailing CRLF after file bytes is kept",
            multipart(part("file", JPEG + b"\r\n"), part("top", "4")),
            mp_type()["Content-Type"],
            JPEG + b"\r\n",
        ),
        (
            "missing final --",
            multipart(part("top", "4"), part("file", JPEG), end=b"\r\n"),
            mp_type()["Content-Type"],
            JPEG,
        ),
        (
            "missing final -- and CRLF",
            multipart(part("top", "4"), part("file", JPEG), end=b""),
            mp_type()["Content-Type"],
            JPEG,
        ),
        (
            "quoted boundary with special characters",
            multipart(part("top", "4"), part("file", JPEG), boundary="a:b c?d"),
            'multipart/form-data; boundary="a:b c?d"',
            JPEG,
        ),
        (
            "boundary before charset, uppercase type",
            multipart(part("top", "4"), part("file", JPEG)),
            f"Multipart/Form-Data; boundary={BOUNDARY}; charset=UTF-8",
            JPEG,
        ),
        (
            "epilogue after closing boundary",
            multipart(part("top", "4"), part("file", JPEG), end=b"--\r\nepilogue junk"),
            mp_type()["Content-Type"],
            JPEG,
        ),
        (
            "bare LF line endings",
            multipart(part("top", "4"), part("file", JPEG)).replace(b"\r\n", b"\n"),
            mp_type()["Content-Type"],
            JPEG.replace(b"\r\n", b"\n"),
        ),
        (
            "image contains the boundary text without a preceding newline",
            multipart(part("top", "4"), part("file", JPEG + b"--" + BOUNDARY.encode() + JPEG)),
            mp_type()["Content-Type"],
            JPEG + b"--" + BOUNDARY.encode() + JPEG,
        ),
        (
            "empty image part",
            multipart(part("top", "4"), part("file", b"")),
            mp_type()["Content-Type"],
            b"",
        ),
    ],
)
def test_multipart_body_quirks(
    client: TestClient, case: str, body: bytes, content_type: str, image: bytes
) -> None:
    seen = ok(client.post("/echo", content=body, headers={"Content-Type": content_type}))
    assert (seen["top"], seen["file"]) == (4, image.hex())


def test_multipart_text_part_with_no_headers_at_all_is_rejected(client: TestClient) -> None:
    body = multipart(b"\r\nvalue")
    assert "field name" in invalid(client.post("/echo", content=body, headers=mp_type()))


def test_multipart_file_wins_over_query_file(client: TestClient) -> None:
    body = multipart(part("file", JPEG))
    assert (
        ok(client.post("/echo?file=x.jpg", content=body, headers=mp_type()))["file"] == JPEG.hex()
    )


@pytest.mark.parametrize(
    "request_kwargs",
    [{"params": {"file": "face.jpg"}}, {"json": {"file": "face.jpg"}}, {"data": {"file": "x"}}],
)
def test_file_only_comes_from_a_multipart_part(
    client: TestClient, request_kwargs: dict[str, Any]
) -> None:
    assert ok(client.post("/echo", **request_kwargs))["file"] is None


def test_repeated_file_parts(client: TestClient) -> None:
    same = multipart(part("file", JPEG), part("file", JPEG))
    assert ok(client.post("/echo", content=same, headers=mp_type()))["file"] == JPEG.hex()
    different = multipart(part("file", JPEG), part("file", JPEG[:-1]))
    response = client.post("/echo", content=different, headers=mp_type())
    assert invalid(response) == "argument 'file': given more than once"


def test_unknown_binary_part_is_ignored_but_undecodable_text_is_invalid(client: TestClient) -> None:
    body = multipart(part("thumbnail", JPEG), part("top", "4"))
    assert ok(client.post("/echo", content=body, headers=mp_type()))["top"] == 4
    body = multipart(part("name", b"\xff\xfe"))
    assert invalid(client.post("/echo", content=body, headers=mp_type())) == (
        "argument 'name': not valid UTF-8 text"
    )


# --- malformed bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "reason_part"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"name=x&top=3", "application/json", "not valid JSON"),
        (b'{"name": "x"', "application/octet-stream", "not valid JSON"),
        (b"[1, 2]", "application/json", "must be a JSON object"),
        (b'"just a string"', "application/json", "must be a JSON object"),
        (b"[]", None, "must be a JSON object"),
        (b"\xff\xd8\xff\xe0 raw image", "application/octet-stream", "neither JSON"),
        (multipart(part("top", "4")), "multipart/form-data", "without a boundary"),
        (b"no delimiter here", mp_type()["Content-Type"], "boundary not found"),
        (
            b"--" + BOUNDARY.encode() + b'\r\nContent-Disposition: form-data; name="top"\r\n\r\n4',
            mp_type()["Content-Type"],
            "final boundary missing",
        ),
        (multipart(b"Content-Disposition: form-data\r\n\r\n4"), mp_type()["Content-Type"], "name"),
        (multipart(b"no colon header\r\n\r\n4"), mp_type()["Content-Type"], "header line"),
        (
            multipart(b'Content-Disposition: form-data; name="a"'),
            mp_type()["Content-Type"],
            "headers",
        ),
        (
            b"--"
            + BOUNDARY.encode()
            + b"garbage\r\n"
            + part("a", "b")
            + b"\r\n--"
            + BOUNDARY.encode(),
            mp_type()["Content-Type"],
            "junk after a boundary",
        ),
    ],
)
def test_malformed_body_is_invalid_argument(
    client: TestClient, body: bytes, content_type: str | None, reason_part: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    assert reason_part in invalid(client.post("/echo", content=body, headers=headers))


# --- size cap -----------------------------------------------------------------------------------


def run_asgi(scope: dict[str, Any], chunks: list[bytes], sent: list[dict[str, Any]]) -> int:
    """Drive APP directly, feeding `chunks` as the body; returns how many chunks were consumed.

    Used where the test must control the transport itself: a Content-Length the body does not
    match, a chunked body with no Content-Length, raw bytes in the query string.
    """
    consumed = 0

    async def receive() -> dict[str, Any]:
        nonlocal consumed
        if consumed < len(chunks):
            consumed += 1
            return {
                "type": "http.request",
                "body": chunks[consumed - 1],
                "more_body": consumed < len(chunks),
            }
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    full_scope = {"type": "http", "http_version": "1.1", "scheme": "http", "root_path": ""}
    full_scope.update(scope)
    full_scope.setdefault("raw_path", full_scope["path"].encode())
    anyio.run(APP, full_scope, receive, send)
    return consumed


def response_of(sent: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


def test_declared_content_length_over_cap_is_refused_unread() -> None:
    sent: list[dict[str, Any]] = []
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(MAX_BODY_BYTES + 1).encode()),
    ]
    consumed = run_asgi(
        {"method": "POST", "path": "/echo", "query_string": b"", "headers": headers},
        [b"{}"],
        sent,
    )
    assert consumed == 0
    assert response_of(sent) == (
        413,
        {
            "status": "REQUEST_ENTITY_TOO_LARGE",
            "reason": f"request body exceeds {MAX_BODY_BYTES} bytes",
        },
    )


def test_streamed_body_over_cap_is_refused_without_reading_it_all() -> None:
    sent: list[dict[str, Any]] = []
    chunk = b"x" * (1024 * 1024)
    chunks = [chunk] * 20
    headers = [(b"content-type", b"application/octet-stream")]
    consumed = run_asgi(
        {"method": "POST", "path": "/echo", "query_string": b"", "headers": headers}, chunks, sent
    )
    assert consumed == 17
    assert response_of(sent)[0] == 413


def test_body_exactly_at_cap_is_accepted(client: TestClient) -> None:
    filler = MAX_BODY_BYTES - len(multipart(part("file", b""), part("top", "4")))
    body = multipart(part("file", b"\x00" * filler), part("top", "4"))
    assert len(body) == MAX_BODY_BYTES
    assert ok(client.post("/echo", content=body, headers=mp_type()))["top"] == 4


# --- helpers used by the matrices above ---------------------------------------------------------


def send_text(client: TestClient, where: str, name: str, value: str) -> Any:
    """POST one text parameter via the query string, a urlencoded body or a multipart body."""
    if where == "query":
        return client.post("/echo", params={name: value})
    if where == "form":
        return client.post("/echo", data={name: value})
    return client.post("/echo", content=multipart(part(name, value)), headers=mp_type())
