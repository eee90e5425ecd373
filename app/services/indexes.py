"""Per-process vector indexes that follow the store.

Design (several workers, one truth):
- The store is the only source of truth. Each worker process keeps, lazily, one `VectorIndex`
  per collection it has searched (a faceset, or a group's faces), keyed by row ids.
- Every membership change writes an `IndexChange` row in the same transaction (see
  `app.services.changes`). Before each search a worker replays the rows of that account past the
  last sequence number it applied. Writers hold the account row lock, so per account commit order
  equals `seq` order and no change is skipped; the replay is idempotent (add is an upsert,
  remove and drop are no-ops when absent), so a collection loaded mid-stream is still exact.
  Hence a face added through any worker is searchable in all of them as soon as the add call
  returned, and a removed face never comes back.
- Restart: a collection loads from its snapshot file (written atomically by /face/training and
  after large rebuilds) plus the changes logged after the snapshot's sequence number, instead of
  re-reading every vector from the store.
- Model changes: a worker indexes, per face, the embedding of its own recognition model
  (`app.services.embeddings`); a face without one is left out. `facesrv reembed` switches an
  account's faces to the new model's embeddings in one transaction that logs an `add` for every
  member, so every worker re-reads them; a snapshot records its model and one of another model
  is rebuilt.
- Old log rows are pruned (`app.services.changes.prune`), leaving per collection a marker with
  the last sequence number deleted. An index (or snapshot) that had not seen that far can no
  longer be brought up to date from the log, so it is rebuilt from the store.
- Backends: this module's `IndexRegistry` (FAISS, `FACESRV_VECTOR_BACKEND=faiss`, the default)
  and `app.services.milvus_sync.MilvusRegistry` (one copy in Milvus shared by every worker)
  answer the same `Registry` protocol, and read and apply the log with the same functions
  (`read_changes`, `apply_membership`): `get_registry` picks one from the settings.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db.models import Face, FacesetFace, GroupMember, IndexChange
from app.db.session import session_scope
from app.domain import ChangeOp
from app.index.vectors import VectorIndex
from app.services.embeddings import served_column
from app.vision.manifest import load_manifest

log = logging.getLogger("facesrv.index")

EMBEDDING_DIM = 512
# Collections at least this large are snapshotted after a full rebuild from the store.
SNAPSHOT_MIN_SIZE = 10_000


def _vectors(
    db: Session, face_ids: Iterable[int], model: str | None
) -> tuple[np.ndarray, np.ndarray]:
    rows = db.execute(
        select(Face.id, served_column(model)).where(Face.id.in_(list(face_ids)))
    ).all()
    return _stack(rows)


def _stack(rows: list) -> tuple[np.ndarray, np.ndarray]:
    """Ids and vectors of the rows that have an embedding (by the worker's model)."""
    rows = [row for row in rows if row[1] is not None]
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    if not rows:
        return ids, np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32)
    return ids, vectors.reshape(len(rows), -1)


# Replayed before every search, usually to find nothing new: built once, not per call, and on
# the table rather than the ORM class (plain rows need no ORM compile state).
_changes = IndexChange.__table__
_CHANGES_AFTER = (
    select(
        _changes.c.seq,
        _changes.c.collection,
        _changes.c.collection_id,
        _changes.c.face_id,
        _changes.c.op,
    )
    .where(_changes.c.account_id == bindparam("account_id"), _changes.c.seq > bindparam("after"))
    .order_by(_changes.c.seq)
)


def _members_query(collection: str, collection_id: int, model: str | None = None):  # noqa: ANN202
    """A collection's faces with their embedding by `model` (a SQLAlchemy Select)."""
    if collection == "faceset":
        return (
            select(Face.id, served_column(model))
            .join(FacesetFace, FacesetFace.face_id == Face.id)
            .where(FacesetFace.faceset_id == collection_id)
        )
    return (
        select(Face.id, served_column(model))
        .join(GroupMember, GroupMember.person_id == Face.person_id)
        .where(GroupMember.group_id == collection_id)
    )


Key = tuple[str, int]  # (collection kind, its row id)


def latest_seq(db: Session, account_id: int) -> int:
    """The account's last change-log seq (0 for none), on the (account_id, seq) index."""
    return db.scalar(
        select(func.coalesce(func.max(IndexChange.seq), 0)).where(
            IndexChange.account_id == account_id
        )
    )


def members(db: Session, key: Key, model: str | None) -> tuple[np.ndarray, np.ndarray]:
    """A collection's face ids and vectors by `model`, as the store has them now."""
    return _stack(db.execute(_members_query(*key, model)).all())


@dataclass
class Replay:
    """What an account's log past some position asks of a set of collections."""

    last: int  # the last seq read (of any collection)
    outdated: set[Key] = field(default_factory=set)  # rows they miss were pruned: rebuild them
    batches: list[tuple[Key, str, list[int]]] = field(default_factory=list)  # in log order


def read_changes(
    db: Session, account_id: int, after: int, positions: Mapping[Key, int], only: Key | None = None
) -> Replay:
    """The log rows of the account past `after`, for the collections of `positions`, each
    past its own position, grouped into runs of one op on one collection (in log order).

    A collection met by a `pruned` marker past its position is outdated: the log no longer
    holds what it missed, and none of its batches are returned. Applying the batches in order
    is idempotent, so a position earlier than a collection's true one costs work, never
    correctness.
    """
    query = _CHANGES_AFTER
    if only is not None:
        query = query.where(_changes.c.collection == only[0], _changes.c.collection_id == only[1])
    replay = Replay(after)
    for seq, collection, collection_id, face_id, op in db.execute(
        query, {"account_id": account_id, "after": after}
    ):
        replay.last = seq
        key = (collection, collection_id)
        position = positions.get(key)
        if position is None or seq <= position or key in replay.outdated:
            continue
        if op == ChangeOp.PRUNED:
            if face_id > position:  # the marker holds the last seq pruned
                replay.outdated.add(key)
        elif replay.batches and replay.batches[-1][:2] == (key, op):
            replay.batches[-1][2].append(face_id)
        else:
            replay.batches.append((key, op, [face_id]))
    replay.batches = [batch for batch in replay.batches if batch[0] not in replay.outdated]
    return replay


class Target(Protocol):
    """What a change is applied to: a worker's `VectorIndex`, or a collection in Milvus."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...


def apply_membership(
    db: Session, model: str | None, target: Target, op: str, face_ids: list[int]
) -> None:
    """Apply an `add` (an upsert of the faces' current vectors) or a `remove` batch."""
    if op == ChangeOp.ADD:
        ids, vectors = _vectors(db, face_ids, model)
        if len(ids):
            target.add(ids, vectors)
        # A face with no embedding by this worker's model is not comparable: out it goes.
        missing = np.setdiff1d(np.asarray(face_ids, dtype=np.int64), ids)
        if len(missing):
            target.remove(missing)
    elif op == ChangeOp.REMOVE:
        target.remove(np.asarray(face_ids, dtype=np.int64))
    else:
        raise ValueError(f"not a membership change: {op}")


class Searchable(Protocol):
    """A collection ready to answer: what `app.services.matching` searches."""

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class IndexStats:
    collections: int
    vectors: int
    memory_bytes: int
    change_log_lag: int  # changes committed but not yet applied (the most over accounts)


class Registry(Protocol):
    """A vector backend as matching, training, upkeep and `facesrv index rebuild` use it."""

    model: str | None

    def get(self, db: Session, account_id: int, collection: str, collection_id: int) -> Searchable:
        """The collection, current with every change committed before this call."""
        ...

    def save(self, db: Session, account_id: int, collection: str, collection_id: int) -> None:
        """Make the collection's next search, in any worker or after a restart, start warm."""
        ...

    def rebuild(self, account_id: int, collection: str, collection_id: int) -> int:
        """Rebuild the collection from the store, whatever its state; returns its faces."""
        ...

    def stats(self, db: Session) -> IndexStats: ...


class IndexRegistry:
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
        self._indexes: dict[Key, VectorIndex] = {}
        self._applied: dict[int, int] = {}  # account id -> last replayed seq
        self._locks = threading.Lock()  # guards the two lock tables below, nothing else
        self._load_locks: dict[Key, threading.Lock] = {}
        self._account_locks: dict[int, threading.Lock] = {}

    def _load_lock(self, key: Key) -> threading.Lock:
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
            latest = db.execute(
                select(IndexChange.account_id, func.max(IndexChange.seq))
                .where(IndexChange.account_id.in_(applied))
                .group_by(IndexChange.account_id)
            ).all()
            lag = max((seq - applied[account_id] for account_id, seq in latest), default=0)
        return IndexStats(
            collections=len(indexes),
            vectors=sum(len(index) for index in indexes),
            memory_bytes=sum(index.memory_bytes for index in indexes),
            change_log_lag=max(lag, 0),
        )

    def snapshot_path(self, collection: str, collection_id: int) -> Path:
        return self.snapshot_dir / f"{collection}-{collection_id}.faiss"

    def get(self, db: Session, account_id: int, collection: str, collection_id: int) -> VectorIndex:
        """The collection's index, current with every change committed before this call."""
        key = (collection, collection_id)
        self._ensure_loaded(db, account_id, key)
        with self._account_lock(account_id):
            self._catch_up(db, account_id)
            return self._indexes[key]

    def save(self, db: Session, account_id: int, collection: str, collection_id: int) -> None:
        """Snapshot a collection (what /face/training does) so a restart loads it quickly."""
        key = (collection, collection_id)
        self._ensure_loaded(db, account_id, key)
        with self._account_lock(account_id):
            self._catch_up(db, account_id)
            self._snapshot(key, self._indexes[key], self._applied[account_id])

    def _ensure_loaded(self, db: Session, account_id: int, key: Key) -> None:
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

    def rebuild(self, account_id: int, collection: str, collection_id: int) -> int:
        """Rebuild from the store and rewrite the snapshot, whatever the old one held.

        What `facesrv index rebuild` runs (in its own process: workers keep their indexes,
        which the log keeps exact, and load the new snapshot at their next start).
        """
        key = (collection, collection_id)
        with session_scope() as db, self._load_lock(key):
            index, latest = self._build(db, account_id, key, from_snapshot=False)
            with self._account_lock(account_id):
                self._indexes[key] = index
                self._applied[account_id] = min(self._applied.get(account_id, latest), latest)
            self._snapshot(key, index, latest)
        return len(index)

    def _build(
        self, db: Session, account_id: int, key: Key, from_snapshot: bool = True
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
        self, db: Session, account_id: int, key: Key
    ) -> tuple[VectorIndex, int] | None:
        """The collection from its snapshot plus the log after it, if it has a usable one.

        A snapshot is only a cache of the store: one that cannot be read (an older format, a
        damaged disk) is deleted and the caller rebuilds from the store instead of failing.
        """
        path = self.snapshot_path(*key)
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
        log.info("loaded %s-%d from its snapshot at seq %s", *key, seq)
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
        indexes: dict[Key, VectorIndex],
        only: Key | None = None,
    ) -> tuple[int, set[Key]]:
        """Apply logged changes past `after` to those of `indexes` they concern.

        Returns the last seq seen and the collections the log can no longer bring up to date
        (rows past `after` were pruned); those are left for the caller to rebuild.
        """
        replay = read_changes(db, account_id, after, dict.fromkeys(indexes, after), only)
        for key, op, face_ids in replay.batches:
            self._apply(db, indexes, key, op, face_ids)
        return replay.last, replay.outdated

    def _apply(
        self, db: Session, indexes: dict[Key, VectorIndex], key: Key, op: str, face_ids: list[int]
    ) -> None:
        if op == ChangeOp.DROP:  # deleted; its id may come back (SQLite reuses rowids)
            indexes[key] = VectorIndex(EMBEDDING_DIM, **self.index_options)
            self.snapshot_path(*key).unlink(missing_ok=True)
        else:
            apply_membership(db, self.model, indexes[key], op, face_ids)

    def _snapshot(self, key: Key, index: VectorIndex, seq: int) -> None:
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        index.save(self.snapshot_path(*key), {"seq": seq, "model": self.model})


BACKENDS = ("faiss", "milvus")


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process's vector backend, per `FACESRV_VECTOR_BACKEND`."""
    settings = get_settings()
    model = load_manifest(settings.model_manifest).models["recognition"].identity
    if settings.vector_backend not in BACKENDS:
        raise ValueError(
            f"FACESRV_VECTOR_BACKEND={settings.vector_backend!r}: expected one of "
            + ", ".join(BACKENDS)
        )
    if settings.vector_backend == "milvus":
        # Imported here: the FAISS path never loads pymilvus (nor needs it installed).
        from app.services.milvus_sync import MilvusRegistry

        return MilvusRegistry.from_settings(settings, model)
    return IndexRegistry(
        settings.data_dir / "index", settings.exact_index_max, settings.index_rerank, model
    )
