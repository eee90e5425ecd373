"""The request parser against what real SenseTime v1 clients send (wire-compat.md, "Requests").

A tiny Starlette app echoes what `Params` saw, so each test is one real HTTP exchange through the
ASGI stack; multipart quirks are sent as hand-built bytes because client libraries would "fix" them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from tests.utils.params_app import (
    APP,
    JPEG,
    LIST_FIELDS,
    NAME,
    invalid,
    mp_type,
    multipart,
    ok,
    part,
    response_of,
    run_asgi,
    send_text,
)


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(APP)


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
