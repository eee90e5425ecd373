"""The change log that keeps every worker's vector indexes in step with the store.

Services call these inside the transaction that changes a membership, after `lock_account`, so
the log row commits (or rolls back) with the change itself. See `app.db.models.IndexChange`.

The log only has to reach back as far as the oldest index still catching up, so old rows are
pruned. Each collection pruned keeps one marker row (op `pruned`, `face_id` = the last seq
deleted): a worker index or snapshot that had not seen that far rebuilds from the store instead of
silently missing the deleted rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from app.db.models import GroupMember, IndexChange
from app.services.accounts import lock_account

PRUNED = "pruned"


def record(
    db: Session,
    account_id: int,
    collection: str,
    collection_id: int,
    face_ids: Iterable[int],
    op: str,
) -> None:
    rows = [
        {
            "account_id": account_id,
            "collection": collection,
            "collection_id": collection_id,
            "face_id": face_id,
            "op": op,
        }
        for face_id in face_ids
    ]
    if rows:
        db.execute(insert(IndexChange), rows)


def record_drop(db: Session, account_id: int, collection: str, collection_id: int) -> None:
    record(db, account_id, collection, collection_id, [0], "drop")


def groups_of_person(db: Session, person_id: int) -> list[int]:
    return list(db.scalars(select(GroupMember.group_id).where(GroupMember.person_id == person_id)))


def record_person_faces(
    db: Session, account_id: int, person_id: int, face_ids: list[int], op: str
) -> None:
    """A person's faces changed: every group the person is in follows."""
    for group_id in groups_of_person(db, person_id):
        record(db, account_id, "group", group_id, face_ids, op)


def accounts_with_old_changes(db: Session, older_than: datetime) -> list[int]:
    return list(
        db.scalars(
            select(IndexChange.account_id)
            .where(IndexChange.created_at < older_than, IndexChange.op != PRUNED)
            .distinct()
        )
    )


def prune(db: Session, account_id: int, older_than: datetime) -> int:
    """Delete the account's log rows older than `older_than`, marking each collection pruned.

    Runs as its own write transaction, under the account lock like every writer, so the markers
    take their place in the account's commit order. Returns the rows deleted.
    """
    lock_account(db, account_id)
    ends = db.execute(
        select(IndexChange.collection, IndexChange.collection_id, func.max(IndexChange.seq))
        .where(
            IndexChange.account_id == account_id,
            IndexChange.created_at < older_than,
            IndexChange.op != PRUNED,
        )
        .group_by(IndexChange.collection, IndexChange.collection_id)
    ).all()
    deleted = 0
    for collection, collection_id, last in ends:
        of_collection = (
            IndexChange.account_id == account_id,
            IndexChange.collection == collection,
            IndexChange.collection_id == collection_id,
        )
        # The marker goes in first, so it takes a seq past every row: SQLite would hand out
        # the deleted ones again if the newest were gone, and replays would skip the reused seqs.
        marker = db.scalar(
            insert(IndexChange)
            .values(
                account_id=account_id,
                collection=collection,
                collection_id=collection_id,
                face_id=last,
                op=PRUNED,
            )
            .returning(IndexChange.seq)
        )
        # Older markers go too: the new one reaches further.
        stale = (IndexChange.seq <= last) | (IndexChange.op == PRUNED)
        deleted += db.execute(
            delete(IndexChange).where(*of_collection, IndexChange.seq < marker, stale)
        ).rowcount
    return deleted
