"""Route registration every dialect shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter

Endpoint = TypeVar("Endpoint", bound=Callable[..., dict])


def get_or_post(router: APIRouter, path: str) -> Callable[[Endpoint], Endpoint]:
    """Both methods, as two routes so that each has its own OpenAPI operation id."""

    def register(endpoint: Endpoint) -> Endpoint:
        return router.get(path)(router.post(path)(endpoint))

    return register
