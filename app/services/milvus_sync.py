"""The Milvus backend: one copy of every collection, in Milvus, shared by all workers.

The store stays the only source of truth and Milvus a derived copy fed by the same change log
as the FAISS backend (`app.services.indexes`), so docs/matching.md's guarantees hold the same way:

- Current before every search: a search reads the account's last log seq (one indexed query).
  When this process knows its collection to be current with it, it searches at once; otherwise
  it first *syncs* the account: replays the log rows past each of the account's Milvus
  collections' own position (`facesrv.seq`, kept in Milvus, see `app.index.milvus`) and builds
  from the store the collection searched if Milvus lacks it. Adds read the faces' vectors from
  the store at replay time and are upserts, removes are deletes, so replaying is idempotent.
- Replays never interleave: a sync holds a per-account lock that every process sharing the
  store honours (a PostgreSQL advisory lock; on SQLite, which lives on one host, an fcntl
  lock on a byte of a file beside the database), and reads the log in a fresh transaction
  taken under it. Two workers replaying the same rows concurrently could otherwise apply an
  old `add` after a newer `remove` and bring a removed face back. Writers never take this lock:
  a sync delays only other syncs of the same account.
- A wiped Milvus has no collections, hence no positions: each collection is rebuilt from the
  store at its next search (a search that meets a missing collection syncs and retries). A
  rebuild fills a new generation and only then moves the alias, so no search ever sees half
  of one.
- A `drop` in the log (the faceset or group was deleted) drops its Milvus collection; a
  collection the log can no longer bring up to date (pruned rows) is rebuilt from the store.

The milvus-lite data folder is opened by one process only (it holds a lock on it): with a
local `FACESRV_MILVUS_URI`, `facesrv serve` opens it once and serves it to its workers over
gRPC on loopback (app.cli); a Milvus standalone or cluster (`http://host:19530`) is shared by
any number of processes and hosts.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymilvus import MilvusException
from sqlalchemy import text
from sqlalchemy.orm import Session

from app import metrics
from app.config import Settings
from app.db.session import session_scope
from app.domain import ChangeOp
from app.index.milvus import (
    COLLECTION_NOT_FOUND,
    IndexSpec,
    MilvusCollections,
    account_prefix,
    parse_generation,
)
from app.services.indexes import (
    EMBEDDING_DIM,
    IndexStats,
    Key,
    apply_membership,
    latest_seq,
    members,
    read_changes,
)

log = logging.getLogger("facesrv.index")

# The first key of the two-key PostgreSQL advisory lock: "facesrv Milvus sync" (the second is
# the account id), so no other user of advisory locks on the database collides with it.
_ADVISORY_SPACE = 0x66534D53

# One lock per account for all registries of the process: an fcntl lock excludes other
# processes only, so threads take this first.
_thread_locks: dict[int, threading.Lock] = {}
_thread_locks_guard = threading.Lock()
_lock_files: dict[str, int] = {}  # SQLite database path -> the open lock file (kept open: closing
# any descriptor of a file drops every fcntl lock the process holds on it)


def _thread_lock(account_id: int) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(account_id, threading.Lock())


def _lock_file(database: str) -> int:
    with _thread_locks_guard:
        if database not in _lock_files:
            path = Path(f"{database}.milvus-sync.lock")
            _lock_files[database] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        return _lock_files[database]


@contextmanager
def sync_session(account_id: int) -> Iterator[Session]:
    """A fresh transaction holding the account's sync lock across every process of the store."""
    with _thread_lock(account_id), session_scope() as db:
        url = db.get_bind().url
        if url.get_backend_name() == "postgresql":
            db.execute(
                text("SELECT pg_advisory_xact_lock(:space, :account)"),
                {"space": _ADVISORY_SPACE, "account": account_id},
            )
            yield db
            return
        fd = _lock_file(url.database or "facesrv")
        fcntl.lockf(fd, fcntl.LOCK_EX, 1, account_id)
        try:
            yield db
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, account_id)


@dataclass(frozen=True)
class Known:
    """What this process knows of a collection in Milvus: current with the log up to `seq`
    (a lower bound: another process may have applied more since), holding `count` faces."""

    seq: int
    count: int | None


@dataclass
class MilvusCollection:
    """A synced collection, as `app.services.matching` searches it."""

    registry: MilvusRegistry
    account_id: int
    key: Key
    count: int

    def __len__(self) -> int:
        return self.count

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.registry.search(self.account_id, self.key, queries, k)


class _Generation:
    """One concrete Milvus collection as a replay target (`indexes.Target`)."""

    def __init__(self, milvus: MilvusCollections, name: str) -> None:
        self.milvus, self.name = milvus, name

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.milvus.upsert(self.name, ids, vectors)

    def remove(self, ids: np.ndarray) -> None:
        self.milvus.delete(self.name, ids)


class MilvusRegistry:
    """The Milvus backend of `app.services.indexes.Registry`."""

    def __init__(self, milvus: MilvusCollections, model: str | None) -> None:
        self.milvus = milvus
        self.model = model
        self._known: dict[tuple[int, Key], Known] = {}

    @classmethod
    def from_settings(cls, settings: Settings, model: str | None) -> MilvusRegistry:
        spec = IndexSpec.parse(settings.milvus_index)
        milvus = MilvusCollections(settings.milvus_uri, EMBEDDING_DIM, spec, settings.index_rerank)
        return cls(milvus, model)

    def _base(self, account_id: int, key: Key) -> str:
        """The alias a faceset's or group's collection is searched by."""
        return f"{account_prefix(self.model, account_id)}{key[0]}_{key[1]}"

    def get(
        self, db: Session, account_id: int, collection: str, collection_id: int
    ) -> MilvusCollection:
        key = (collection, collection_id)
        known = self._known.get((account_id, key))
        if known is None or known.count is None or known.seq < latest_seq(db, account_id):
            known = self._sync(account_id, key)
        assert known.count is not None
        return MilvusCollection(self, account_id, key, known.count)

    def search(
        self, account_id: int, key: Key, queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        base = self._base(account_id, key)
        try:
            return self.milvus.search(base, queries, k)
        except MilvusException as error:
            if error.code != COLLECTION_NOT_FOUND:
                raise
        # Gone since this process last synced (a wiped Milvus): rebuilt from the store.
        log.warning("Milvus collection %s is missing: rebuilding it from the store", base)
        self._known.pop((account_id, key), None)
        self._sync(account_id, key)
        return self.milvus.search(base, queries, k)

    def save(self, db: Session, account_id: int, collection: str, collection_id: int) -> None:
        """Training: sync the collection and persist its segments, so the next search (any
        worker, any restart) finds it built and Milvus reopens it without replaying a log."""
        self.get(db, account_id, collection, collection_id)
        state = self.milvus.state(self._base(account_id, (collection, collection_id)))
        if state is not None:
            self.milvus.flush(state[0])

    def rebuild(self, account_id: int, collection: str, collection_id: int) -> int:
        key = (collection, collection_id)
        with sync_session(account_id) as db:
            latest = latest_seq(db, account_id)
            count = self._build(db, account_id, key, latest)
        self._known[(account_id, key)] = Known(latest, count)
        return count

    def stats(self, db: Session) -> IndexStats:
        """What Milvus holds of the collections this process has synced; the worker itself
        holds no vectors (memory 0), which is the point of this backend."""
        known = dict(self._known)
        applied: dict[int, int] = {}
        for (account_id, _), state in known.items():
            applied[account_id] = min(applied.get(account_id, state.seq), state.seq)
        lag = max((latest_seq(db, a) - seq for a, seq in applied.items()), default=0)
        return IndexStats(
            collections=len(known),
            vectors=sum(state.count or 0 for state in known.values()),
            memory_bytes=0,
            change_log_lag=max(lag, 0),
        )

    def _positions(self, account_id: int) -> dict[Key, tuple[str, int]]:
        """The account's complete collections in Milvus: key -> (concrete name, its seq)."""
        prefix = account_prefix(self.model, account_id)
        found: dict[Key, tuple[str, int]] = {}
        for name in self.milvus.names():
            key = parse_generation(prefix, name)
            if key is None or key in found:
                continue
            state = self.milvus.state(self._base(account_id, key))
            if state is not None:
                found[key] = state
        return found

    def _sync(self, account_id: int, wanted: Key) -> Known:
        """Under the account's sync lock: bring its Milvus collections up to the log, and
        build `wanted` from the store if Milvus lacks it."""
        with sync_session(account_id) as db:
            latest = latest_seq(db, account_id)
            positions = self._positions(account_id)
            for key, (name, _) in positions.items():
                if (account_id, key) not in self._known:  # first sight since a restart
                    self.milvus.load(name)
            counts: dict[Key, int] = {}  # collections whose size this sync changed
            outcome = "current"
            if positions:
                after = min(seq for _, seq in positions.values())
                replay = read_changes(
                    db, account_id, after, {key: seq for key, (_, seq) in positions.items()}
                )
                if replay.batches or replay.outdated:
                    outcome = "replayed"
                for key in self._apply(db, account_id, positions, replay.batches):
                    name = positions[key][0]
                    self.milvus.mark(name, max(latest, replay.last))
                    counts[key] = self.milvus.count(name)
                for key in replay.outdated & positions.keys():
                    log.warning("Milvus %s-%d predates the pruned log: rebuilding", *key)
                    counts[key] = self._build(db, account_id, key, latest)
            if wanted not in positions:
                counts[wanted] = self._build(db, account_id, wanted, latest)
                positions[wanted] = (self._base(account_id, wanted), latest)
                outcome = "built"
            for key, (name, _) in positions.items():
                previous = self._known.get((account_id, key))
                count = counts.get(key, previous.count if previous else None)
                if key == wanted and count is None:
                    count = self.milvus.count(name)
                self._known[(account_id, key)] = Known(latest, count)
        metrics.MILVUS_SYNCS.labels(outcome).inc()
        return self._known[(account_id, wanted)]

    def _apply(
        self,
        db: Session,
        account_id: int,
        positions: dict[Key, tuple[str, int]],
        batches: list[tuple[Key, str, list[int]]],
    ) -> set[Key]:
        """Apply the batches in log order; returns the collections changed. A `drop` drops the
        collection from Milvus (and from `positions`): rebuilt if it is ever searched again."""
        changed: set[Key] = set()
        for key, op, face_ids in batches:
            if key not in positions:
                continue  # dropped earlier in this replay
            if op == ChangeOp.DROP:
                self.milvus.drop_generations(self._base(account_id, key))
                self._known.pop((account_id, key), None)
                del positions[key]
                changed.discard(key)
                continue
            apply_membership(
                db, self.model, _Generation(self.milvus, positions[key][0]), op, face_ids
            )
            metrics.MILVUS_SYNC_ROWS.inc(len(face_ids))
            changed.add(key)
        return changed

    def _build(self, db: Session, account_id: int, key: Key, latest: int) -> int:
        """Fill a new generation of the collection from the store and publish it at `latest`
        (read before the members: what commits in between is replayed by the next sync)."""
        base = self._base(account_id, key)
        ids, vectors = members(db, key, self.model)
        name = self.milvus.create(base)
        self.milvus.upsert(name, ids, vectors)
        self.milvus.publish(base, name, latest)
        log.info("built Milvus %s-%d from the store: %d faces at seq %d", *key, len(ids), latest)
        return len(ids)
