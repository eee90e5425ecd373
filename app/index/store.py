"""What the vector backend reads from the store: collections, their members' vectors, its id.

The store is the only source of truth; every copy of the vectors (a worker's FAISS index, a
snapshot, a Milvus collection) is built from these reads and kept current by the change log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Protocol

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.embeddings import served_column
from app.db.models import Face, Faceset, FacesetFace, Group, GroupMember, StoreIdentity
from app.domain import ChangeOp, Kind
from app.index.changelog import CollectionKey

EMBEDDING_DIM = 512
_TABLES: dict[Kind, type[Faceset] | type[Group]] = {Kind.FACESET: Faceset, Kind.GROUP: Group}


def _stack(rows: list) -> tuple[np.ndarray, np.ndarray]:
    """Ids and vectors of the rows that have an embedding (by the worker's model)."""
    rows = [row for row in rows if row[1] is not None]
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    if not rows:
        return ids, np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32)
    return ids, vectors.reshape(len(rows), -1)


def vectors_of(
    db: Session, face_ids: Iterable[int], model: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """The faces' ids and vectors by `model`; faces without one are left out."""
    rows = db.execute(
        select(Face.id, served_column(model)).where(Face.id.in_(list(face_ids)))
    ).all()
    return _stack(rows)


def members(db: Session, key: CollectionKey, model: str | None) -> tuple[np.ndarray, np.ndarray]:
    """A collection's face ids and vectors by `model`, as the store has them now."""
    if key.kind == Kind.FACESET:
        query = (
            select(Face.id, served_column(model))
            .join(FacesetFace, FacesetFace.face_id == Face.id)
            .where(FacesetFace.faceset_id == key.id)
        )
    else:
        query = (
            select(Face.id, served_column(model))
            .join(GroupMember, GroupMember.person_id == Face.person_id)
            .where(GroupMember.group_id == key.id)
        )
    return _stack(db.execute(query).all())


def collections_of(db: Session, account_id: int) -> list[tuple[CollectionKey, str]]:
    """The account's facesets and groups (key, public id): every collection it has vectors for."""
    return [
        (CollectionKey(kind, row_id), public_id)
        for kind, table in _TABLES.items()
        for row_id, public_id in db.execute(
            select(table.id, table.public_id)
            .where(table.account_id == account_id)
            .order_by(table.id)
        )
    ]


def store_id(db: Session) -> str:
    """This store's identity (32 hex digits), made with the schema; made here if it was lost
    (a table emptied by hand), by whichever process reads it first."""
    found = db.scalar(select(StoreIdentity.uuid).where(StoreIdentity.id == 1))
    if found is not None:
        return found
    try:
        with db.begin_nested():
            db.add(StoreIdentity(id=1, uuid=uuid.uuid4().hex))
    except IntegrityError:  # another process made it first
        pass
    return db.scalar(select(StoreIdentity.uuid).where(StoreIdentity.id == 1))


class Target(Protocol):
    """What a change is applied to: a worker's `VectorIndex`, or a collection in Milvus."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...


def apply_membership(
    db: Session, model: str | None, target: Target, op: ChangeOp, face_ids: list[int]
) -> None:
    """Apply an `add` (an upsert of the faces' current vectors) or a `remove` batch."""
    if op == ChangeOp.ADD:
        ids, vectors = vectors_of(db, face_ids, model)
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
