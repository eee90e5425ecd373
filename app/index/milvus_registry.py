"""The Milvus backend: one copy of every collection, in Milvus, shared by all workers and hosts.

The store stays the only source of truth and Milvus a derived copy fed by the same change log
as the FAISS backend, so `app.index.registry`'s guarantees hold the same way:

- Current before every search: a search reads the account's last log seq (one indexed query).
  When this process knows its collection to be current with it, it searches at once; otherwise
  it first *syncs* the collection: replays the collection's log rows past its position in
  Milvus (`facesrv.seq`, kept in Milvus, see `app.index.milvus`), or builds it from the store
  if Milvus lacks it. Only the collection searched is synced, so a sync costs the same in an
  account with thousands of collections. Adds read the faces' vectors from
  the store at replay time and are upserts, removes are deletes, so replaying is idempotent.
  A sync ends with a Milvus timestamp (`MilvusCollections.tick`) that the searches after it are
  guaranteed at: they see what any process wrote before, without Strong consistency's wait.
  A read at a timestamp sees the data as of then, so a generation built after it (another
  process rebuilt the collection) would look empty: searches therefore go to the concrete
  generation this process synced, not to the alias. A rebuild drops the generation it replaced;
  a search that finds its generation gone syncs again (a fresh timestamp) and retries.
- Replays never interleave: a sync holds a per-account lock that every process sharing the
  store honours (a PostgreSQL advisory lock; on SQLite, which lives on one host, an fcntl
  lock on a byte of a file beside the database), and reads the log in a fresh transaction
  taken under it. Two workers replaying the same rows concurrently could otherwise apply an
  old `add` after a newer `remove` and bring a removed face back. Writers never take this lock:
  a sync delays only other syncs of the same account.
- Whose collections: their names carry the store's identity (`app.index.store.store_id`), so
  deployments sharing one Milvus never see each other's; and a collection claiming a position
  past the store's last seq was not written from this store as it is (a database restored from
  a backup): it is rebuilt, never trusted.
- A wiped Milvus has no collections, hence no positions: each collection is rebuilt from the
  store at its next search (a search that meets a missing collection syncs and retries). A
  rebuild fills a new generation and only then moves the alias, so no search ever sees half
  of one.
- A deleted faceset or group is never searched again: the upkeep's `sweep` drops its Milvus
  collection (every few minutes, in any worker). One the log can no longer bring up to date
  (pruned rows), or whose `drop` it meets (SQLite may give a deleted row's id to a new one), is
  rebuilt from the store.
- A Milvus that cannot be reached fails the call with a retryable 503, never a 500, and the
  next call after it is back answers as before.

The milvus-lite data folder is opened by one process only (it holds a lock on it): with a
local `FACESRV_MILVUS_URI`, `facesrv serve` opens it once and serves it to its workers over
gRPC on loopback (`registry.share_engine`); a Milvus standalone or cluster (`http://host:19530`)
is shared by any number of processes and hosts.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
from pymilvus import MilvusException
from sqlalchemy import text
from sqlalchemy.orm import Session

from app import metrics
from app.config import Settings
from app.db.session import session_scope
from app.domain import ChangeOp, Kind
from app.errors import unavailable
from app.index.changelog import CollectionKey, latest_seq, latest_seqs, read_changes
from app.index.milvus import (
    COLLECTION_NOT_FOUND,
    IndexSpec,
    MilvusCollections,
    account_prefix,
    deployment_prefix,
    parse_account_generation,
)
from app.index.protocol import IndexStats
from app.index.store import EMBEDDING_DIM, apply_membership, collections_of, members, store_id

log = logging.getLogger("facesrv.index")

# The first key of the two-key PostgreSQL advisory lock: "facesrv Milvus sync" (the second is
# the account id), so no other user of advisory locks on the database collides with it.
_ADVISORY_SPACE = 0x66534D53
# Seconds a client is told to wait before retrying a call Milvus failed.
RETRY_AFTER = 5
# pymilvus's status for a connection that could not be made or was dropped (Status.CONNECT_FAILED).
_CONNECT_FAILED = 2
# Seconds before the one retry of an operation whose connection dropped under it.
_RECONNECT_PAUSE = 0.5
T = TypeVar("T")


def _dropped(error: Exception) -> bool:
    """A connection that dropped under a call (a server's GOAWAY, "too many pings", a
    restart), as opposed to an answer: worth one more try on a fresh connection."""
    if isinstance(error, grpc.RpcError):
        return error.code() == grpc.StatusCode.UNAVAILABLE
    return isinstance(error, MilvusException) and error.code == _CONNECT_FAILED


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
    """What this process knows of a collection in Milvus: its concrete generation `name`,
    current with the log up to `seq` (a lower bound: another process may have applied more
    since), holding `count` faces, all visible to a read guaranteed at Milvus timestamp `ts`."""

    name: str
    seq: int
    count: int | None
    ts: int


@dataclass
class MilvusCollection:
    """A synced collection, as `app.services.matching` searches it."""

    registry: MilvusRegistry
    account_id: int
    key: CollectionKey
    count: int

    def __len__(self) -> int:
        return self.count

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.registry.search(self.account_id, self.key, queries, k)


class _Generation:
    """One concrete Milvus collection as a replay target (`store.Target`)."""

    def __init__(self, milvus: MilvusCollections, name: str) -> None:
        self.milvus, self.name = milvus, name

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.milvus.upsert(self.name, ids, vectors)

    def remove(self, ids: np.ndarray) -> None:
        self.milvus.delete(self.name, ids)


class MilvusRegistry:
    """The Milvus backend of `app.index.registry.Registry`."""

    def __init__(self, uri: str, spec: IndexSpec, model: str | None) -> None:
        self.model = model
        with session_scope() as db:
            self.store = store_id(db)
        clock = f"{deployment_prefix(self.store)}clock"
        with self._unavailable(uri):
            self.milvus = MilvusCollections(uri, EMBEDDING_DIM, spec, clock)
        self._known: dict[tuple[int, CollectionKey], Known] = {}

    @classmethod
    def from_settings(cls, settings: Settings, model: str | None) -> MilvusRegistry:
        return cls(settings.milvus_uri, IndexSpec.parse(settings.milvus_index), model)

    def _once_more(self, call: Callable[[], T]) -> T:
        """`call()`, and once more if the connection dropped under it: every operation here is
        idempotent (a replay, a search). A second failure is the client's retryable 503."""
        with self._unavailable(self.milvus.uri):
            try:
                return call()
            except (MilvusException, grpc.RpcError) as error:
                if not _dropped(error):
                    raise
                log.info("the connection to Milvus dropped (%s): trying once more", error)
            time.sleep(_RECONNECT_PAUSE)
            self.milvus.reconnect()
            return call()

    @staticmethod
    @contextmanager
    def _unavailable(uri: str) -> Iterator[None]:
        """Milvus's failures as the retryable 503 a client is told about."""
        try:
            yield
        except (MilvusException, grpc.RpcError) as error:
            log.warning("Milvus at %s failed: %s", uri, error)
            detail = getattr(error, "message", None) or str(error).strip().splitlines()[0]
            reason = f"the vector database (Milvus) failed: {detail}; retry in {RETRY_AFTER} s"
            raise unavailable(reason, RETRY_AFTER) from error

    def _base(self, account_id: int, key: CollectionKey) -> str:
        """The alias a faceset's or group's collection is searched by."""
        return f"{account_prefix(self.store, self.model, account_id)}{key.kind.value}_{key.id}"

    def get(self, db: Session, account_id: int, key: CollectionKey) -> MilvusCollection:
        known = self._known.get((account_id, key))
        if known is None or known.count is None or known.seq < latest_seq(db, account_id):
            known = self._once_more(lambda: self._sync(account_id, key))
        assert known.count is not None
        return MilvusCollection(self, account_id, key, known.count)

    def search(
        self, account_id: int, key: CollectionKey, queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._once_more(lambda: self._search(account_id, key, queries, k))

    def _search(
        self, account_id: int, key: CollectionKey, queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        known = self._known.get((account_id, key)) or self._sync(account_id, key)
        try:
            return self.milvus.search(known.name, queries, k, known.ts)
        except MilvusException as error:
            if error.code != COLLECTION_NOT_FOUND:
                raise
        # Replaced since this process last synced (rebuilt by another process), or gone (a
        # wiped Milvus, rebuilt from the store by this sync).
        log.info("Milvus generation %s is gone: syncing %s again", known.name, key)
        self._known.pop((account_id, key), None)
        known = self._sync(account_id, key)
        return self.milvus.search(known.name, queries, k, known.ts)

    def save(self, db: Session, account_id: int, key: CollectionKey) -> None:
        """Training: sync the collection and persist its segments, so the next search (any
        worker, any restart) finds it built and Milvus reopens it without replaying a log."""
        self.get(db, account_id, key)
        with self._unavailable(self.milvus.uri):
            state = self.milvus.state(self._base(account_id, key))
            if state is not None:
                self.milvus.flush(state[0])

    def rebuild(self, account_id: int, key: CollectionKey) -> int:
        with self._unavailable(self.milvus.uri), sync_session(account_id) as db:
            latest = latest_seq(db, account_id)
            name, count = self._build(db, account_id, key, latest)
            self._known[(account_id, key)] = Known(name, latest, count, self.milvus.tick())
        return count

    def discard(self, account_id: int, key: CollectionKey) -> bool:
        with self._unavailable(self.milvus.uri):
            found = self.milvus.state(self._base(account_id, key)) is not None
            self.milvus.drop_generations(self._base(account_id, key))
        self._known.pop((account_id, key), None)
        return found

    def stats(self, db: Session) -> IndexStats:
        """What Milvus holds of the collections this process has synced; the worker itself
        holds no vectors (memory 0), which is the point of this backend."""
        known = dict(self._known)
        applied: dict[int, int] = {}
        for (account_id, _), state in known.items():
            applied[account_id] = min(applied.get(account_id, state.seq), state.seq)
        latest = latest_seqs(db, applied)
        lag = max((latest.get(a, 0) - seq for a, seq in applied.items()), default=0)
        return IndexStats(
            collections=len(known),
            vectors=sum(state.count or 0 for state in known.values()),
            memory_bytes=0,
            change_log_lag=max(lag, 0),
        )

    def _trusted_state(
        self, account_id: int, key: CollectionKey, latest: int
    ) -> tuple[str, int] | None:
        """The collection's concrete generation in Milvus and its seq, if it is complete and
        its own store can have written it. One claiming a seq past `latest` was not written
        from this store as it is now (a database restored from an older backup): it is
        dropped and rebuilt, never trusted."""
        base = self._base(account_id, key)
        state = self.milvus.state(base)
        if state is not None and state[1] > latest:
            log.warning(
                "Milvus %s claims seq %d, past the store's %d: not trusted, rebuilding",
                key,
                state[1],
                latest,
            )
            self.milvus.drop_generations(base)
            return None
        return state

    def _sync(self, account_id: int, key: CollectionKey) -> Known:
        """Under the account's sync lock: bring the collection's Milvus copy up to the log, or
        build it from the store when Milvus lacks it, the log can no longer bring it up to
        date (pruned rows), or the log dropped it (the faceset or group was deleted, and on
        SQLite its id may come back).

        Only this collection's rows are read and only it is asked of Milvus: the account's
        other collections catch up when they are searched, so a sync costs the same in an
        account of one collection or of thousands. (Deleted collections, which are never
        searched again, are dropped from Milvus by `sweep`.)
        """
        with sync_session(account_id) as db:
            latest = latest_seq(db, account_id)
            previous = self._known.get((account_id, key))
            state = self._trusted_state(account_id, key, latest)
            outcome, count, changed = "current", None, False
            if state is not None:
                name, seq = state
                if previous is None:  # first sight since a restart (Milvus may hold it released)
                    self.milvus.load(name)
                replay = read_changes(db, account_id, seq, {key: seq}, only=key)
                if key in replay.outdated:
                    log.warning("Milvus %s predates the pruned log: rebuilding", key)
                    state = None
                elif any(batch.op == ChangeOp.DROP for batch in replay.batches):
                    state = None
                elif replay.batches:
                    target = _Generation(self.milvus, name)
                    for batch in replay.batches:
                        apply_membership(db, self.model, target, batch.op, batch.face_ids)
                        metrics.MILVUS_SYNC_ROWS.inc(len(batch.face_ids))
                    self.milvus.mark(name, latest)
                    outcome, changed = "replayed", True
            if state is None:
                name, count = self._build(db, account_id, key, latest)
                outcome = "built"
            ts = self.milvus.tick()  # after every write of this sync, and of earlier ones
            if count is None:
                unchanged = previous is not None and previous.name == name and not changed
                count = previous.count if unchanged else self.milvus.count(name, ts)
            known = self._known[(account_id, key)] = Known(name, latest, count, ts)
        metrics.MILVUS_SYNCS.labels(outcome).inc()
        return known

    def sweep(self, db: Session) -> int:
        """Drop the Milvus copies of the facesets and groups deleted from the store (a sync
        brings up only the collection searched, and a deleted one is never searched again);
        returns how many were dropped."""
        found: dict[int, set[CollectionKey]] = {}
        with self._unavailable(self.milvus.uri):
            for name in self.milvus.names():
                parsed = parse_account_generation(self.store, self.model, name)
                if parsed is not None:
                    account_id, kind, row_id = parsed
                    found.setdefault(account_id, set()).add(CollectionKey(Kind(kind), row_id))
            dropped = 0
            for account_id, keys in found.items():
                kept = {key for key, _ in collections_of(db, account_id)}
                for key in keys - kept:
                    self.milvus.drop_generations(self._base(account_id, key))
                    self._known.pop((account_id, key), None)
                    dropped += 1
        if dropped:
            log.info("dropped the Milvus copies of %d deleted collection(s)", dropped)
        return dropped

    def _build(
        self, db: Session, account_id: int, key: CollectionKey, latest: int
    ) -> tuple[str, int]:
        """Fill a new generation of the collection from the store and publish it at `latest`
        (read before the members: what commits in between is replayed by the next sync);
        returns its name and size."""
        base = self._base(account_id, key)
        ids, vectors = members(db, key, self.model)
        name = self.milvus.build(base, ids, vectors)
        self.milvus.publish(base, name, latest)
        log.info("built Milvus %s from the store: %d faces at seq %d", key, len(ids), latest)
        return name, len(ids)
