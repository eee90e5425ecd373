"""Outermost request wrapper: request id, rate-limit and timing headers, no 500 unanswered, and
each request's log line and metrics.

A pure ASGI middleware (not BaseHTTPMiddleware) so the request id context variable set here is
visible where the response body is rendered, and headers can be added to every response start.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.api.logs import redact
from app.api.responses import ApiResponse, Outcome, current_outcome, current_request_id

log = logging.getLogger("facesrv")
access_log = logging.getLogger("facesrv.access")
# Paths that are not the API: probes and scrapes are neither logged nor counted per request.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
UNMATCHED = "unmatched"  # the endpoint label of unknown paths (bounded label values)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        request_id = uuid.uuid4().hex
        token = current_request_id.set(request_id)
        outcome = Outcome()
        outcome_token = current_outcome.set(outcome)
        state = scope.setdefault("state", {})
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                outcome.http_status = message["status"]
                outcome.seconds = time.perf_counter() - started_at
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"server-timing", f"app;dur={outcome.seconds * 1000:.2f}".encode()))
                for name, value in state.get("rate_headers", {}).items():
                    headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception(
                "request %s %s failed [request_id=%s]",
                scope.get("method"),
                scope.get("path"),
                request_id,
            )
            if not started:
                reason = f"internal error, request_id {request_id}"
                response = ApiResponse({"status": "INTERNAL_ERROR", "reason": reason}, 500)
                await response(scope, receive, send_with_headers)
        finally:
            current_outcome.reset(outcome_token)
            current_request_id.reset(token)
            if scope.get("path") not in QUIET_PATHS:
                _record(scope, state, request_id, outcome)


def _record(scope: Scope, state: dict, request_id: str, outcome: Outcome) -> None:
    """The request's metrics and its one log line (secrets redacted from the query string)."""
    route = scope.get("route")
    endpoint = getattr(route, "path", UNMATCHED)
    tags = getattr(route, "tags", None)
    dialect = str(tags[0]) if tags else "none"
    status = outcome.status or ("OK" if outcome.http_status < 400 else "")
    metrics.REQUESTS.labels(endpoint, dialect, str(outcome.http_status), status).inc()
    metrics.REQUEST_SECONDS.labels(endpoint, dialect).observe(outcome.seconds)
    query = scope.get("query_string", b"").decode("latin-1")
    path = redact(scope.get("path", "") + (f"?{query}" if query else ""))
    client = scope.get("client")
    fields = {
        "request_id": request_id,
        "api_id": state.get("api_id"),
        "method": scope.get("method"),
        "path": path,
        "endpoint": endpoint,
        "dialect": dialect,
        "http_status": outcome.http_status,
        "status": status,
        "latency_ms": round(outcome.seconds * 1000, 2),
        "client": client[0] if client else None,
    }
    access_log.info(
        "%s %s %s %s %.2fms request_id=%s api_id=%s",
        fields["method"],
        path,
        outcome.http_status,
        status,
        fields["latency_ms"],
        request_id,
        fields["api_id"],
        extra=fields,
    )
