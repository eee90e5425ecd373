"""/person/*, /group/*, /faceset/* and their /info endpoints: one line each over `membership`.

`Door` says how SenseTime spells one kind on the wire (id key, member parameter, count key,
whether answers carry the name); the handlers below parse, call the service and format in the
seed's key order, the same for the three kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from fastapi import APIRouter

from app.api import fields
from app.api.fields import Args, Form
from app.dialects.sensetime.auth import Caller, CallerDep, operations
from app.errors import bad_request
from app.services import membership
from app.services.membership import FACESETS, GROUPS, PERSONS, KindSpec, MembershipResult

router = APIRouter()
operation = operations(router)

OK = {"status": "OK"}


@dataclass(frozen=True)
class Door:
    spec: KindSpec
    id_key: str  # "person_id"
    member_key: str  # the parameter naming members: "face_id" or "person_id"
    empty_status: str  # an empty member list
    count_key: str  # "face_count" or "person_count"
    members_key: str  # what /info/<kind> lists them as
    plural: str  # what /info/list_<kind>s lists entities as
    shows_name: bool  # create, add and remove answers carry the name (groups, facesets)

    @property
    def kind(self) -> str:
        return self.id_key.removesuffix("_id")

    def _entity(self) -> fields.Field:
        return fields.text(self.id_key, f"the {self.kind}", required=True)

    def _members(self, what: str) -> fields.Field:
        member = self.member_key.removesuffix("_id")
        return fields.ids(self.member_key, f"{member} ids {what}: a JSON array, comma-joined "
                          "or the key repeated")  # fmt: skip

    # What each operation on this kind takes (the parser reads these, OpenAPI lists them).
    @cached_property
    def create_form(self) -> Form:
        return Form([
            fields.label(f"the {self.kind}'s name", required=True),
            self._members("to start with"),
            fields.user_data(),
        ])  # fmt: skip

    @cached_property
    def entity_form(self) -> Form:
        return Form([self._entity()])

    @cached_property
    def members_form(self) -> Form:
        return Form([self._entity(), self._members("to add or remove")])

    @cached_property
    def change_form(self) -> Form:
        return Form([self._entity(), fields.label("a new name"), fields.user_data()])

    @cached_property
    def listing_form(self) -> Form:
        return Form([
            fields.integer("limit", "at most this many (default: all)", default=None, lo=1,
                           hi=1_000_000),
            fields.integer("offset", "skip this many first", default=0, lo=0, hi=2**31 - 1),
        ])  # fmt: skip


PERSON = Door(
    PERSONS, "person_id", "face_id", "EMPTY_FACE_ID", "face_count", "face_ids", "persons", False
)
GROUP = Door(
    GROUPS, "group_id", "person_id", "EMPTY_PERSON_ID", "person_count", "persons", "groups", True
)
FACESET = Door(
    FACESETS, "faceset_id", "face_id", "EMPTY_FACE_ID", "face_count", "face_ids", "facesets", True
)


def _members(args: Args, door: Door) -> list[str]:
    ids = args[door.member_key]
    if not ids:
        raise bad_request(door.empty_status, f"argument '{door.member_key}' is empty")
    return ids


def create(caller: Caller, door: Door) -> dict:
    args = door.create_form.read(caller.params)
    members = args[door.member_key] or []
    entity, count = membership.create(
        caller.account, door.spec, args["name"], args["user_data"], members
    )
    body: dict = {"status": "OK", door.id_key: entity.public_id}
    if door.shows_name:
        body["name"] = entity.name
    if count:
        body[door.count_key] = count
    return body


def delete(caller: Caller, door: Door) -> dict:
    args = door.entity_form.read(caller.params)
    membership.delete_entity(caller.account, door.spec, args[door.id_key])
    return OK


def _changed(door: Door, result: MembershipResult, changed_key: str) -> dict:
    body: dict = {"status": "OK", door.id_key: result.public_id}
    if door.shows_name:
        body["name"] = result.name
    body[door.count_key] = result.count
    body[changed_key] = result.changed
    return body


def add(caller: Caller, door: Door) -> dict:
    args = door.members_form.read(caller.params)
    result = membership.add_members(
        caller.account, door.spec, args[door.id_key], _members(args, door)
    )
    return _changed(door, result, "added_count")


def remove(caller: Caller, door: Door) -> dict:
    args = door.members_form.read(caller.params)
    result = membership.remove_members(
        caller.account, door.spec, args[door.id_key], _members(args, door)
    )
    return _changed(door, result, "removed_count")


def change(caller: Caller, door: Door) -> dict:
    args = door.change_form.read(caller.params)
    membership.change(caller.account, door.spec, args[door.id_key], args["name"], args["user_data"])
    return OK


def info(caller: Caller, door: Door) -> dict:
    args = door.entity_form.read(caller.params)
    entity, members = membership.describe(caller.account, door.spec, args[door.id_key])
    listed: list = (
        [{"person_id": member.public_id, "name": member.name} for member in members]
        if door is GROUP
        else [member.public_id for member in members]
    )
    return {
        "status": "OK",
        door.id_key: entity.public_id,
        "name": entity.name,
        "user_data": entity.user_data or "",
        door.members_key: listed,
    }


def listing(caller: Caller, door: Door) -> dict:
    """Optional `limit`/`offset` for large deployments; absent means the seed's "everything"."""
    args = door.listing_form.read(caller.params)
    rows = membership.entities(caller.account, door.spec, args["limit"], args["offset"])
    return {
        "status": "OK",
        door.plural: [{door.id_key: row.public_id, "name": row.name} for row in rows],
    }


# fmt: off
@operation.post("/person/create", PERSON.create_form)
def person_create(caller: CallerDep) -> dict: return create(caller, PERSON)
@operation.post("/person/delete", PERSON.entity_form)
def person_delete(caller: CallerDep) -> dict: return delete(caller, PERSON)
@operation.post("/person/add_face", PERSON.members_form)
def person_add_face(caller: CallerDep) -> dict: return add(caller, PERSON)
@operation.post("/person/remove_face", PERSON.members_form)
def person_remove_face(caller: CallerDep) -> dict: return remove(caller, PERSON)
@operation.post("/person/change", PERSON.change_form)
def person_change(caller: CallerDep) -> dict: return change(caller, PERSON)
@operation.get_or_post("/info/person", PERSON.entity_form)
def info_person(caller: CallerDep) -> dict: return info(caller, PERSON)
@operation.get_or_post("/info/list_persons", PERSON.listing_form)
def list_persons(caller: CallerDep) -> dict: return listing(caller, PERSON)

@operation.post("/group/create", GROUP.create_form)
def group_create(caller: CallerDep) -> dict: return create(caller, GROUP)
@operation.post("/group/delete", GROUP.entity_form)
def group_delete(caller: CallerDep) -> dict: return delete(caller, GROUP)
@operation.post("/group/add_person", GROUP.members_form)
def group_add_person(caller: CallerDep) -> dict: return add(caller, GROUP)
@operation.post("/group/remove_person", GROUP.members_form)
def group_remove_person(caller: CallerDep) -> dict: return remove(caller, GROUP)
@operation.post("/group/change", GROUP.change_form)
def group_change(caller: CallerDep) -> dict: return change(caller, GROUP)
@operation.get_or_post("/info/group", GROUP.entity_form)
def info_group(caller: CallerDep) -> dict: return info(caller, GROUP)
@operation.get_or_post("/info/list_groups", GROUP.listing_form)
def list_groups(caller: CallerDep) -> dict: return listing(caller, GROUP)

@operation.post("/faceset/create", FACESET.create_form)
def faceset_create(caller: CallerDep) -> dict: return create(caller, FACESET)
@operation.post("/faceset/delete", FACESET.entity_form)
def faceset_delete(caller: CallerDep) -> dict: return delete(caller, FACESET)
@operation.post("/faceset/add_face", FACESET.members_form)
def faceset_add_face(caller: CallerDep) -> dict: return add(caller, FACESET)
@operation.post("/faceset/remove_face", FACESET.members_form)
def faceset_remove_face(caller: CallerDep) -> dict: return remove(caller, FACESET)
@operation.post("/faceset/change", FACESET.change_form)
def faceset_change(caller: CallerDep) -> dict: return change(caller, FACESET)
@operation.get_or_post("/info/faceset", FACESET.entity_form)
def info_faceset(caller: CallerDep) -> dict: return info(caller, FACESET)
@operation.get_or_post("/info/list_facesets", FACESET.listing_form)
def list_facesets(caller: CallerDep) -> dict: return listing(caller, FACESET)
# fmt: on
