"""/console (the page), /console/assets (its modules and styles) and the thumbnail endpoint."""

from __future__ import annotations

import base64
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from app.api import fields
from app.api.fields import Form
from app.api.params import argument_error
from app.db.session import session_scope
from app.dialects.sensetime.auth import CallerDep
from app.services.thumbnails import thumbnails_of

STATIC = Path(__file__).parent / "static"  # index.html, and assets/ for the modules and CSS
ASSETS_URL = "/console/assets"
# Everything the page loads comes from this server; photos are shown through blob: URLs,
# thumbnails through data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/console")
async def console_page() -> FileResponse:
    return FileResponse(
        STATIC / "index.html",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )


MAX_THUMBNAILS = 100  # ids a call (~6 KB base64 each at most); the console splits more


def _face_ids(name: str, value: list[str] | None) -> list[str]:
    if not value:
        raise argument_error(name, "required: comma-joined face ids")
    if len(value) > MAX_THUMBNAILS:
        raise argument_error(name, f"at most {MAX_THUMBNAILS} ids a call, got {len(value)}")
    return value


THUMBNAILS_FORM = Form([fields.ids("face_ids", "the faces", required=True, check=_face_ids)])


def _thumbnails(account_id: int, face_ids: list[str]) -> dict[str, bytes | None]:
    with session_scope() as db:
        return thumbnails_of(db, account_id, face_ids)


@router.post("/console/api/thumbnails")
async def face_thumbnails(caller: CallerDep) -> dict:
    """Many faces' JPEG crops in one call (one call against the rate limit, as every API call):
    `{"status": "OK", "thumbnails": {"<face_id>": "<base64 JPEG>" | null}}`, keyed by the ids as
    sent. null where there is nothing to show: a face kept without a crop, a made-up id and
    another account's face alike (the page shows a placeholder).

    POST, with the SenseTime credentials in the body (or the query string, as the public API
    takes them), so the secret never sits in a URL; `face_ids` comma-joined, a JSON array or
    the key repeated, at most MAX_THUMBNAILS (more is 400 INVALID_ARGUMENT).
    """
    face_ids = THUMBNAILS_FORM.read(caller.params)["face_ids"]
    found = await run_in_threadpool(_thumbnails, caller.account.id, face_ids)
    return {
        "status": "OK",
        "thumbnails": {
            face_id: None if jpeg is None else base64.b64encode(jpeg).decode("ascii")
            for face_id, jpeg in found.items()
        },
    }


def install_console(app: FastAPI) -> None:
    """The page, its assets and the thumbnail endpoint (none of them in the OpenAPI spec)."""
    app.mount(ASSETS_URL, StaticFiles(directory=STATIC / "assets"), name="console-assets")
    app.include_router(router)
