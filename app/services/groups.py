"""Groups: sets of persons for /face/identification. A person may be in many groups."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.db.models import Account, Face, Group, GroupMember, Person
from app.errors import bad_request
from app.services import changes
from app.services.accounts import lock_account
from app.services.common import MembershipResult, check_quota, find_owned, normalise_id


def person_count(db: Session, group_id: int) -> int:
    return (
        db.scalar(
            select(func.count()).select_from(GroupMember).where(GroupMember.group_id == group_id)
        )
        or 0
    )


def members(db: Session, group_id: int) -> list[Person]:
    return list(
        db.scalars(
            select(Person)
            .join(GroupMember, GroupMember.person_id == Person.id)
            .where(GroupMember.group_id == group_id)
            .order_by(GroupMember.added_at, Person.id)
        )
    )


def owned_persons(db: Session, account_id: int, public_ids: list[str]) -> list[Person]:
    """All or nothing: one unknown id fails the call."""
    wanted = list(dict.fromkeys(normalise_id(person_id) for person_id in public_ids))
    found = {
        person.public_id: person
        for person in db.scalars(
            select(Person).where(Person.public_id.in_(wanted), Person.account_id == account_id)
        )
    }
    missing = [person_id for person_id in wanted if person_id not in found]
    if missing:
        raise bad_request("INVALID_PERSON", f"invalid person_id: {', '.join(missing[:5])}")
    return [found[person_id] for person_id in wanted]


def _faces_of(db: Session, person_id: int) -> list[int]:
    return list(db.scalars(select(Face.id).where(Face.person_id == person_id)))


def _attach(db: Session, account: Account, group: Group, persons: list[Person]) -> tuple[int, int]:
    """Add the persons not yet in; returns (how many were new, members after), counted once."""
    present = set(
        db.scalars(
            select(GroupMember.person_id).where(
                GroupMember.group_id == group.id,
                GroupMember.person_id.in_([person.id for person in persons]),
            )
        )
    )
    new = [person for person in persons if person.id not in present]
    members = person_count(db, group.id) + len(new)
    check_quota(account, "persons_per_group", members)
    db.add_all(GroupMember(group_id=group.id, person_id=person.id) for person in new)
    db.flush()
    for person in new:
        changes.record(db, account.id, "group", group.id, _faces_of(db, person.id), "add")
    return len(new), members


def create(
    db: Session, account: Account, name: str, user_data: str | None, person_ids: list[str]
) -> tuple[Group, int]:
    lock_account(db, account.id)
    persons = owned_persons(db, account.id, person_ids)
    existing = db.scalar(
        select(func.count()).select_from(Group).where(Group.account_id == account.id)
    )
    check_quota(account, "groups", (existing or 0) + 1)
    group = Group(account_id=account.id, name=name, user_data=user_data)
    db.add(group)
    db.flush()
    _attach(db, account, group, persons)
    return group, len(persons)


def delete_group(db: Session, account: Account, public_id: str | None) -> None:
    lock_account(db, account.id)
    group = find_owned(db, Group, account.id, public_id, "INVALID_GROUP")
    changes.record_drop(db, account.id, "group", group.id)
    db.execute(delete(GroupMember).where(GroupMember.group_id == group.id))
    db.execute(delete(Group).where(Group.id == group.id))


def add_persons(
    db: Session, account: Account, public_id: str | None, person_ids: list[str]
) -> MembershipResult:
    lock_account(db, account.id)
    group = find_owned(db, Group, account.id, public_id, "INVALID_GROUP")
    added, members = _attach(db, account, group, owned_persons(db, account.id, person_ids))
    return MembershipResult(group.public_id, group.name, members, added)


def remove_persons(
    db: Session, account: Account, public_id: str | None, person_ids: list[str]
) -> MembershipResult:
    lock_account(db, account.id)
    group = find_owned(db, Group, account.id, public_id, "INVALID_GROUP")
    gone = list(
        db.scalars(
            select(GroupMember.person_id)
            .join(Person, Person.id == GroupMember.person_id)
            .where(
                GroupMember.group_id == group.id,
                Person.public_id.in_([normalise_id(person_id) for person_id in person_ids]),
            )
        )
    )
    for person_id in gone:
        changes.record(db, account.id, "group", group.id, _faces_of(db, person_id), "remove")
    db.execute(
        delete(GroupMember).where(GroupMember.group_id == group.id, GroupMember.person_id.in_(gone))
    )
    return MembershipResult(group.public_id, group.name, person_count(db, group.id), len(gone))
