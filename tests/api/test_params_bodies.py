"""Params: multipart quirks, malformed bodies and the size cap, over a bare app."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from app.config import DEFAULT_MAX_BODY_BYTES as MAX_BODY_BYTES
from tests.utils.params_app import (
    APP,
    BOUNDARY,
    JPEG,
    NAME,
    invalid,
    mp_type,
    multipart,
    ok,
    part,
    response_of,
    run_asgi,
)


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(APP)


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
