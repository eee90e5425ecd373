"""Persons, groups and facesets: one implementation of their life cycle, for every dialect.

Each kind is a `KindSpec`: its model, its member storage, its quota names and the status its
unknown ids get. Every write below runs the same steps in the same order, inside
`account_write` (the account lock is the transaction's first statement):

    find the entity -> resolve the members (all or nothing) -> check the quota -> write the rows
    -> log the index changes

and this module is the only writer of the change log for memberships, so no path can change a
member without the indexes following. The three member storages differ in one way each:

- a person's faces are a column on the face: a face joining a person leaves its previous one;
- a group's persons and a faceset's faces are rows of a link table (`LinkedMembers`); a
  group's index holds the faces of its persons, so a person's own changes reach every group
  the person is in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, func, null, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import Account, Face, Faceset, FacesetFace, Group, GroupMember, Person
from app.db.session import session_scope
from app.domain import ChangeOp, Kind
from app.errors import ApiError, bad_request, invalid_argument
from app.index import changelog
from app.index.changelog import CollectionKey
from app.services.accounts import account_write
from app.services.owned import Ref, find_owned, normalise_id, owned_persons, usable_faces

Entity = Person | Group | Faceset
Member = Face | Person


@dataclass(frozen=True)
class MemberRef:
    """A member as the info endpoints show it: faces have no name or key."""

    row_id: int
    public_id: str
    name: str | None = None
    key: str | None = None

    @property
    def handle(self) -> str:
        """Its name at a door with client-chosen ids (see `owned.handle_of`)."""
        return self.key if self.key is not None else self.public_id


@dataclass(frozen=True)
class Delta:
    """Members that joined or left one entity: what the change log is written from."""

    kind: Kind
    owner_id: int
    member_ids: list[int]
    op: ChangeOp


class MemberStore(Protocol):
    """Where one kind keeps its members, as rows; no quota, no change log."""

    def resolve(self, db: Session, account_id: int, public_ids: list[str]) -> list[Member]: ...

    def count(self, db: Session, owner_id: int) -> int: ...

    def absent(self, db: Session, owner_id: int, members: list[Member]) -> list[Member]: ...

    def attach(self, db: Session, owner_id: int, new: list[Member]) -> list[Delta]: ...

    def named(self, db: Session, owner_id: int, public_ids: list[str]) -> list[int]: ...

    def detach(self, db: Session, owner_id: int, member_ids: list[int]) -> None: ...

    def all_ids(self, db: Session, owner_id: int) -> list[int]: ...

    def listing(self, db: Session, owner_id: int) -> list[MemberRef]: ...


class PersonFaces:
    """A face belongs to at most one person: the membership is `faces.person_id`."""

    def resolve(self, db: Session, account_id: int, public_ids: list[str]) -> list[Member]:
        return list(usable_faces(db, account_id, public_ids))

    def count(self, db: Session, owner_id: int) -> int:
        query = select(func.count()).select_from(Face).where(Face.person_id == owner_id)
        return db.scalar(query) or 0

    def absent(self, db: Session, owner_id: int, members: list[Member]) -> list[Member]:
        return [face for face in members if face.person_id != owner_id]

    def attach(self, db: Session, owner_id: int, new: list[Member]) -> list[Delta]:
        """Moves each face from the person that had it, which the log must say too."""
        deltas = []
        for previous in dict.fromkeys(face.person_id for face in new if face.person_id):
            moved = [face.id for face in new if face.person_id == previous]
            deltas.append(Delta(Kind.PERSON, previous, moved, ChangeOp.REMOVE))
        for face in new:
            face.person_id = owner_id
        db.flush()
        return [*deltas, Delta(Kind.PERSON, owner_id, [face.id for face in new], ChangeOp.ADD)]

    def named(self, db: Session, owner_id: int, public_ids: list[str]) -> list[int]:
        wanted = [normalise_id(face_id) for face_id in public_ids]
        query = select(Face.id).where(Face.person_id == owner_id, Face.public_id.in_(wanted))
        return list(db.scalars(query))

    def detach(self, db: Session, owner_id: int, member_ids: list[int]) -> None:
        db.execute(update(Face).where(Face.id.in_(member_ids)).values(person_id=None))

    def all_ids(self, db: Session, owner_id: int) -> list[int]:
        return list(db.scalars(select(Face.id).where(Face.person_id == owner_id)))

    def listing(self, db: Session, owner_id: int) -> list[MemberRef]:
        query = select(Face.id, Face.public_id).where(Face.person_id == owner_id).order_by(Face.id)
        return [MemberRef(row_id, public_id) for row_id, public_id in db.execute(query)]


class LinkedMembers:
    """Members held by rows of a link table: a group's persons, a faceset's faces.

    A member may belong to many owners, so joining is an insert and leaving a delete.
    """

    def __init__(
        self,
        kind: Kind,
        link: type[GroupMember | FacesetFace],
        owner_column: str,
        member_model: type[Person | Face],
        member_column: str,
        resolve: Callable[[Session, int, list[str]], Sequence[Member]],
    ) -> None:
        self.kind = kind
        self.link = link
        self.owner = getattr(link, owner_column)
        self.member = getattr(link, member_column)
        self.owner_column, self.member_column = owner_column, member_column
        self.model = member_model
        self._resolve = resolve

    def resolve(self, db: Session, account_id: int, public_ids: list[str]) -> list[Member]:
        return list(self._resolve(db, account_id, public_ids))

    def count(self, db: Session, owner_id: int) -> int:
        query = select(func.count()).select_from(self.link).where(self.owner == owner_id)
        return db.scalar(query) or 0

    def absent(self, db: Session, owner_id: int, members: list[Member]) -> list[Member]:
        query = select(self.member).where(
            self.owner == owner_id, self.member.in_([member.id for member in members])
        )
        present = set(db.scalars(query))
        return [member for member in members if member.id not in present]

    def attach(self, db: Session, owner_id: int, new: list[Member]) -> list[Delta]:
        db.add_all(
            self.link(**{self.owner_column: owner_id, self.member_column: member.id})
            for member in new
        )
        db.flush()
        return [Delta(self.kind, owner_id, [member.id for member in new], ChangeOp.ADD)]

    def named(self, db: Session, owner_id: int, public_ids: list[str]) -> list[int]:
        wanted = [normalise_id(public_id) for public_id in public_ids]
        query = (
            select(self.member)
            .join(self.model, self.model.id == self.member)
            .where(self.owner == owner_id, self.model.public_id.in_(wanted))
        )
        return list(db.scalars(query))

    def detach(self, db: Session, owner_id: int, member_ids: list[int]) -> None:
        db.execute(delete(self.link).where(self.owner == owner_id, self.member.in_(member_ids)))

    def all_ids(self, db: Session, owner_id: int) -> list[int]:
        return list(db.scalars(select(self.member).where(self.owner == owner_id)))

    def listing(self, db: Session, owner_id: int) -> list[MemberRef]:
        named = self.model is Person
        query = (
            select(
                self.model.id,
                self.model.public_id,
                self.model.name if named else null(),
                self.model.key if named else null(),
            )
            .join(self.link, self.member == self.model.id)
            .where(self.owner == owner_id)
            .order_by(self.link.added_at, self.model.id)
        )
        return [MemberRef(*row) for row in db.execute(query)]


@dataclass(frozen=True)
class KindSpec:
    kind: Kind
    model: type[Entity]
    members: MemberStore
    invalid_status: str  # the status an unknown id of this kind gets
    quota: str  # how many of this kind an account may have
    member_quota: str  # how many members one may have


PERSONS = KindSpec(
    Kind.PERSON, Person, PersonFaces(), "INVALID_PERSON", "persons", "faces_per_person"
)
GROUP_PERSONS = LinkedMembers(
    Kind.GROUP, GroupMember, "group_id", Person, "person_id", owned_persons
)
FACESET_FACES = LinkedMembers(
    Kind.FACESET, FacesetFace, "faceset_id", Face, "face_id", usable_faces
)
GROUPS = KindSpec(Kind.GROUP, Group, GROUP_PERSONS, "INVALID_GROUP", "groups", "persons_per_group")
FACESETS = KindSpec(
    Kind.FACESET, Faceset, FACESET_FACES, "INVALID_FACESET", "facesets", "faces_per_faceset"
)


@dataclass(frozen=True)
class MembershipResult:
    """What an add or remove call reports: the entity and its counts."""

    public_id: str
    name: str
    count: int  # members after the change
    changed_ids: list[int]  # row ids of the members added or removed by it

    @property
    def changed(self) -> int:
        return len(self.changed_ids)


class QuotaExceeded(ApiError):
    """QUOTA_EXCEEDED, naming the quota: dialects with a code per limit tell them apart."""

    def __init__(self, quota: str, limit: int) -> None:
        super().__init__(400, "QUOTA_EXCEEDED", f"quota '{quota}' exceeded: limit {limit}")
        self.quota = quota


def check_quota(account: Account, name: str, would_have: int) -> None:
    limit = getattr(account, f"quota_{name}")
    if would_have > limit:
        raise QuotaExceeded(name, limit)


def _log(db: Session, account_id: int, deltas: Sequence[Delta]) -> None:
    """Membership deltas as index changes: the one place they are written for memberships."""
    for delta in deltas:
        if not delta.member_ids:
            continue
        if delta.kind is Kind.FACESET:
            key = CollectionKey(Kind.FACESET, delta.owner_id)
            changelog.record(db, account_id, key, delta.member_ids, delta.op)
        elif delta.kind is Kind.GROUP:  # the group's index holds the faces of its persons
            faces = select(Face.id).where(Face.person_id.in_(delta.member_ids))
            key = CollectionKey(Kind.GROUP, delta.owner_id)
            changelog.record(db, account_id, key, db.scalars(faces), delta.op)
        else:  # a person's faces are in the index of every group the person is in
            groups = select(GroupMember.group_id).where(GroupMember.person_id == delta.owner_id)
            for group_id in db.scalars(groups).all():
                key = CollectionKey(Kind.GROUP, group_id)
                changelog.record(db, account_id, key, delta.member_ids, delta.op)


def _attach(
    db: Session, account: Account, spec: KindSpec, entity: Entity, members: list[Member]
) -> tuple[list[int], int]:
    """Count against the quota, attach and log; returns (row ids of the new members, members
    after).

    Members are counted once: a count reads every member (about 16 ms at a million).
    """
    store = spec.members
    new = store.absent(db, entity.id, members)
    after = store.count(db, entity.id) + len(new)
    check_quota(account, spec.member_quota, after)
    _log(db, account.id, store.attach(db, entity.id, new))
    return [member.id for member in new], after


def create(
    account: Account,
    spec: KindSpec,
    name: str,
    user_data: str | None,
    member_ids: list[str],
    key: str | None = None,
) -> tuple[Entity, int]:
    """A new entity with its first members; returns it and how many members it got.

    `key` is a client-chosen id (Tencent, Alibaba, Huawei name their entities themselves),
    unique per account and kind; a taken key is refused with `DUPLICATE_KEY`.
    """
    with account_write(account.id) as db:
        model = spec.model
        existing = db.scalar(
            select(func.count()).select_from(model).where(model.account_id == account.id)
        )
        if key is not None and db.scalar(
            select(model.id).where(model.account_id == account.id, model.key == key)
        ):
            raise bad_request("DUPLICATE_KEY", f"{spec.kind} '{key}' already exists")
        members = spec.members.resolve(db, account.id, member_ids)
        check_quota(account, spec.quota, (existing or 0) + 1)
        entity = model(account_id=account.id, name=name, user_data=user_data, key=key)
        db.add(entity)
        try:
            db.flush()
        except IntegrityError as error:  # only a key taken by a concurrent create gets here
            raise bad_request("DUPLICATE_KEY", f"{spec.kind} '{key}' already exists") from error
        _attach(db, account, spec, entity, members)
        return entity, len(members)


def delete_entity(account: Account, spec: KindSpec, ref: Ref | None) -> None:
    with account_write(account.id) as db:
        entity = find_owned(db, spec.model, account.id, ref, spec.invalid_status)
        member_ids = spec.members.all_ids(db, entity.id)
        spec.members.detach(db, entity.id, member_ids)
        if spec.kind is Kind.PERSON:  # its faces leave every group the person was in
            _log(db, account.id, [Delta(spec.kind, entity.id, member_ids, ChangeOp.REMOVE)])
        else:  # its index goes as a whole
            key = CollectionKey(spec.kind, entity.id)
            changelog.record(db, account.id, key, [0], ChangeOp.DROP)
        db.execute(delete(spec.model).where(spec.model.id == entity.id))


def add_members(
    account: Account, spec: KindSpec, ref: Ref | None, member_ids: list[str]
) -> MembershipResult:
    with account_write(account.id) as db:
        entity = find_owned(db, spec.model, account.id, ref, spec.invalid_status)
        members = spec.members.resolve(db, account.id, member_ids)
        added, after = _attach(db, account, spec, entity, members)
        return MembershipResult(entity.public_id, entity.name, after, added)


def remove_members(
    account: Account, spec: KindSpec, ref: Ref | None, member_ids: list[str]
) -> MembershipResult:
    """Ids that are not members are ignored, as the seed says; expired members can go too."""
    with account_write(account.id) as db:
        entity = find_owned(db, spec.model, account.id, ref, spec.invalid_status)
        gone = spec.members.named(db, entity.id, member_ids)
        spec.members.detach(db, entity.id, gone)
        _log(db, account.id, [Delta(spec.kind, entity.id, gone, ChangeOp.REMOVE)])
        count = spec.members.count(db, entity.id)
        return MembershipResult(entity.public_id, entity.name, count, gone)


def change(
    account: Account,
    spec: KindSpec,
    ref: Ref | None,
    name: str | None,
    user_data: str | None,
) -> None:
    """Rename and/or replace the user data."""
    if name is None and user_data is None:
        raise invalid_argument("must specify 'name' or 'user_data' argument")
    with account_write(account.id) as db:
        entity = find_owned(db, spec.model, account.id, ref, spec.invalid_status)
        if name is not None:
            entity.name = name
        if user_data is not None:
            entity.user_data = user_data


def describe(account: Account, spec: KindSpec, ref: Ref | None) -> tuple[Entity, list[MemberRef]]:
    """The entity and its members, in the order they joined."""
    with session_scope() as db:
        entity = find_owned(db, spec.model, account.id, ref, spec.invalid_status)
        return entity, spec.members.listing(db, entity.id)


def groups_of(account: Account, person_ref: Ref | None) -> list[Group]:
    """The groups a person is in, in the order it joined them."""
    with session_scope() as db:
        person = find_owned(db, Person, account.id, person_ref, PERSONS.invalid_status)
        query = (
            select(Group)
            .join(GroupMember, GroupMember.group_id == Group.id)
            .where(GroupMember.person_id == person.id)
            .order_by(GroupMember.added_at, Group.id)
        )
        return list(db.scalars(query))


def entities(account: Account, spec: KindSpec, limit: int | None, offset: int) -> list[Entity]:
    """All of the account's entities of a kind in creation order; a page only when asked for."""
    model = spec.model
    query = select(model).where(model.account_id == account.id).order_by(model.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    with session_scope() as db:
        return list(db.scalars(query))
