"""/person/*, /group/*, /faceset/* and their /info endpoints: one line each over `membership`.

`Door` says how SenseTime spells one kind on the wire (id key, member parameter, count key,
whether answers carry the name); the handlers below parse, call the service and format in the
seed's key order, the same for the three kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from app.api.params import Params
from app.api.routing import get_or_post
from app.dialects.sensetime.auth import Caller, CallerDep
from app.errors import bad_request
from app.services import membership
from app.services.membership import FACESETS, GROUPS, PERSONS, KindSpec, MembershipResult

router = APIRouter()

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


PERSON = Door(
    PERSONS, "person_id", "face_id", "EMPTY_FACE_ID", "face_count", "face_ids", "persons", False
)
GROUP = Door(
    GROUPS, "group_id", "person_id", "EMPTY_PERSON_ID", "person_count", "persons", "groups", True
)
FACESET = Door(
    FACESETS, "faceset_id", "face_id", "EMPTY_FACE_ID", "face_count", "face_ids", "facesets", True
)


def _members(params: Params, door: Door) -> list[str]:
    ids = params.id_list(door.member_key)
    if not ids:
        raise bad_request(door.empty_status, f"argument '{door.member_key}' is empty")
    return ids


def create(caller: Caller, door: Door) -> dict:
    params = caller.params
    name = params.label(required=True)
    members = params.id_list(door.member_key) or []
    entity, count = membership.create(caller.account, door.spec, name, params.user_data(), members)
    body: dict = {"status": "OK", door.id_key: entity.public_id}
    if door.shows_name:
        body["name"] = entity.name
    if count:
        body[door.count_key] = count
    return body


def delete(caller: Caller, door: Door) -> dict:
    membership.delete_entity(caller.account, door.spec, caller.params.text(door.id_key))
    return OK


def _changed(door: Door, result: MembershipResult, changed_key: str) -> dict:
    body: dict = {"status": "OK", door.id_key: result.public_id}
    if door.shows_name:
        body["name"] = result.name
    body[door.count_key] = result.count
    body[changed_key] = result.changed
    return body


def add(caller: Caller, door: Door) -> dict:
    public_id, members = caller.params.text(door.id_key), _members(caller.params, door)
    result = membership.add_members(caller.account, door.spec, public_id, members)
    return _changed(door, result, "added_count")


def remove(caller: Caller, door: Door) -> dict:
    public_id, members = caller.params.text(door.id_key), _members(caller.params, door)
    result = membership.remove_members(caller.account, door.spec, public_id, members)
    return _changed(door, result, "removed_count")


def change(caller: Caller, door: Door) -> dict:
    params = caller.params
    membership.change(
        caller.account, door.spec, params.text(door.id_key), params.label(), params.user_data()
    )
    return OK


def info(caller: Caller, door: Door) -> dict:
    entity, members = membership.describe(
        caller.account, door.spec, caller.params.text(door.id_key)
    )
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
    params = caller.params
    limit = params.integer("limit", default=1, lo=1, hi=1_000_000) if params.has("limit") else None
    offset = params.integer("offset", default=0, lo=0, hi=2**31 - 1)
    rows = membership.entities(caller.account, door.spec, limit, offset)
    return {
        "status": "OK",
        door.plural: [{door.id_key: row.public_id, "name": row.name} for row in rows],
    }


# fmt: off
@router.post("/person/create")
def person_create(caller: CallerDep) -> dict: return create(caller, PERSON)
@router.post("/person/delete")
def person_delete(caller: CallerDep) -> dict: return delete(caller, PERSON)
@router.post("/person/add_face")
def person_add_face(caller: CallerDep) -> dict: return add(caller, PERSON)
@router.post("/person/remove_face")
def person_remove_face(caller: CallerDep) -> dict: return remove(caller, PERSON)
@router.post("/person/change")
def person_change(caller: CallerDep) -> dict: return change(caller, PERSON)
@get_or_post(router, "/info/person")
def info_person(caller: CallerDep) -> dict: return info(caller, PERSON)
@get_or_post(router, "/info/list_persons")
def list_persons(caller: CallerDep) -> dict: return listing(caller, PERSON)

@router.post("/group/create")
def group_create(caller: CallerDep) -> dict: return create(caller, GROUP)
@router.post("/group/delete")
def group_delete(caller: CallerDep) -> dict: return delete(caller, GROUP)
@router.post("/group/add_person")
def group_add_person(caller: CallerDep) -> dict: return add(caller, GROUP)
@router.post("/group/remove_person")
def group_remove_person(caller: CallerDep) -> dict: return remove(caller, GROUP)
@router.post("/group/change")
def group_change(caller: CallerDep) -> dict: return change(caller, GROUP)
@get_or_post(router, "/info/group")
def info_group(caller: CallerDep) -> dict: return info(caller, GROUP)
@get_or_post(router, "/info/list_groups")
def list_groups(caller: CallerDep) -> dict: return listing(caller, GROUP)

@router.post("/faceset/create")
def faceset_create(caller: CallerDep) -> dict: return create(caller, FACESET)
@router.post("/faceset/delete")
def faceset_delete(caller: CallerDep) -> dict: return delete(caller, FACESET)
@router.post("/faceset/add_face")
def faceset_add_face(caller: CallerDep) -> dict: return add(caller, FACESET)
@router.post("/faceset/remove_face")
def faceset_remove_face(caller: CallerDep) -> dict: return remove(caller, FACESET)
@router.post("/faceset/change")
def faceset_change(caller: CallerDep) -> dict: return change(caller, FACESET)
@get_or_post(router, "/info/faceset")
def info_faceset(caller: CallerDep) -> dict: return info(caller, FACESET)
@get_or_post(router, "/info/list_facesets")
def list_facesets(caller: CallerDep) -> dict: return listing(caller, FACESET)
# fmt: on
