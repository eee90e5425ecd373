"""Operator endpoints beside the vendor APIs: liveness, readiness, Prometheus metrics.

None takes API credentials. /metrics is for the scraper: with FACESRV_METRICS_TOKEN set it
wants `Authorization: Bearer <token>`; without one it answers loopback clients only, so a server
bound to 0.0.0.0 does not publish its traffic figures to the network by default.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from app import metrics
from app.api.deps import client_address
from app.config import get_settings
from app.services.health import readiness_problems

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> JSONResponse:
    """The process is up and its event loop answers: nothing else is asked."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz() -> JSONResponse:
    problems = await run_in_threadpool(readiness_problems, get_settings().database_url)
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


def _scrape_allowed(request: Request) -> bool:
    token = get_settings().metrics_token
    if token:
        sent = request.headers.get("authorization", "")
        return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())
    try:
        return ipaddress.ip_address(client_address(request)).is_loopback
    except ValueError:
        return False


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    if not _scrape_allowed(request):
        reason = "set FACESRV_METRICS_TOKEN and send it as a Bearer token, or scrape from loopback"
        return JSONResponse({"status": "UNAUTHORIZED", "reason": reason}, status_code=401)
    body, content_type = await run_in_threadpool(metrics.exposition)
    return Response(body, media_type=content_type)
