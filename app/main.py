"""The FastAPI application: routers, error mapping and background upkeep."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__
from app.api import ops
from app.api.docs import install_docs
from app.api.logs import configure_logging
from app.api.middleware import RequestContextMiddleware
from app.api.responses import ApiResponse
from app.config import get_settings
from app.console.routes import install_console
from app.dialects.alibaba import auth as alibaba_auth
from app.dialects.alibaba import routes as alibaba
from app.dialects.huawei import auth as huawei_auth
from app.dialects.huawei import routes as huawei
from app.dialects.sensetime import auth as sensetime_auth
from app.dialects.sensetime.routes import entities, face, info, matching
from app.dialects.tencent import auth as tencent_auth
from app.dialects.tencent import routes as tencent
from app.errors import ApiError
from app.services.detection import get_analyzer
from app.services.upkeep import Upkeep

HUAWEI_PREFIX = "/v2/"
HTTP_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHORIZED",
    403: "NO_PERMISSION",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "REQUEST_ENTITY_TOO_LARGE",
}


async def api_error_handler(_request: Request, error: Exception) -> ApiResponse:
    assert isinstance(error, ApiError)
    return ApiResponse(error.body(), status_code=error.http_status, headers=error.headers)


async def http_error_handler(request: Request, error: Exception) -> ApiResponse:
    assert isinstance(error, StarletteHTTPException)
    if request.url.path.startswith(HUAWEI_PREFIX):  # what Huawei's API gateway answers
        body = {
            "error_code": "APIG.0101",
            "error_msg": "The API does not exist or has not been published in the environment",
        }
        return ApiResponse(body, status_code=error.status_code, headers=error.headers)
    status = HTTP_STATUS_NAMES.get(error.status_code, "INTERNAL_ERROR")
    reason = {404: "no such API", 405: "method not allowed"}.get(error.status_code)
    body = {"status": status, **({"reason": reason} if reason else {})}
    return ApiResponse(body, status_code=error.status_code, headers=error.headers)


async def validation_error_handler(_request: Request, error: Exception) -> ApiResponse:
    return ApiResponse({"status": "INVALID_ARGUMENT", "reason": str(error)}, status_code=400)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    get_analyzer()  # load (and hash-check) the models now: fail at start, not on a request
    upkeep = Upkeep()
    upkeep.start()
    # What start-up built (modules, routes, models: ~110k objects) lives as long as the process.
    # Left in the collector's oldest generation, each full collection walked it all, a 40-70 ms
    # stall of the request that happened to trigger it; frozen, it is never walked again.
    gc.freeze()
    try:
        yield
    finally:
        upkeep.stop()


DESCRIPTION = """\
A self-hosted face recognition server that speaks vendor HTTP APIs: SenseTime v1 (these paths),
Tencent Youtu (`/face/...` POSTs signed with `Authorization`), Huawei FRS (`/v2/...`) and
Alibaba Green sface (`/green/sface/...`).

**Try it out**: *Authorize* with an `api_id` and `api_secret` (`facesrv account create --name me`
prints them; the first start prints one), then open `/face/detection`, choose a photo and
*Execute*. Operators: `/healthz`, `/readyz` and `/metrics` (see the README).
"""


def security_schemes() -> dict[str, dict]:
    """Every dialect's schemes in the one spec; their names are prefixed by dialect (but
    SenseTime's, which keeps its parameter names), so none may shadow another's."""
    merged: dict[str, dict] = {}
    for dialect in (sensetime_auth, tencent_auth, huawei_auth, alibaba_auth):
        clash = merged.keys() & dialect.SECURITY_SCHEMES.keys()
        assert not clash, f"security schemes named twice: {sorted(clash)}"
        merged.update(dialect.SECURITY_SCHEMES)
    return merged


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    app = FastAPI(
        title="facesrv",
        version=__version__,
        summary="Self-hosted face recognition server speaking the vendors' HTTP APIs",
        description=DESCRIPTION,
        default_response_class=ApiResponse,
        lifespan=lifespan,
        redirect_slashes=False,  # `/info/api/` is an unknown path (404 JSON), not an empty 307
        docs_url=None,  # served by install_docs, with local assets
        redoc_url=None,
    )
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(ops.router)
    app.include_router(info.router)
    app.include_router(entities.router)
    app.include_router(face.router)
    app.include_router(matching.router)
    app.include_router(tencent.router)
    app.include_router(huawei.router)
    app.include_router(alibaba.router)
    install_docs(app, security_schemes())
    install_console(app)
    return app
