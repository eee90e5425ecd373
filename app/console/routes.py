"""/console (the page), /console/assets (its modules and styles) and the thumbnail endpoint."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from app.db.session import session_scope
from app.dialects.sensetime.auth import CallerDep
from app.services.thumbnails import thumbnail_of

STATIC = Path(__file__).parent / "static"  # index.html, and assets/ for the modules and CSS
ASSETS_URL = "/console/assets"
# Everything the page loads comes from this server; thumbnails are shown through blob: URLs.
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


def _thumbnail(account_id: int, face_id: str) -> bytes | None:
    with session_scope() as db:
        return thumbnail_of(db, account_id, face_id)


@router.post("/console/api/thumbnails/{face_id}")
async def face_thumbnail(face_id: str, caller: CallerDep) -> Response:
    """A face's JPEG crop, or 204 for a face kept without one (the page shows a placeholder).

    POST, with the SenseTime credentials in the body (or the query string, as the public API
    takes them), because the page fetches it as a blob: an `<img src>` would have to put the
    secret in a URL. Another account's face, like a made-up id, is 404.
    """
    jpeg = await run_in_threadpool(_thumbnail, caller.account.id, face_id)
    if jpeg is None:
        return Response(status_code=204)
    return Response(
        jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )


def install_console(app: FastAPI) -> None:
    """The page, its assets and the thumbnail endpoint (none of them in the OpenAPI spec)."""
    app.mount(ASSETS_URL, StaticFiles(directory=STATIC / "assets"), name="console-assets")
    app.include_router(router)
