"""Facesets: named sets of faces for /face/search. A face may be in many facesets."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.db.models import Account, Face, Faceset, FacesetFace
from app.services import changes
from app.services.accounts import lock_account
from app.services.common import (
    MembershipResult,
    check_quota,
    find_owned,
    normalise_id,
    usable_faces,
)


def face_count(db: Session, faceset_id: int) -> int:
    return (
        db.scalar(
            select(func.count())
            .select_from(FacesetFace)
            .where(FacesetFace.faceset_id == faceset_id)
        )
        or 0
    )


def face_public_ids(db: Session, faceset_id: int) -> list[str]:
    return list(
        db.scalars(
            select(Face.public_id)
            .join(FacesetFace, FacesetFace.face_id == Face.id)
            .where(FacesetFace.faceset_id == faceset_id)
            .order_by(FacesetFace.added_at, Face.id)
        )
    )


def _attach(db: Session, account: Account, faceset: Faceset, faces: list[Face]) -> tuple[int, int]:
    """Add the faces not yet in; returns (how many were new, members after).

    Members are counted once, for the quota, and the total follows from it: a count reads
    every member (about 16 ms at a million).
    """
    present = set(
        db.scalars(
            select(FacesetFace.face_id).where(
                FacesetFace.faceset_id == faceset.id,
                FacesetFace.face_id.in_([face.id for face in faces]),
            )
        )
    )
    new = [face.id for face in faces if face.id not in present]
    members = face_count(db, faceset.id) + len(new)
    check_quota(account, "faces_per_faceset", members)
    db.add_all(FacesetFace(faceset_id=faceset.id, face_id=face_id) for face_id in new)
    db.flush()
    changes.record(db, account.id, "faceset", faceset.id, new, "add")
    return len(new), members


def create(
    db: Session, account: Account, name: str, user_data: str | None, face_ids: list[str]
) -> tuple[Faceset, int]:
    lock_account(db, account.id)
    faces = usable_faces(db, account.id, face_ids)
    existing = db.scalar(
        select(func.count()).select_from(Faceset).where(Faceset.account_id == account.id)
    )
    check_quota(account, "facesets", (existing or 0) + 1)
    faceset = Faceset(account_id=account.id, name=name, user_data=user_data)
    db.add(faceset)
    db.flush()
    _attach(db, account, faceset, faces)
    return faceset, len(faces)


def delete_faceset(db: Session, account: Account, public_id: str | None) -> None:
    lock_account(db, account.id)
    faceset = find_owned(db, Faceset, account.id, public_id, "INVALID_FACESET")
    changes.record_drop(db, account.id, "faceset", faceset.id)
    db.execute(delete(FacesetFace).where(FacesetFace.faceset_id == faceset.id))
    db.execute(delete(Faceset).where(Faceset.id == faceset.id))


def add_faces(
    db: Session, account: Account, public_id: str | None, face_ids: list[str]
) -> MembershipResult:
    lock_account(db, account.id)
    faceset = find_owned(db, Faceset, account.id, public_id, "INVALID_FACESET")
    added, members = _attach(db, account, faceset, usable_faces(db, account.id, face_ids))
    return MembershipResult(faceset.public_id, faceset.name, members, added)


def remove_faces(
    db: Session, account: Account, public_id: str | None, face_ids: list[str]
) -> MembershipResult:
    lock_account(db, account.id)
    faceset = find_owned(db, Faceset, account.id, public_id, "INVALID_FACESET")
    members = list(
        db.scalars(
            select(FacesetFace.face_id)
            .join(Face, Face.id == FacesetFace.face_id)
            .where(
                FacesetFace.faceset_id == faceset.id,
                Face.public_id.in_([normalise_id(face_id) for face_id in face_ids]),
            )
        )
    )
    db.execute(
        delete(FacesetFace).where(
            FacesetFace.faceset_id == faceset.id, FacesetFace.face_id.in_(members)
        )
    )
    changes.record(db, account.id, "faceset", faceset.id, members, "remove")
    return MembershipResult(
        faceset.public_id, faceset.name, face_count(db, faceset.id), len(members)
    )
