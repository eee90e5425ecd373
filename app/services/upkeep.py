"""Background upkeep in every worker: task heartbeats and sweeps, expiry purges, log pruning,
the vector backend's copies of deleted collections.

Each job is idempotent, so several workers running them at once only repeat harmless deletes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Row, Select, delete, exists, or_, select
from sqlalchemy.orm import Session

from app import metrics
from app.config import get_settings
from app.db.models import Account, Face, FacesetFace, Image
from app.db.session import session_scope
from app.index import changelog
from app.index.registry import get_registry
from app.services import tasks
from app.services.accounts import account_write
from app.services.ratelimit import (
    purge_old_failure_windows,
    purge_old_windows,
    purge_stale_signatures,
)

log = logging.getLogger("facesrv.upkeep")

HEARTBEAT_EVERY_S = 5.0
PURGE_EVERY_S = 300.0
# A full purge pass a day; the passes in between look only at what expired since the last one.
FULL_PURGE_EVERY_S = 86_400.0
PURGE_BATCH = 1000
PRUNE_BATCH = 1000


def purge_expired(since: datetime | None = None, batch: int = PURGE_BATCH) -> None:
    """Drop faces past their 5 days that no person or faceset holds, then their bare images,
    then tasks past their day and rate counts older than a day.

    `since` limits the pass to rows that expired after it, so that frequent passes visit each
    row once, when its time runs out; a full pass (None) also catches faces let go by their
    person or faceset after their expiry.
    """
    now = datetime.now(UTC)
    held = or_(
        Face.person_id.is_not(None),
        exists(select(FacesetFace.face_id).where(FacesetFace.face_id == Face.id)),
    )
    _purge(Face, ~held, since, now, batch)
    _purge(Image, ~exists(select(Face.id).where(Face.image_id == Image.id)), since, now, batch)
    with session_scope() as db:
        tasks.purge(db)
    with session_scope() as db:
        purge_old_failure_windows(db)
        purge_stale_signatures(db)
    for account_id in _account_ids():
        with session_scope() as db:
            purge_old_windows(db, account_id)


def _account_ids() -> list[int]:
    with session_scope() as db:
        return list(db.scalars(select(Account.id)))


def _purge(
    model: type[Face] | type[Image],
    purgeable: ColumnElement[bool],
    since: datetime | None,
    now: datetime,
    batch: int,
) -> None:
    """Delete the expired rows that are `purgeable`, a batch of candidates per transaction.

    Candidates come from the expiry index alone. A single DELETE let SQLite plan it through the
    person index instead (person_id IS NULL looks selective without statistics) and read every
    face, a million of them in seconds, holding the write lock every request's rate count needs.
    """
    for ids in _expired(model, since, now, batch):
        with session_scope() as db:
            db.execute(delete(model).where(model.id.in_(ids), purgeable))


def _expired(
    model: type[Face] | type[Image], since: datetime | None, now: datetime, batch: int
) -> Iterator[list[int]]:
    """Ids of rows expired before `now` (and not before `since`), in expiry order, by batches.

    The keyset (expiry, id) is read with two index seeks, the rest of the current expiry time
    and then the times after it: SQLite seeks a row-value comparison on its first column only,
    and faces detected together share their expiry time, so each batch rescanned them all.
    """
    table = model.__table__
    expiry, row_id = table.c.expires_at, table.c.id
    later = select(row_id, expiry).where(expiry < now).order_by(expiry, row_id)
    if since is not None:
        later = later.where(expiry >= since)
    same_time = select(row_id, expiry).order_by(row_id)

    def read(query: Select) -> list[Row]:
        with session_scope() as db:
            return list(db.execute(query).all())

    rows = read(later.limit(batch))
    while rows:
        yield [row.id for row in rows]
        last = rows[-1]
        rows = read(same_time.where(expiry == last.expires_at, row_id > last.id).limit(batch))
        if len(rows) < batch:
            rows += read(later.where(expiry > last.expires_at).limit(batch - len(rows)))


def prune_change_log(batch: int = PRUNE_BATCH) -> int:
    """Drop index change-log rows older than FACESRV_INDEX_LOG_DAYS; returns the rows deleted."""
    older_than = datetime.now(UTC) - timedelta(days=get_settings().index_log_days)
    return sum(prune_account_log(account_id, older_than, batch) for account_id in _account_ids())


def prune_account_log(account_id: int, older_than: datetime, batch: int = PRUNE_BATCH) -> int:
    """Prune the old start of one account's log, a batch per transaction.

    One statement over the whole log held the write lock while it read every row: 0.7 s for a
    million rows, a stall every request of the account (on SQLite, of every account) waited for.
    """
    deleted, after = 0, 0
    while True:
        with session_scope() as db:
            old = changelog.old_rows(db, account_id, older_than, after, batch)
        if old.ends:  # a short write of its own, under the account lock like every writer
            with account_write(account_id) as db:
                deleted += changelog.prune_rows(db, account_id, old, after)
        if not old.more:
            return deleted
        after = old.through


def publish_index_stats(db: Session) -> None:
    """This worker's index gauges, every heartbeat (a scrape may reach another worker)."""
    stats = get_registry().stats(db)
    metrics.INDEX_COLLECTIONS.set(stats.collections)
    metrics.INDEX_VECTORS.set(stats.vectors)
    metrics.INDEX_MEMORY.set(stats.memory_bytes)
    metrics.CHANGE_LOG_LAG.set(stats.change_log_lag)


class Upkeep:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="facesrv-upkeep", daemon=True)

    def start(self) -> None:
        with session_scope() as db:
            swept = tasks.sweep(db)
        if swept:
            log.warning("marked %d interrupted task(s) failed", swept)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        last_purge = next_full_purge = -PURGE_EVERY_S
        purged_until: datetime | None = None
        while not self._stop.wait(HEARTBEAT_EVERY_S):
            job = "heartbeat"
            try:
                with session_scope() as db:
                    tasks.heartbeat(db)
                    tasks.sweep(db)
                    publish_index_stats(db)
                metrics.UPKEEP_PASSES.labels(job, "ok").inc()
                if time.monotonic() - last_purge > PURGE_EVERY_S:
                    job = "purge"
                    started, full = datetime.now(UTC), time.monotonic() >= next_full_purge
                    purge_expired(since=None if full else purged_until)
                    prune_change_log()
                    with session_scope() as db:
                        get_registry().sweep(db)
                    purged_until, last_purge = started, time.monotonic()
                    if full:
                        next_full_purge = last_purge + FULL_PURGE_EVERY_S
                    metrics.UPKEEP_PASSES.labels(job, "ok").inc()
            except Exception:
                metrics.UPKEEP_PASSES.labels(job, "failed").inc()
                log.exception("upkeep failed; retrying")
