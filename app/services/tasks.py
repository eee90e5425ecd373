"""Opt-in asynchronous calls, kept in the store so that nothing is lost across restarts.

A task runs in the worker process that accepted it. That worker signs its tasks with its
identity and refreshes their heartbeat; a sweep (at start-up and periodically, in every worker)
marks failed the tasks whose worker is gone: a dead process on this host, or a heartbeat older
than `STALE_AFTER` from anywhere. So a restart turns the tasks it interrupted into `failed`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.db.models import Task, as_utc
from app.db.session import session_scope
from app.domain import ACTIVE_TASK_STATUSES, TaskStatus
from app.errors import ApiError

log = logging.getLogger("facesrv.tasks")

TASK_LIFETIME = timedelta(hours=24)
STALE_AFTER = timedelta(seconds=60)
HOST = socket.gethostname()[:40]

_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="facesrv-task")


def worker_id() -> str:
    return f"{HOST}:{os.getpid()}"


def submit(account_id: int, endpoint: str, args: dict, work: Callable[[], dict]) -> Task:
    """Record the task, then run `work` (which returns the synchronous body) in the background."""
    now = datetime.now(UTC)
    with session_scope() as db:
        task = Task(
            account_id=account_id,
            endpoint=endpoint,
            params=args,
            status=TaskStatus.PENDING,
            owner=worker_id(),
            heartbeat_at=now,
            expires_at=now + TASK_LIFETIME,
        )
        db.add(task)
    _executor.submit(_run, task.id, work)
    return task


def _set(task_id: int, **values: object) -> None:
    with session_scope() as db:
        db.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(updated_at=datetime.now(UTC), heartbeat_at=datetime.now(UTC), **values)
        )


def _run(task_id: int, work: Callable[[], dict]) -> None:
    _set(task_id, status=TaskStatus.PROCESSING)
    try:
        result, status = work(), TaskStatus.DONE
    except ApiError as error:
        result, status = error.body(), TaskStatus.FAILED
    except Exception:
        log.exception("task %s failed", task_id)
        result, status = {"status": "INTERNAL_ERROR"}, TaskStatus.FAILED
    _set(task_id, status=status, result=result)


def find(db: Session, account_id: int, public_id: str | None) -> Task | None:
    if not public_id:
        return None
    return db.scalar(
        select(Task).where(
            Task.public_id == public_id.strip().lower(),
            Task.account_id == account_id,
            Task.expires_at > datetime.now(UTC),
        )
    )


def heartbeat(db: Session) -> None:
    db.execute(
        update(Task)
        .where(Task.owner == worker_id(), Task.status.in_(ACTIVE_TASK_STATUSES))
        .values(heartbeat_at=datetime.now(UTC))
    )


def _owner_is_gone(owner: str | None, heartbeat_at: datetime | None, now: datetime) -> bool:
    if heartbeat_at is None or as_utc(heartbeat_at) < now - STALE_AFTER:
        return True
    host, _, pid = (owner or "").rpartition(":")
    if host != HOST or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sweep(db: Session) -> int:
    """Mark failed the active tasks whose worker is gone; returns how many."""
    now = datetime.now(UTC)
    rows = db.execute(
        select(Task.id, Task.owner, Task.heartbeat_at).where(Task.status.in_(ACTIVE_TASK_STATUSES))
    )
    orphans = [task_id for task_id, owner, beat in rows if _owner_is_gone(owner, beat, now)]
    if orphans:
        db.execute(
            update(Task)
            .where(Task.id.in_(orphans), Task.status.in_(ACTIVE_TASK_STATUSES))
            .values(
                status=TaskStatus.FAILED,
                result={"status": "INTERNAL_ERROR", "reason": "interrupted by a restart"},
                updated_at=now,
            )
        )
    return len(orphans)


def purge(db: Session) -> None:
    db.execute(delete(Task).where(Task.expires_at < datetime.now(UTC)))
