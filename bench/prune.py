"""Pruning the index change log of one busy account: how long the account lock is held.

Setup (not product): a fresh SQLite store, one account, N log rows spread over 100 facesets, the
first OLD of them dated a month back. Then the product's own pass
(`app.services.upkeep.prune_account_log`) removes the old rows; every batch is its own write
transaction under the account lock, and requests of the account (on SQLite, of every account)
wait for the lock while it is held. Printed: rows deleted, total time, transactions, and the
longest of them. Usage: .venv/bin/python bench/prune.py [--n 1000000] [--old 10000 300000]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from host import cpu_model, load_average

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

COLLECTIONS = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--old", type=int, nargs="+", default=[10_000, 300_000])
    args = parser.parse_args()
    print(f"machine: {platform.platform()} | {cpu_model()} | {os.cpu_count()} cores")
    for old in args.old:
        work = Path(tempfile.mkdtemp(prefix="facesrv-bench-prune-"))
        try:
            run(f"sqlite:///{work / 'facesrv.db'}", work, args.n, old)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def run(database_url: str, work: Path, n: int, old: int) -> None:
    os.environ.update({"FACESRV_DATABASE_URL": database_url, "FACESRV_DATA_DIR": str(work)})
    from sqlalchemy import insert, text

    from app.config import get_settings
    from app.db.migrate import upgrade
    from app.db.models import IndexChange
    from app.db.session import session_scope
    from app.services import upkeep
    from app.services.accounts import create_account, parse_quota
    from app.services.upkeep import prune_account_log

    get_settings.cache_clear()
    upgrade(database_url)
    with session_scope() as db:
        quota = parse_quota(get_settings().default_quota)
        account, _ = create_account(db, name="bench", rate_limit="1000q/1s", quota=quota)
        account_id = account.id
    month_ago, now = datetime.now(UTC) - timedelta(days=30), datetime.now(UTC)
    for start in range(0, n, 100_000):
        rows = [
            {
                "account_id": account_id,
                "collection": "faceset",
                "collection_id": i % COLLECTIONS,
                "face_id": i,
                "op": "add",
                "created_at": month_ago if i < old else now,
            }
            for i in range(start, min(n, start + 100_000))
        ]
        with session_scope() as db:
            db.execute(insert(IndexChange), rows)
    with session_scope() as db:
        db.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))

    held: list[float] = []
    account_write = upkeep.account_write

    @contextmanager
    def timed_write(account: int) -> Iterator[object]:  # the pruning transaction, commit included
        started = time.perf_counter()
        with account_write(account) as db:
            yield db
        held.append(time.perf_counter() - started)

    upkeep.account_write = timed_write  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        deleted = prune_account_log(account_id, now - timedelta(days=7))
        total = time.perf_counter() - started
    finally:
        upkeep.account_write = account_write  # type: ignore[assignment]
    print(
        f"log of {n:,} rows, {old:,} old: deleted {deleted:,} in {total:.2f} s, "
        f"{len(held)} transactions, longest {max(held) * 1000:.1f} ms under the lock "
        f"(commit included; load avg {load_average()})"
    )


if __name__ == "__main__":
    main()
