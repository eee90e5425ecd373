"""Outermost request wrapper: request id, rate-limit and timing headers, no 500 unanswered.

A pure ASGI middleware (not BaseHTTPMiddleware) so the request id context variable set here is
visible where the response body is rendered, and headers can be added to every response start.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.responses import ApiResponse, current_request_id

log = logging.getLogger("facesrv")


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
        state = scope.setdefault("state", {})
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                elapsed_ms = (time.perf_counter() - started_at) * 1000
                headers.append((b"server-timing", f"app;dur={elapsed_ms:.2f}".encode()))
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
            current_request_id.reset(token)
