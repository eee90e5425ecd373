"""Admission every dialect shares: failed-auth throttling, expiry, rate limit, permission.

Order matters and follows the SenseTime seed, which the other dialects keep: authenticate (401),
count the call against the rate limit (403 RATE_LIMIT_EXCEEDED, failed calls included), then
check the endpoint permission (403 NO_PERMISSION). The rate-limit headers are left on the
request state for the middleware, so they reach every response, errors included. How a caller
proves who it is (a secret, a signature) is the dialect's own `auth.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

from fastapi import Request
from sqlalchemy.orm import Session

from app import metrics
from app.api.params import read_body
from app.api.pools import get_pools
from app.config import get_settings
from app.db.models import Account, as_utc
from app.db.session import session_scope
from app.errors import ApiError
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


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


class Refused(Exception):  # noqa: N818 - a refusal, not a fault
    """Raised by a `verify` callback: the credential does not open, and this is what to say."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.reason or error.status)
        self.error = error


async def unauthenticated_body(request: Request) -> bytes:
    """The body of a request not yet authenticated (its credentials or signature need it), read
    under the per-worker bound on such reads, shared fairly between client addresses."""
    timeout_s = get_settings().body_timeout_s
    try:
        async with get_pools().unauthenticated_reads.held(
            client_address(request), wait_s=timeout_s
        ):
            return await read_body(request, timeout_s)
    except TimeoutError:
        raise ApiError(408, "REQUEST_TIMEOUT", "server busy reading other requests") from None


def admit(
    request: Request,
    key_id: str,
    verify: Callable[[Session], Account | None],
    refused: str = "invalid credentials",
) -> Account:
    """What every dialect's authentication shares, around its own check `verify`.

    Failed attempts are counted per client address and key id (app.services.ratelimit); while
    either is over its limit every attempt is refused before `verify` runs. `verify` returns the
    account its credential opens, or None (`refused` is then the 401 reason, in the words of the
    dialect's own credentials), or raises `Refused` with the dialect's own error; either counts
    as a failure. Then come expiry, the rate limit (failed calls counted too) and the endpoint
    permission.
    """
    limiter = get_limiter()
    failure_limit = RateLimit.parse(get_settings().auth_failure_limit)
    keys = failure_keys(client_address(request), key_id)
    with session_scope() as db:
        if limiter.failures(db, keys, failure_limit) >= failure_limit.calls:
            retry_after = seconds_left(failure_limit, time.time())
            request.state.rate_headers = {"Retry-After": str(retry_after)}
            metrics.RATE_LIMIT_REFUSALS.labels("auth").inc()
            reason = "too many failed authentications from this address or for this key"
            raise ApiError(403, "RATE_LIMIT_EXCEEDED", reason)
        failure = ApiError(401, "UNAUTHORIZED", refused)
        try:
            account = verify(db)
        except Refused as refusal:
            account, failure = None, refusal.error
        if account is not None and account.disabled:
            account = None
        if account is None:
            limiter.record_failure(db, keys, failure_limit)
    if account is None:
        raise failure
    if account.expires_at is not None:
        expires_at = as_utc(account.expires_at)
        if expires_at <= datetime.now(UTC):
            raise ApiError(401, "KEY_EXPIRED", f"account expired at {expires_at.isoformat()}")
    with session_scope() as db:
        state = limiter.hit(db, account, RateLimit.parse(account.rate_limit))
    request.state.rate_headers = state.headers()
    request.state.api_id = account.api_id  # for the request's log line
    if state.exceeded:
        request.state.rate_headers["Retry-After"] = str(state.reset)
        metrics.RATE_LIMIT_REFUSALS.labels("account").inc()
        raise ApiError(403, "RATE_LIMIT_EXCEEDED")
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    if account.allowed_endpoints is not None and path not in account.allowed_endpoints:
        raise ApiError(403, "NO_PERMISSION", f"this account may not call {path}")
    return account
