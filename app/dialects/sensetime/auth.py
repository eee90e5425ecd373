"""SenseTime authentication: `api_id` and `api_secret`, sent as they are, checked against a hash.

Credentials in the query string (what the seed recommends, and most clients do) are checked
before the body is read, so an unauthenticated caller cannot make the server hold its upload.
Bodies that must be read to find the credentials are read under a bound per worker, shared
fairly between client addresses; every body has a read deadline (FACESRV_BODY_TIMEOUT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.deps import admit, unauthenticated_body
from app.api.params import Params
from app.api.routing import Operations, error_response
from app.config import get_settings
from app.db.models import Account
from app.domain import Dialect
from app.errors import ApiError
from app.services import credentials


@dataclass(frozen=True)
class Caller:
    """Who is calling and with what: what every SenseTime route needs."""

    account: Account
    params: Params


def check_credentials(request: Request, api_id: str | None, api_secret: str | None) -> Account:
    if not api_id or not api_secret:
        raise ApiError(401, "UNAUTHORIZED", "missing api_id or api_secret")

    def verify(db: Session) -> Account | None:
        found = credentials.opened_by(db, Dialect.SENSETIME, api_id)
        if found is None or not credentials.secret_matches(found[0], api_secret):
            return None
        return found[1]

    return admit(request, api_id, verify, refused="invalid api_id or api_secret")


async def authenticate(request: Request) -> Caller:
    """Authenticate from the query string when the credentials are there, else from the body."""
    timeout_s = get_settings().body_timeout_s
    params = Params.from_query(request)
    api_id, api_secret = params.credentials()
    if api_id and api_secret:
        account = await run_in_threadpool(check_credentials, request, api_id, api_secret)
        return Caller(account=account, params=await params.with_body(request, timeout_s))
    params = params.with_read_body(request, await unauthenticated_body(request))
    api_id, api_secret = params.credentials()
    account = await run_in_threadpool(check_credentials, request, api_id, api_secret)
    return Caller(account=account, params=params)


CallerDep = Annotated[Caller, Depends(authenticate)]

# How the OpenAPI spec describes this authentication (Swagger UI's "Authorize" fills them in).
SECURITY_SCHEMES = {
    "api_id": {
        "type": "apiKey",
        "in": "query",
        "name": "api_id",
        "description": "SenseTime v1 API account (`facesrv account create` prints it); "
        "the query string, or any body encoding, carries it",
    },
    "api_secret": {
        "type": "apiKey",
        "in": "query",
        "name": "api_secret",
        "description": "the account's secret, sent as it is (redacted from every log)",
    },
}


def _error(description: str, *statuses: str) -> dict:
    example = {"status": statuses[0], "reason": "what was wrong", "request_id": "…"}
    return error_response(
        f"{description}: `status` is {', '.join(statuses)}",
        example,
    )


ERROR_RESPONSES: dict[int | str, dict] = {
    400: _error(
        "a wrong argument or image",
        "INVALID_ARGUMENT",
        "INVALID_IMAGE",
        "INVALID_FACE",
        "the other codes of the seed's error table",
    ),
    401: _error("no, wrong or expired credentials", "UNAUTHORIZED", "KEY_EXPIRED"),
    403: _error("over the rate limit or not allowed", "RATE_LIMIT_EXCEEDED", "NO_PERMISSION"),
    404: _error("no such API", "NOT_FOUND"),
    408: _error("the body did not arrive in time", "REQUEST_TIMEOUT"),
    413: _error("the body or image is too large", "REQUEST_ENTITY_TOO_LARGE"),
}


def operations(router: APIRouter) -> Operations:
    return Operations(router, "sensetime", [{"api_id": [], "api_secret": []}], ERROR_RESPONSES)
