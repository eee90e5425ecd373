"""The change log that keeps every copy of the vectors in step with the store: both its ends.

`app.services.membership` (and `facesrv reembed`) write it with `record`, inside the
`account_write` transaction that changes a membership, so the log row commits (or rolls back)
with the change itself. Writers hold the account row lock, so per account commit order equals
`seq` order and a reader never skips a change. The registries (`faiss_registry`,
`milvus_registry`) read it with `read_changes` before a search and apply it with
`store.apply_membership`. See `app.db.models.IndexChange`.

The log only has to reach back as far as the oldest copy still catching up, so old rows are
pruned. Each collection pruned keeps one marker row (op `pruned`, `face_id` = the last seq
deleted): a worker index, snapshot or Milvus collection that had not seen that far is rebuilt
from the store instead of silently missing the deleted rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import takewhile
from typing import NamedTuple

from sqlalchemy import bindparam, delete, func, insert, literal_column, select
from sqlalchemy.orm import Session

from app.db.models import IndexChange
from app.domain import ChangeOp, Kind


class CollectionKey(NamedTuple):
    """A faceset or a group, the two kinds of collection that have vectors: its kind and row id."""

    kind: Kind
    id: int

    def __str__(self) -> str:
        return f"{self.kind.value}-{self.id}"


_changes = IndexChange.__table__
# Replayed before every search, usually to find nothing new: built once, not per call, and on
# the table rather than the ORM class (plain rows need no ORM compile state).
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
# The op is a literal, not a parameter: a database only uses a partial index (here, of the
# markers) for a query whose own WHERE clause implies the index's.
_EARLIER_MARKER = delete(_changes).where(
    _changes.c.account_id == bindparam("account_id"),
    literal_column("op") == literal_column(f"'{ChangeOp.PRUNED}'"),
    _changes.c.collection == bindparam("collection"),
    _changes.c.collection_id == bindparam("collection_id"),
    _changes.c.seq < bindparam("seq"),
)


def record(
    db: Session, account_id: int, key: CollectionKey, face_ids: Iterable[int], op: ChangeOp
) -> None:
    """Log `op` of `face_ids` on one collection, in the caller's write transaction."""
    rows = [
        {
            "account_id": account_id,
            "collection": key.kind.value,
            "collection_id": key.id,
            "face_id": face_id,
            "op": op.value,
        }
        for face_id in face_ids
    ]
    if rows:
        db.execute(insert(IndexChange), rows)


def latest_seq(db: Session, account_id: int) -> int:
    """The account's last change-log seq (0 for none), on the (account_id, seq) index."""
    return db.scalar(
        select(func.coalesce(func.max(IndexChange.seq), 0)).where(
            IndexChange.account_id == account_id
        )
    )


def latest_seqs(db: Session, account_ids: Iterable[int]) -> dict[int, int]:
    """`latest_seq` of several accounts in one query (accounts without a log left out)."""
    rows = db.execute(
        select(IndexChange.account_id, func.max(IndexChange.seq))
        .where(IndexChange.account_id.in_(list(account_ids)))
        .group_by(IndexChange.account_id)
    ).all()
    return dict(rows)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Batch:
    """A run of one op on one collection, in log order."""

    key: CollectionKey
    op: ChangeOp
    face_ids: list[int]


@dataclass
class Replay:
    """What an account's log past some position asks of a set of collections."""

    last: int  # the last seq read (of any collection)
    outdated: set[CollectionKey] = field(default_factory=set)  # they miss pruned rows: rebuild
    batches: list[Batch] = field(default_factory=list)  # in log order


def read_changes(
    db: Session,
    account_id: int,
    after: int,
    positions: Mapping[CollectionKey, int],
    only: CollectionKey | None = None,
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
        query = query.where(
            _changes.c.collection == only.kind.value, _changes.c.collection_id == only.id
        )
    replay = Replay(after)
    for seq, collection, collection_id, face_id, op in db.execute(
        query, {"account_id": account_id, "after": after}
    ):
        replay.last = seq
        key = CollectionKey(Kind(collection), collection_id)
        position = positions.get(key)
        if position is None or seq <= position or key in replay.outdated:
            continue
        op = ChangeOp(op)
        if op == ChangeOp.PRUNED:
            if face_id > position:  # the marker holds the last seq pruned
                replay.outdated.add(key)
        elif replay.batches and (replay.batches[-1].key, replay.batches[-1].op) == (key, op):
            replay.batches[-1].face_ids.append(face_id)
        else:
            replay.batches.append(Batch(key, op, [face_id]))
    replay.batches = [batch for batch in replay.batches if batch.key not in replay.outdated]
    return replay


@dataclass(frozen=True)
class OldRows:
    """A batch from the start of an account's log, up to its first row not yet old."""

    ends: dict[CollectionKey, int]  # per collection, its last old seq (markers aside)
    through: int  # the seq of the last old row read, markers included
    more: bool  # every row read was old: the old part of the log may go on


def old_rows(db: Session, account_id: int, older_than: datetime, after: int, limit: int) -> OldRows:
    """Read the account's next `limit` log rows past seq `after`, on the (account, seq) index.

    Rows are appended in time order, so the old ones are a prefix of the log: no need to search
    the whole log on created_at, which has no index. Markers left by earlier passes stay where
    they are; they are only replaced, by `prune_rows`.
    """
    rows = db.execute(
        select(
            _changes.c.seq,
            _changes.c.collection,
            _changes.c.collection_id,
            _changes.c.op,
            (_changes.c.created_at < older_than).label("old"),
        )
        .where(_changes.c.account_id == account_id, _changes.c.seq > after)
        .order_by(_changes.c.seq)
        .limit(limit)
    ).all()
    old = list(takewhile(lambda row: row.old, rows))
    ends = {
        CollectionKey(Kind(row.collection), row.collection_id): row.seq
        for row in old
        if row.op != ChangeOp.PRUNED
    }
    return OldRows(ends, old[-1].seq if old else after, len(old) == limit)


def prune_rows(db: Session, account_id: int, old: OldRows, after: int) -> int:
    """Delete the old rows read past `after`, leaving each collection one marker.

    The caller runs it in a short write transaction under the account lock, like every writer,
    so the markers take their place in the account's commit order. Returns the rows deleted.
    """
    if not old.ends:
        return 0
    # The markers go in first, so they take seqs past every row: SQLite would hand out the
    # deleted ones again if the newest were gone, and replays would skip the reused seqs.
    markers = db.scalars(
        insert(_changes).returning(_changes.c.seq, sort_by_parameter_order=True),
        [
            {
                "account_id": account_id,
                "collection": key.kind.value,
                "collection_id": key.id,
                "face_id": last,
                "op": ChangeOp.PRUNED.value,
            }
            for key, last in old.ends.items()
        ],
    ).all()
    # Each collection's earlier marker goes: the new one reaches further.
    db.execute(
        _EARLIER_MARKER,
        [
            {
                "account_id": account_id,
                "collection": key.kind.value,
                "collection_id": key.id,
                "seq": seq,
            }
            for key, seq in zip(old.ends, markers, strict=True)
        ],
    )
    return db.execute(
        delete(_changes).where(
            _changes.c.account_id == account_id,
            _changes.c.seq > after,
            _changes.c.seq <= old.through,
            _changes.c.op != ChangeOp.PRUNED,
        )
    ).rowcount
