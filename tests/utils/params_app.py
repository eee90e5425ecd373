"""A bare Starlette app over `Params`, so the parser is tested apart from any endpoint."""

from __future__ import annotations

import json
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from app.api.params import Params
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


def send_text(client: TestClient, where: str, name: str, value: str) -> Any:
    """POST one text parameter via the query string, a urlencoded body or a multipart body."""
    if where == "query":
        return client.post("/echo", params={name: value})
    if where == "form":
        return client.post("/echo", data={name: value})
    return client.post("/echo", content=multipart(part(name, value)), headers=mp_type())


def invalid(response: Any) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "INVALID_ARGUMENT"
    return body["reason"]


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
