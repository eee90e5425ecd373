"""Dependencies every endpoint shares: the parsed parameters and the authenticated caller.

Order matters and follows the seed: authenticate (401), count the call against the rate limit
(403 RATE_LIMIT_EXCEEDED, failed calls included), then check the endpoint permission (403
NO_PERMISSION). The rate-limit headers are left on the request state for the middleware, so they
reach every response, errors included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request

from app.api.params import Params
from app.config import get_settings
from app.db.models import Account, as_utc
from app.db.session import session_scope
from app.errors import ApiError
from app.services.accounts import RateLimit, find_account, secret_matches
from app.services.ratelimit import DatabaseLimiter, Limiter, RedisLimiter


async def get_params(request: Request) -> Params:
    return await Params.from_request(request)


@lru_cache(maxsize=1)
def get_limiter() -> Limiter:
    redis_url = get_settings().redis_url
    return RedisLimiter(redis_url) if redis_url else DatabaseLimiter()


@dataclass(frozen=True)
class Caller:
    """Who is calling and with what: what every router needs."""

    account: Account
    params: Params


def authenticate(request: Request, params: Annotated[Params, Depends(get_params)]) -> Caller:
    api_id, api_secret = params.credentials()
    if not api_id or not api_secret:
        raise ApiError(401, "UNAUTHORIZED", "missing api_id or api_secret")
    with session_scope() as db:
        account = find_account(db, api_id)
        if account is None or not secret_matches(account, api_secret) or account.disabled:
            raise ApiError(401, "UNAUTHORIZED", "invalid api_id or api_secret")
        if account.expires_at is not None:
            expires_at = as_utc(account.expires_at)
            if expires_at <= datetime.now(UTC):
                raise ApiError(401, "KEY_EXPIRED", f"account expired at {expires_at.isoformat()}")
        state = get_limiter().hit(db, account, RateLimit.parse(account.rate_limit))
    request.state.rate_headers = state.headers()
    if state.exceeded:
        request.state.rate_headers["Retry-After"] = str(state.reset)
        raise ApiError(403, "RATE_LIMIT_EXCEEDED")
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    if account.allowed_endpoints is not None and path not in account.allowed_endpoints:
        raise ApiError(403, "NO_PERMISSION", f"this account may not call {path}")
    return Caller(account=account, params=params)


CallerDep = Annotated[Caller, Depends(authenticate)]
