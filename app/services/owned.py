"""What an account owns: lookups scoped to the caller, so another tenant's id is as unknown as a
made-up one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TypeVar

from sqlalchemy import Select, and_, bindparam, exists, or_, select
from sqlalchemy.orm import Session

from app.db.models import Face, Faceset, FacesetFace, Group, Image, Person
from app.errors import bad_request

Entity = TypeVar("Entity", Person, Group, Faceset)


@dataclass(frozen=True)
class Key:
    """An entity named by a client-chosen id (Tencent's `person_id`, Alibaba's `personId`).

    An entity made through a door without client ids (SenseTime) has no key; such a door finds
    it by its public id instead, so what one door made the others can use.
    """

    value: str


Ref = str | Key  # a public id, or a key


def handle_of(entity: Person | Group | Faceset) -> str:
    """How a door with client-chosen ids names the entity: its key, else its public id."""
    return entity.key if entity.key is not None else entity.public_id


def normalise_id(public_id: str) -> str:
    return public_id.strip().lower()


# The lookups below run on every request: their statements are built once, since building
# (and keying for SQLAlchemy's cache) a statement costs about as much as running it on SQLite.


@cache
def _owned_by_public_id(model: type[Entity]) -> Select[tuple[Entity]]:
    return select(model).where(
        model.public_id == bindparam("public_id"), model.account_id == bindparam("account_id")
    )


@cache
def _owned_by_key(model: type[Entity]) -> Select[tuple[Entity]]:
    handle = bindparam("handle")
    named = or_(model.key == handle, and_(model.key.is_(None), model.public_id == handle))
    return select(model).where(named, model.account_id == bindparam("account_id"))


_USABLE_FACES = select(Face).where(
    Face.public_id.in_(bindparam("public_ids", expanding=True)),
    Face.account_id == bindparam("account_id"),
    Face.expires_at > bindparam("now"),
)


def find_owned(
    db: Session, model: type[Entity], account_id: int, ref: Ref | None, status: str
) -> Entity:
    """The caller's entity with this public id or key; another account's is as unknown as a
    made-up one. Keys are case-sensitive, as the vendors that have them treat them."""
    if isinstance(ref, Key):
        entity = db.scalar(_owned_by_key(model), {"handle": ref.value, "account_id": account_id})
        shown = ref.value
    else:
        if not ref:
            raise bad_request(status, f"{model.__tablename__[:-1]} id is missing")
        entity = db.scalar(
            _owned_by_public_id(model),
            {"public_id": normalise_id(ref), "account_id": account_id},
        )
        shown = ref
    if entity is None:
        raise bad_request(status, f"no such id: {shown}")
    return entity


def usable_faces(db: Session, account_id: int, public_ids: list[str]) -> list[Face]:
    """Faces the caller may use in an operation: its own and unexpired; all or nothing.

    Past its 5 days a face that joined a person or faceset keeps matching there, but the seed
    lets its id be used for removal only, so it is refused here.
    """
    wanted = list(dict.fromkeys(normalise_id(face_id) for face_id in public_ids))
    parameters = {"public_ids": wanted, "account_id": account_id, "now": datetime.now(UTC)}
    found = {face.public_id: face for face in db.scalars(_USABLE_FACES, parameters)}
    missing = [face_id for face_id in wanted if face_id not in found]
    if missing:
        raise bad_request("INVALID_FACE", f"invalid face_id: {', '.join(missing[:5])}")
    return [found[face_id] for face_id in wanted]


def owned_persons(db: Session, account_id: int, public_ids: list[str]) -> list[Person]:
    """All or nothing: one unknown id fails the call."""
    wanted = list(dict.fromkeys(normalise_id(person_id) for person_id in public_ids))
    query = select(Person).where(Person.public_id.in_(wanted), Person.account_id == account_id)
    found = {person.public_id: person for person in db.scalars(query)}
    missing = [person_id for person_id in wanted if person_id not in found]
    if missing:
        raise bad_request("INVALID_PERSON", f"invalid person_id: {', '.join(missing[:5])}")
    return [found[person_id] for person_id in wanted]


def held_or_usable_faces(db: Session, account_id: int, row_ids: list[int]) -> list[Face]:
    """The caller's faces with these row ids that are still valid: unexpired, or kept by the
    person or faceset they joined (an enrolled face outlives the 5 days of a detection)."""
    if not row_ids:
        return []
    in_faceset = exists(select(FacesetFace.face_id).where(FacesetFace.face_id == Face.id))
    query = select(Face).where(
        Face.id.in_(row_ids),
        Face.account_id == account_id,
        or_(Face.person_id.is_not(None), Face.expires_at > datetime.now(UTC), in_faceset),
    )
    found = {face.id: face for face in db.scalars(query)}
    return [found[row_id] for row_id in dict.fromkeys(row_ids) if row_id in found]


def face_sources(db: Session, account_id: int, row_ids: list[int]) -> dict[int, str | None]:
    """For the caller's valid faces among `row_ids`: the url each one's image came from."""
    faces = held_or_usable_faces(db, account_id, row_ids)
    query = select(Image.id, Image.source_url).where(
        Image.id.in_([face.image_id for face in faces if face.image_id is not None])
    )
    sources = dict(db.execute(query).all())
    return {face.id: sources.get(face.image_id) for face in faces}
