"""Per-account call counting in fixed windows, shared by every worker process.

The count lives where all workers see it: a row per (account, window) in the database, or a
Redis key when FACESRV_REDIS_URL is set. Failed calls count too, as the seed says.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from sqlalchemy import Insert, bindparam, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db.models import Account, RateWindow
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


def _state(limit: RateLimit, calls: int, window_start: int, now: float) -> RateState:
    reset = max(1, math.ceil(window_start + limit.seconds - now))
    return RateState(limit.calls, max(0, limit.calls - calls), reset, calls > limit.calls)


class Limiter(Protocol):
    def hit(self, session: Session, account: Account, limit: RateLimit) -> RateState: ...


@cache
def _count_call(dialect: str) -> Insert:
    """The upsert that counts a call, built once per dialect: it runs on every request.

    On the table, not the ORM class: an ORM insert goes through the bulk-persistence machinery,
    which made this one-row upsert cost 0.74 ms instead of 0.2 ms.
    """
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    windows = RateWindow.__table__
    statement = insert(windows).values(
        account_id=bindparam("account_id"), window_start=bindparam("window_start"), calls=1
    )
    return statement.on_conflict_do_update(
        index_elements=[windows.c.account_id, windows.c.window_start],
        set_={"calls": windows.c.calls + 1},
    ).returning(windows.c.calls)


class DatabaseLimiter:
    """Counts in the `rate_windows` table with one atomic upsert per call."""

    def hit(self, session: Session, account: Account, limit: RateLimit) -> RateState:
        now = time.time()
        window_start = int(now // limit.seconds) * limit.seconds
        statement = _count_call(session.get_bind().dialect.name)
        parameters = {"account_id": account.id, "window_start": window_start}
        calls = session.execute(statement, parameters).scalar_one()
        return _state(limit, calls, window_start, now)


class RedisLimiter:
    """Counts with INCR on a key per window that expires with it."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)

    def hit(self, session: Session, account: Account, limit: RateLimit) -> RateState:
        now = time.time()
        window_start = int(now // limit.seconds) * limit.seconds
        # The random api_id, not the row id: several stores may share one Redis.
        key = f"facesrv:rate:{account.api_id}:{limit.seconds}:{window_start}"
        pipe = self.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, limit.seconds + 1)
        calls, _ = pipe.execute()
        return _state(limit, int(calls), window_start, now)


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
