"""Pieces the person, group and faceset services share: ownership lookups, quotas, listings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TypeVar

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from app.db.models import Account, Face, Faceset, Group, Person
from app.errors import ApiError, bad_request, invalid_argument
from app.services.accounts import lock_account

Entity = TypeVar("Entity", Person, Group, Faceset)


@dataclass(frozen=True)
class MembershipResult:
    """What an add or remove call reports: the collection and its counts."""

    public_id: str
    name: str
    count: int  # members after the change
    changed: int  # members added or removed by it


def normalise_id(public_id: str) -> str:
    return public_id.strip().lower()


# The lookups below run on every request: their statements are built once, since building
# (and keying for SQLAlchemy's cache) a statement costs about as much as running it on SQLite.


@cache
def _owned_by_public_id(model: type[Entity]) -> Select[tuple[Entity]]:
    return select(model).where(
        model.public_id == bindparam("public_id"), model.account_id == bindparam("account_id")
    )


_USABLE_FACES = select(Face).where(
    Face.public_id.in_(bindparam("public_ids", expanding=True)),
    Face.account_id == bindparam("account_id"),
    Face.expires_at > bindparam("now"),
)


def find_owned(
    db: Session, model: type[Entity], account_id: int, public_id: str | None, status: str
) -> Entity:
    """The caller's entity with this id; another account's id is as unknown as a made-up one."""
    if not public_id:
        raise bad_request(status, f"{model.__tablename__[:-1]} id is missing")
    entity = db.scalar(
        _owned_by_public_id(model),
        {"public_id": normalise_id(public_id), "account_id": account_id},
    )
    if entity is None:
        raise bad_request(status, f"no such id: {public_id}")
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


def check_quota(account: Account, name: str, would_have: int) -> None:
    limit = getattr(account, f"quota_{name}")
    if would_have > limit:
        raise ApiError(400, "QUOTA_EXCEEDED", f"quota '{name}' exceeded: limit {limit}")


def change_entity(
    db: Session,
    account_id: int,
    model: type[Entity],
    public_id: str | None,
    status: str,
    name: str | None,
    user_data: str | None,
) -> None:
    """The three `/*/change` endpoints: rename and/or replace the user data."""
    if name is None and user_data is None:
        raise invalid_argument("must specify 'name' or 'user_data' argument")
    lock_account(db, account_id)
    entity = find_owned(db, model, account_id, public_id, status)
    if name is not None:
        entity.name = name
    if user_data is not None:
        entity.user_data = user_data


def listing(
    db: Session, model: type[Entity], account_id: int, limit: int | None, offset: int
) -> list[Entity]:
    """All of the caller's entities in creation order; `limit`/`offset` only when asked for."""
    query = select(model).where(model.account_id == account_id).order_by(model.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(db.scalars(query))
