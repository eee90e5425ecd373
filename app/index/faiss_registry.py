"""The FAISS backend: each worker process keeps its own index of every collection it searched.

See `app.index.registry` for what both backends guarantee. This one's own machinery:
- Each worker keeps, lazily, one `VectorIndex` per collection it has searched, and replays the
  account's change log past the last seq it applied before each search. The replay is
  idempotent (add is an upsert, remove and drop are no-ops when absent), so a collection loaded
  mid-stream is still exact.
- Restart: a collection loads from its snapshot file (written atomically by /face/training and
  after large rebuilds) plus the changes logged after the snapshot's seq, instead of re-reading
  every vector from the store. A snapshot records its recognition model; one of another model is
  rebuilt, as is one older than the pruned log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

from sqlalchemy.orm import Session

from app.db.session import session_scope
from app.domain import ChangeOp
from app.index.changelog import Batch, CollectionKey, latest_seq, latest_seqs, read_changes
from app.index.protocol import IndexStats
from app.index.store import EMBEDDING_DIM, apply_membership, members
from app.index.vectors import VectorIndex

log = logging.getLogger("facesrv.index")

# Collections at least this large are snapshotted after a full rebuild from the store.
SNAPSHOT_MIN_SIZE = 10_000


class FaissRegistry:
    """The worker's indexes, loaded on first use and kept current from the change log.

    Two kinds of lock, so that a slow cold load stalls nobody else:
    - a load lock per collection: the first search of a collection builds its index (from its
      snapshot or the store) holding only that lock; other searches of the same collection wait
      for it, nobody else does;
    - an account lock: replaying the account's log onto its loaded indexes, and adopting a newly
      built one, are short and serialised per account.
    """

    def __init__(
        self, snapshot_dir: Path, exact_max: int, rerank: int = 256, model: str | None = None
    ) -> None:
        self.snapshot_dir = snapshot_dir
        # The recognition model whose embeddings this worker compares (`ModelSpec.identity`);
        # None: every face's `embedding`, whichever model made it.
        self.model = model
        # The operator's current settings win over those saved in a snapshot.
        self.index_options = {"exact_max": exact_max, "rerank": rerank}
        self._indexes: dict[CollectionKey, VectorIndex] = {}
        self._applied: dict[int, int] = {}  # account id -> last replayed seq
        self._locks = threading.Lock()  # guards the two lock tables below, nothing else
        self._load_locks: dict[CollectionKey, threading.Lock] = {}
        self._account_locks: dict[int, threading.Lock] = {}

    def _load_lock(self, key: CollectionKey) -> threading.Lock:
        with self._locks:
            return self._load_locks.setdefault(key, threading.Lock())

    def _account_lock(self, account_id: int) -> threading.Lock:
        with self._locks:
            return self._account_locks.setdefault(account_id, threading.Lock())

    def stats(self, db: Session) -> IndexStats:
        """What this worker holds, and how far its loaded accounts trail the change log."""
        # Copies taken in one C call each (the GIL held throughout): no lock needed to read.
        indexes = list(self._indexes.values())
        applied = dict(self._applied)
        lag = 0
        if applied:
            latest = latest_seqs(db, applied)
            lag = max((seq - applied[account_id] for account_id, seq in latest.items()), default=0)
        return IndexStats(
            collections=len(indexes),
            vectors=sum(len(index) for index in indexes),
            memory_bytes=sum(index.memory_bytes for index in indexes),
            change_log_lag=max(lag, 0),
        )

    def snapshot_path(self, key: CollectionKey) -> Path:
        return self.snapshot_dir / f"{key}.faiss"

    def discard(self, account_id: int, key: CollectionKey) -> bool:
        """Delete the collection's snapshot (this process's index is left to the log)."""
        path = self.snapshot_path(key)
        if not path.exists():
            return False
        path.unlink(missing_ok=True)
        return True

    def sweep(self, db: Session) -> int:
        """Nothing to let go: each catch-up replays the account's whole log onto every index
        this worker holds, so a deleted collection's `drop` has already emptied it."""
        return 0

    def get(self, db: Session, account_id: int, key: CollectionKey) -> VectorIndex:
        """The collection's index, current with every change committed before this call."""
        self._ensure_loaded(db, account_id, key)
        with self._account_lock(account_id):
            self._catch_up(db, account_id)
            return self._indexes[key]

    def save(self, db: Session, account_id: int, key: CollectionKey) -> None:
        """Snapshot a collection (what /face/training does) so a restart loads it quickly."""
        self._ensure_loaded(db, account_id, key)
        with self._account_lock(account_id):
            self._catch_up(db, account_id)
            self._snapshot(key, self._indexes[key], self._applied[account_id])

    def _ensure_loaded(self, db: Session, account_id: int, key: CollectionKey) -> None:
        if key in self._indexes:
            return
        with self._load_lock(key):
            if key in self._indexes:  # another search loaded it meanwhile
                return
            index, position = self._build(db, account_id, key)
            with self._account_lock(account_id):
                # Replaying from an earlier position than the index's is harmless (adds are
                # upserts, removes of absent faces no-ops, in log order); from a later one
                # would miss changes, so a lagging index first catches up to the account.
                applied = self._applied.setdefault(account_id, position)
                built = {key: index}
                if applied > position:
                    _, outdated = self._replay(db, account_id, position, built, only=key)
                    if outdated:  # pruned meanwhile: rare, and rebuilt under the account lock
                        built[key], _ = self._build(db, account_id, key)
                self._indexes[key] = built[key]

    def rebuild(self, account_id: int, key: CollectionKey) -> int:
        """Rebuild from the store and rewrite the snapshot, whatever the old one held.

        What `facesrv index rebuild` runs (in its own process: workers keep their indexes,
        which the log keeps exact, and load the new snapshot at their next start).
        """
        with session_scope() as db, self._load_lock(key):
            index, latest = self._build(db, account_id, key, from_snapshot=False)
            with self._account_lock(account_id):
                self._indexes[key] = index
                self._applied[account_id] = min(self._applied.get(account_id, latest), latest)
            self._snapshot(key, index, latest)
        return len(index)

    def _build(
        self, db: Session, account_id: int, key: CollectionKey, from_snapshot: bool = True
    ) -> tuple[VectorIndex, int]:
        """A collection's index and the log seq it is current with; touches no shared state."""
        # Read the log position before the members: anything committed in between is replayed.
        latest = latest_seq(db, account_id)
        loaded = self._load_snapshot(db, account_id, key) if from_snapshot else None
        if loaded is not None:
            return loaded
        index = VectorIndex(EMBEDDING_DIM, **self.index_options)
        index.add(*members(db, key, self.model))
        if len(index) >= SNAPSHOT_MIN_SIZE:
            self._snapshot(key, index, latest)
        return index, latest

    def _load_snapshot(
        self, db: Session, account_id: int, key: CollectionKey
    ) -> tuple[VectorIndex, int] | None:
        """The collection from its snapshot plus the log after it, if it has a usable one.

        A snapshot is only a cache of the store: one that cannot be read (an older format, a
        damaged disk) is deleted and the caller rebuilds from the store instead of failing.
        """
        path = self.snapshot_path(key)
        if not path.exists():
            return None
        try:
            index, meta = VectorIndex.load(path, **self.index_options)
            seq = int(meta["seq"])
        except Exception as error:  # noqa: BLE001 - whatever is wrong with it, the store is right
            log.warning("unreadable snapshot %s (%s): rebuilding from the store", path, error)
            with contextlib.suppress(OSError):  # the next snapshot replaces it anyway
                path.unlink(missing_ok=True)
            return None
        if self.model is not None and meta.get("model") != self.model:
            # Another model's vectors (or a snapshot from before models were recorded).
            log.info(
                "snapshot %s holds %s embeddings, this worker compares %s: rebuilding",
                path,
                meta.get("model", "unrecorded model"),
                self.model,
            )
            return None
        loaded = {key: index}
        position, outdated = self._replay(db, account_id, seq, loaded, only=key)
        if outdated:
            log.warning("snapshot %s predates the pruned log: rebuilding from the store", path)
            path.unlink(missing_ok=True)
            return None
        log.info("loaded %s from its snapshot at seq %s", key, seq)
        return loaded[key], position

    def _catch_up(self, db: Session, account_id: int) -> None:
        """Under the account lock: replay the account's log onto its loaded indexes."""
        after = self._applied.get(account_id, 0)
        self._applied[account_id], outdated = self._replay(db, account_id, after, self._indexes)
        for key in outdated:  # idle through a prune: the log no longer holds what it missed
            self._indexes[key], _ = self._build(db, account_id, key)

    def _replay(
        self,
        db: Session,
        account_id: int,
        after: int,
        indexes: dict[CollectionKey, VectorIndex],
        only: CollectionKey | None = None,
    ) -> tuple[int, set[CollectionKey]]:
        """Apply logged changes past `after` to those of `indexes` they concern.

        Returns the last seq seen and the collections the log can no longer bring up to date
        (rows past `after` were pruned); those are left for the caller to rebuild.
        """
        replay = read_changes(db, account_id, after, dict.fromkeys(indexes, after), only)
        for batch in replay.batches:
            self._apply(db, indexes, batch)
        return replay.last, replay.outdated

    def _apply(self, db: Session, indexes: dict[CollectionKey, VectorIndex], batch: Batch) -> None:
        if batch.op == ChangeOp.DROP:  # deleted; its id may come back (SQLite reuses rowids)
            indexes[batch.key] = VectorIndex(EMBEDDING_DIM, **self.index_options)
            self.snapshot_path(batch.key).unlink(missing_ok=True)
        else:
            apply_membership(db, self.model, indexes[batch.key], batch.op, batch.face_ids)

    def _snapshot(self, key: CollectionKey, index: VectorIndex, seq: int) -> None:
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        index.save(self.snapshot_path(key), {"seq": seq, "model": self.model})
