"""Route registration every dialect shares."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from app.api.fields import NOTHING, Form
from app.errors import ApiError

log = logging.getLogger(__name__)

Endpoint = TypeVar("Endpoint", bound=Callable[..., dict])


def error_response(description: str, example: dict[str, Any]) -> dict[str, Any]:
    """One OpenAPI error answer of a dialect: what it means and a body in the dialect's shape."""
    return {"description": description, "content": {"application/json": {"example": example}}}


@dataclass(frozen=True)
class Operations:
    """A dialect's routes, each registered with the form its handler reads (app.api.fields), so
    the OpenAPI operation lists the parameters the parser applies, behind the dialect's
    security schemes (named in `security`, defined in the dialect's auth module)."""

    router: APIRouter
    dialect: str  # the operations' OpenAPI tag, and the `dialect` label of their metrics
    security: list[dict[str, list[str]]]
    responses: dict[int | str, dict[str, Any]]  # the dialect's error answers, described

    def add(self, method: str, path: str, form: Form = NOTHING) -> Callable[[Endpoint], Endpoint]:
        extra = form.openapi(method, security=self.security)
        return self.router.api_route(
            path,
            methods=[method],
            openapi_extra=extra,
            response_model=None,
            description=form.description,
            responses=self.responses,
            tags=[self.dialect],
        )

    def get(self, path: str, form: Form = NOTHING) -> Callable[[Endpoint], Endpoint]:
        return self.add("GET", path, form)

    def post(self, path: str, form: Form = NOTHING) -> Callable[[Endpoint], Endpoint]:
        return self.add("POST", path, form)

    def put(self, path: str, form: Form = NOTHING) -> Callable[[Endpoint], Endpoint]:
        return self.add("PUT", path, form)

    def delete(self, path: str, form: Form = NOTHING) -> Callable[[Endpoint], Endpoint]:
        return self.add("DELETE", path, form)

    def get_or_post(self, path: str, form: Form = NOTHING) -> Callable[[Endpoint], Endpoint]:
        """Both methods, as two routes so that each has its own OpenAPI operation id."""

        def register(endpoint: Endpoint) -> Endpoint:
            return self.get(path, form)(self.post(path, form)(endpoint))

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
                    response = render(error)
                    response.headers.update(error.headers or {})  # Retry-After of a 503
                    return response
                except Exception:
                    log.exception("unexpected failure in %s", request.url.path)
                    return render(None)

            return handle

    return EnvelopedRoute
