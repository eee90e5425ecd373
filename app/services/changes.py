"""The change log that keeps every worker's vector indexes in step with the store.

Services call these inside the transaction that changes a membership, after `lock_account`, so
the log row commits (or rolls back) with the change itself. See `app.db.models.IndexChange`.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.db.models import GroupMember, IndexChange


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
