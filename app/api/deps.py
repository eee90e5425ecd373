"""Dependencies every endpoint shares: the authenticated caller and its parsed parameters.

Order matters and follows the seed: authenticate (401), count the call against the rate limit
(403 RATE_LIMIT_EXCEEDED, failed calls included), then check the endpoint permission (403
NO_PERMISSION). The rate-limit headers are left on the request state for the middleware, so they
reach every response, errors included.

Credentials in the query string (what the seed recommends, and most clients do) are checked
before the body is read, so an unauthenticated caller cannot make the server hold its upload.
Bodies that must be read to find the credentials are read under a bound per worker, shared
fairly between client addresses; every body has a read deadline (FACESRV_BODY_TIMEOUT).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from app.api.params import Params
from app.api.pools import get_pools
from app.config import get_settings
from app.db.models import Account, as_utc
from app.db.session import session_scope
from app.domain import Dialect
from app.errors import ApiError
from app.services import credentials
from app.services.accounts import RateLimit
from app.services.ratelimit import (
    DatabaseLimiter,
    Limiter,
    RedisLimiter,
    failure_keys,
    seconds_left,
)


@lru_cache(maxsize=1)
def get_limiter() -> Limiter:
    redis_url = get_settings().redis_url
    return RedisLimiter(redis_url) if redis_url else DatabaseLimiter()


@dataclass(frozen=True)
class Caller:
    """Who is calling and with what: what every router needs."""

    account: Account
    params: Params


def _client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def check_credentials(request: Request, api_id: str | None, api_secret: str | None) -> Account:
    """The account these credentials open, counted against its rate limit and permissions.

    Failed attempts are counted per client address and api_id (app.services.ratelimit); while
    either is over its limit every attempt is refused before the secret is compared.
    """
    if not api_id or not api_secret:
        raise ApiError(401, "UNAUTHORIZED", "missing api_id or api_secret")
    limiter = get_limiter()
    failure_limit = RateLimit.parse(get_settings().auth_failure_limit)
    keys = failure_keys(_client_address(request), api_id)
    with session_scope() as db:
        if limiter.failures(db, keys, failure_limit) >= failure_limit.calls:
            retry_after = seconds_left(failure_limit, time.time())
            request.state.rate_headers = {"Retry-After": str(retry_after)}
            reason = "too many failed authentications from this address or for this api_id"
            raise ApiError(403, "RATE_LIMIT_EXCEEDED", reason)
        credential = credentials.find(db, Dialect.SENSETIME, api_id)
        account = db.get(Account, credential.account_id) if credential else None
        accepted = (
            account is not None
            and credentials.secret_matches(credential, api_secret)
            and not account.disabled
        )
        if not accepted:
            limiter.record_failure(db, keys, failure_limit)
    if account is None or not accepted:
        raise ApiError(401, "UNAUTHORIZED", "invalid api_id or api_secret")
    if account.expires_at is not None:
        expires_at = as_utc(account.expires_at)
        if expires_at <= datetime.now(UTC):
            raise ApiError(401, "KEY_EXPIRED", f"account expired at {expires_at.isoformat()}")
    with session_scope() as db:
        state = limiter.hit(db, account, RateLimit.parse(account.rate_limit))
    request.state.rate_headers = state.headers()
    if state.exceeded:
        request.state.rate_headers["Retry-After"] = str(state.reset)
        raise ApiError(403, "RATE_LIMIT_EXCEEDED")
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    if account.allowed_endpoints is not None and path not in account.allowed_endpoints:
        raise ApiError(403, "NO_PERMISSION", f"this account may not call {path}")
    return account


async def authenticate(request: Request) -> Caller:
    """Authenticate from the query string when the credentials are there, else from the body."""
    timeout_s = get_settings().body_timeout_s
    params = Params.from_query(request)
    api_id, api_secret = params.credentials()
    if api_id and api_secret:
        account = await run_in_threadpool(check_credentials, request, api_id, api_secret)
        return Caller(account=account, params=await params.with_body(request, timeout_s))
    reads = get_pools().unauthenticated_reads
    try:
        async with reads.held(_client_address(request), wait_s=timeout_s):
            params = await params.with_body(request, timeout_s)
    except TimeoutError:
        raise ApiError(408, "REQUEST_TIMEOUT", "server busy reading other requests") from None
    api_id, api_secret = params.credentials()
    account = await run_in_threadpool(check_credentials, request, api_id, api_secret)
    return Caller(account=account, params=params)


CallerDep = Annotated[Caller, Depends(authenticate)]
