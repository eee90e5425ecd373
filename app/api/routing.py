"""Route registration every dialect shares."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from app.errors import ApiError

log = logging.getLogger(__name__)

Endpoint = TypeVar("Endpoint", bound=Callable[..., dict])


def get_or_post(router: APIRouter, path: str) -> Callable[[Endpoint], Endpoint]:
    """Both methods, as two routes so that each has its own OpenAPI operation id."""

    def register(endpoint: Endpoint) -> Endpoint:
        return router.get(path)(router.post(path)(endpoint))

    return register


def enveloped(render: Callable[[ApiError | None], Response]) -> type[APIRoute]:
    """A route class whose errors, from any layer, reach the client in a dialect's own error
    shape: `render(error)`, or `render(None)` for an unexpected failure (logged)."""

    class EnvelopedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except ApiError as error:
                    return render(error)
                except Exception:
                    log.exception("unexpected failure in %s", request.url.path)
                    return render(None)

            return handle

    return EnvelopedRoute
