"""Per-account call counting and failed-authentication throttling, shared by every worker.

The counts live where all workers see it: rows per (account or key, window) in the database, or
Redis keys when FACESRV_REDIS_URL is set. Failed calls count too, as the seed says.

Failed authentications are counted per client address and per api_id sent, in fixed windows
(FACESRV_AUTH_FAILURE_LIMIT, default 30 per 60 s each). Once either count is over, that address
or api_id is refused before its secret is even looked at, right or wrong, until the window ends:
guessing stops, and unknown and known api_ids are indistinguishable.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from sqlalchemy import Insert, Table, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db.models import Account, AuthFailureWindow, RateWindow, SignatureUse
from app.services.accounts import RateLimit


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    reset: int  # seconds until the window restarts
    exceeded: bool

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


def _state(limit: RateLimit, calls: int, now: float) -> RateState:
    reset = seconds_left(limit, now)
    return RateState(limit.calls, max(0, limit.calls - calls), reset, calls > limit.calls)


class Limiter(Protocol):
    def hit(self, session: Session, account: Account, limit: RateLimit) -> RateState: ...

    def failures(self, session: Session, keys: Sequence[str], limit: RateLimit) -> int:
        """The largest failed-authentication count of `keys` in the current window."""
        ...

    def record_failure(self, session: Session, keys: Sequence[str], limit: RateLimit) -> None: ...

    def first_use(self, session: Session, signature: bytes, expires_at: int) -> bool:
        """Whether this is the first time `signature` is seen; it is remembered until
        `expires_at` (epoch seconds), when it goes stale anyway."""
        ...


def failure_keys(address: str, api_id: str | None) -> list[str]:
    """The throttling keys of one attempt; the api_id hashed, so any length or byte fits."""
    keys = [f"address:{address}"]
    if api_id:
        keys.append(f"api_id:{hashlib.sha256(api_id.encode('utf-8', 'replace')).hexdigest()}")
    return keys


def window_of(limit: RateLimit, now: float) -> int:
    return int(now // limit.seconds) * limit.seconds


def seconds_left(limit: RateLimit, now: float) -> int:
    return max(1, math.ceil(window_of(limit, now) + limit.seconds - now))


def _increment(dialect: str, table: Table, key: str, count: str) -> Insert:
    """`INSERT (key, window_start, count=1) ON CONFLICT DO UPDATE count = count + 1`.

    On the table, not the ORM class: an ORM insert goes through the bulk-persistence machinery,
    which made this one-row upsert cost 0.74 ms instead of 0.2 ms.
    """
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table).values(
        {key: bindparam(key), "window_start": bindparam("window_start"), count: 1}
    )
    return statement.on_conflict_do_update(
        index_elements=[table.c[key], table.c.window_start],
        set_={count: table.c[count] + 1},
    )


@cache
def _count_call(dialect: str) -> Insert:
    """The upsert that counts a call, built once per dialect: it runs on every request."""
    windows = RateWindow.__table__
    return _increment(dialect, windows, "account_id", "calls").returning(windows.c.calls)


@cache
def _count_failure(dialect: str) -> Insert:
    return _increment(dialect, AuthFailureWindow.__table__, "key", "failures")


@cache
def _remember_signature(dialect: str) -> Insert:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    uses = SignatureUse.__table__
    statement = insert(uses).values(key=bindparam("key"), expires_at=bindparam("expires_at"))
    return statement.on_conflict_do_nothing(index_elements=[uses.c.key]).returning(uses.c.key)


def _signature_key(signature: bytes) -> str:
    return hashlib.sha256(signature).hexdigest()


class DatabaseLimiter:
    """Counts in the `rate_windows` table with one atomic upsert per call."""

    def hit(self, session: Session, account: Account, limit: RateLimit) -> RateState:
        now = time.time()
        statement = _count_call(session.get_bind().dialect.name)
        parameters = {"account_id": account.id, "window_start": window_of(limit, now)}
        calls = session.execute(statement, parameters).scalar_one()
        return _state(limit, calls, now)

    def failures(self, session: Session, keys: Sequence[str], limit: RateLimit) -> int:
        windows = AuthFailureWindow.__table__
        found = session.scalar(
            select(func.max(windows.c.failures)).where(
                windows.c.key.in_(keys), windows.c.window_start == window_of(limit, time.time())
            )
        )
        return found or 0

    def record_failure(self, session: Session, keys: Sequence[str], limit: RateLimit) -> None:
        statement = _count_failure(session.get_bind().dialect.name)
        window_start = window_of(limit, time.time())
        session.execute(statement, [{"key": key, "window_start": window_start} for key in keys])

    def first_use(self, session: Session, signature: bytes, expires_at: int) -> bool:
        statement = _remember_signature(session.get_bind().dialect.name)
        parameters = {"key": _signature_key(signature), "expires_at": expires_at}
        return session.execute(statement, parameters).first() is not None


class RedisLimiter:
    """Counts with INCR on a key per window that expires with it."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)

    def hit(self, session: Session, account: Account, limit: RateLimit) -> RateState:
        now = time.time()
        # The random api_id, not the row id: several stores may share one Redis.
        key = f"facesrv:rate:{account.api_id}:{limit.seconds}:{window_of(limit, now)}"
        pipe = self.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, limit.seconds + 1)
        calls, _ = pipe.execute()
        return _state(limit, int(calls), now)

    def _failure_keys(self, keys: Sequence[str], limit: RateLimit) -> list[str]:
        window_start = window_of(limit, time.time())
        return [f"facesrv:authfail:{key}:{limit.seconds}:{window_start}" for key in keys]

    def failures(self, session: Session, keys: Sequence[str], limit: RateLimit) -> int:
        counts = self.client.mget(self._failure_keys(keys, limit))
        return max((int(count) for count in counts if count is not None), default=0)

    def record_failure(self, session: Session, keys: Sequence[str], limit: RateLimit) -> None:
        pipe = self.client.pipeline()
        for key in self._failure_keys(keys, limit):
            pipe.incr(key)
            pipe.expire(key, limit.seconds + 1)
        pipe.execute()

    def first_use(self, session: Session, signature: bytes, expires_at: int) -> bool:
        ttl = max(1, expires_at - int(time.time()))
        key = f"facesrv:signature:{_signature_key(signature)}"
        return bool(self.client.set(key, 1, nx=True, ex=ttl))


def purge_stale_signatures(session: Session) -> int:
    uses = SignatureUse.__table__
    return session.execute(delete(uses).where(uses.c.expires_at < int(time.time()))).rowcount


def purge_old_failure_windows(session: Session, older_than_s: int = 86_400) -> int:
    windows = AuthFailureWindow.__table__
    cutoff = int(time.time()) - older_than_s
    return session.execute(delete(windows).where(windows.c.window_start < cutoff)).rowcount


def purge_old_windows(session: Session, account_id: int, older_than_s: int = 86_400) -> int:
    """Delete one account's counts older than `older_than_s`; returns how many went.

    Per account, so that the delete seeks the (account, window) key instead of reading every
    account's windows (86,400 a day each at 1 s windows) under the write lock.
    """
    windows = RateWindow.__table__
    return session.execute(
        delete(windows).where(
            windows.c.account_id == account_id,
            windows.c.window_start < int(time.time()) - older_than_s,
        )
    ).rowcount
