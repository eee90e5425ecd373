"""Persons: named owners of faces. A face belongs to at most one person."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.db.models import Account, Face, Person
from app.services import changes
from app.services.accounts import lock_account
from app.services.common import (
    MembershipResult,
    check_quota,
    find_owned,
    normalise_id,
    usable_faces,
)


def face_count(db: Session, person_id: int) -> int:
    return db.scalar(select(func.count()).select_from(Face).where(Face.person_id == person_id)) or 0


def face_public_ids(db: Session, person_id: int) -> list[str]:
    return list(
        db.scalars(select(Face.public_id).where(Face.person_id == person_id).order_by(Face.id))
    )


def _attach(db: Session, account: Account, person: Person, faces: list[Face]) -> tuple[int, int]:
    """Give `faces` to `person`, moving them from any other person.

    Returns (how many were new, faces after), counted once for the quota.
    """
    new = [face for face in faces if face.person_id != person.id]
    members = face_count(db, person.id) + len(new)
    check_quota(account, "faces_per_person", members)
    for previous_owner in {face.person_id for face in new if face.person_id is not None}:
        moved = [face.id for face in new if face.person_id == previous_owner]
        changes.record_person_faces(db, account.id, previous_owner, moved, "remove")
    for face in new:
        face.person_id = person.id
    db.flush()
    changes.record_person_faces(db, account.id, person.id, [face.id for face in new], "add")
    return len(new), members


def create(
    db: Session, account: Account, name: str, user_data: str | None, face_ids: list[str]
) -> tuple[Person, int]:
    lock_account(db, account.id)
    faces = usable_faces(db, account.id, face_ids)
    persons = db.scalar(
        select(func.count()).select_from(Person).where(Person.account_id == account.id)
    )
    check_quota(account, "persons", (persons or 0) + 1)
    person = Person(account_id=account.id, name=name, user_data=user_data)
    db.add(person)
    db.flush()
    _attach(db, account, person, faces)
    return person, len(faces)


def delete_person(db: Session, account: Account, public_id: str | None) -> None:
    lock_account(db, account.id)
    person = find_owned(db, Person, account.id, public_id, "INVALID_PERSON")
    face_ids = list(db.scalars(select(Face.id).where(Face.person_id == person.id)))
    changes.record_person_faces(db, account.id, person.id, face_ids, "remove")
    db.execute(update(Face).where(Face.person_id == person.id).values(person_id=None))
    db.execute(delete(Person).where(Person.id == person.id))


def add_faces(
    db: Session, account: Account, public_id: str | None, face_ids: list[str]
) -> MembershipResult:
    lock_account(db, account.id)
    person = find_owned(db, Person, account.id, public_id, "INVALID_PERSON")
    added, members = _attach(db, account, person, usable_faces(db, account.id, face_ids))
    return MembershipResult(person.public_id, person.name, members, added)


def remove_faces(
    db: Session, account: Account, public_id: str | None, face_ids: list[str]
) -> MembershipResult:
    """Unknown ids are ignored, as the seed says; expired member faces can still be removed."""
    lock_account(db, account.id)
    person = find_owned(db, Person, account.id, public_id, "INVALID_PERSON")
    members = list(
        db.scalars(
            select(Face.id).where(
                Face.person_id == person.id,
                Face.public_id.in_([normalise_id(face_id) for face_id in face_ids]),
            )
        )
    )
    changes.record_person_faces(db, account.id, person.id, members, "remove")
    db.execute(update(Face).where(Face.id.in_(members)).values(person_id=None))
    return MembershipResult(person.public_id, person.name, face_count(db, person.id), len(members))
