"""The change log that keeps every worker's vector indexes in step with the store.

`app.services.membership` writes it, inside the `account_write` transaction that changes a
membership, so the log row commits (or rolls back) with the change itself. See
`app.db.models.IndexChange`.

The log only has to reach back as far as the oldest index still catching up, so old rows are
pruned. Each collection pruned keeps one marker row (op `pruned`, `face_id` = the last seq
deleted): a worker index or snapshot that had not seen that far rebuilds from the store instead of
silently missing the deleted rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import takewhile

from sqlalchemy import bindparam, delete, insert, literal_column, select
from sqlalchemy.orm import Session

from app.db.models import IndexChange
from app.domain import ChangeOp, Kind
from app.services.accounts import account_write

_changes = IndexChange.__table__
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
    db: Session,
    account_id: int,
    collection: Kind,
    collection_id: int,
    face_ids: Iterable[int],
    op: ChangeOp,
) -> None:
    rows = [
        {
            "account_id": account_id,
            "collection": collection.value,
            "collection_id": collection_id,
            "face_id": face_id,
            "op": op.value,
        }
        for face_id in face_ids
    ]
    if rows:
        db.execute(insert(IndexChange), rows)


@dataclass(frozen=True)
class OldRows:
    """A batch from the start of an account's log, up to its first row not yet old."""

    ends: dict[tuple[str, int], int]  # per collection, its last old seq (markers aside)
    through: int  # the seq of the last old row read, markers included
    more: bool  # every row read was old: the old part of the log may go on


def old_rows(db: Session, account_id: int, older_than: datetime, after: int, limit: int) -> OldRows:
    """Read the account's next `limit` log rows past seq `after`, on the (account, seq) index.

    Rows are appended in time order, so the old ones are a prefix of the log: no need to search
    the whole log on created_at, which has no index. Markers left by earlier passes stay where
    they are; they are only replaced, by `prune`.
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
        (row.collection, row.collection_id): row.seq for row in old if row.op != ChangeOp.PRUNED
    }
    return OldRows(ends, old[-1].seq if old else after, len(old) == limit)


def prune(account_id: int, old: OldRows, after: int) -> int:
    """Delete the old rows read past `after`, leaving each collection one marker.

    Runs as its own short write transaction, under the account lock like every writer, so the
    markers take their place in the account's commit order. Returns the rows deleted.
    """
    if not old.ends:
        return 0
    with account_write(account_id) as db:
        return _prune(db, account_id, old, after)


def _prune(db: Session, account_id: int, old: OldRows, after: int) -> int:
    # The markers go in first, so they take seqs past every row: SQLite would hand out the
    # deleted ones again if the newest were gone, and replays would skip the reused seqs.
    markers = db.scalars(
        insert(_changes).returning(_changes.c.seq, sort_by_parameter_order=True),
        [
            {
                "account_id": account_id,
                "collection": collection,
                "collection_id": collection_id,
                "face_id": last,
                "op": ChangeOp.PRUNED,
            }
            for (collection, collection_id), last in old.ends.items()
        ],
    ).all()
    # Each collection's earlier marker goes: the new one reaches further.
    db.execute(
        _EARLIER_MARKER,
        [
            {"account_id": account_id, "collection": key[0], "collection_id": key[1], "seq": seq}
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
