"""Background upkeep in every worker: task heartbeats and sweeps, expiry purges, log pruning.

Each job is idempotent, so several workers running them at once only repeat harmless deletes.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, exists, select

from app.config import get_settings
from app.db.models import Face, FacesetFace, Image
from app.db.session import session_scope
from app.services import changes, tasks
from app.services.ratelimit import purge_old_windows

log = logging.getLogger("facesrv.upkeep")

HEARTBEAT_EVERY_S = 5.0
PURGE_EVERY_S = 300.0


def purge_expired() -> None:
    """Drop faces past their 5 days that no person or faceset holds, then their bare images."""
    now = datetime.now(UTC)
    with session_scope() as db:
        db.execute(
            delete(Face).where(
                Face.expires_at < now,
                Face.person_id.is_(None),
                ~exists(select(FacesetFace.face_id).where(FacesetFace.face_id == Face.id)),
            )
        )
        db.execute(
            delete(Image).where(
                Image.expires_at < now,
                ~exists(select(Face.id).where(Face.image_id == Image.id)),
            )
        )
        tasks.purge(db)
        purge_old_windows(db)


def prune_change_log() -> None:
    """Drop index change-log rows older than FACESRV_INDEX_LOG_DAYS, one account at a time."""
    older_than = datetime.now(UTC) - timedelta(days=get_settings().index_log_days)
    with session_scope() as db:
        accounts = changes.accounts_with_old_changes(db, older_than)
    for account_id in accounts:
        with session_scope() as db:
            changes.prune(db, account_id, older_than)


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
        last_purge = 0.0
        while not self._stop.wait(HEARTBEAT_EVERY_S):
            try:
                with session_scope() as db:
                    tasks.heartbeat(db)
                    tasks.sweep(db)
                if time.monotonic() - last_purge > PURGE_EVERY_S:
                    purge_expired()
                    prune_change_log()
                    last_purge = time.monotonic()
            except Exception:
                log.exception("upkeep failed; retrying")
