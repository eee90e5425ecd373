"""/person/*, /group/* and /faceset/*: parse, call the service, format in the seed's key order."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import CallerDep
from app.api.params import Params
from app.db.models import Faceset, Group, Person
from app.db.session import session_scope
from app.errors import bad_request
from app.services import facesets, groups, persons
from app.services.common import MembershipResult, change_entity

router = APIRouter()

OK = {"status": "OK"}


def _ids(params: Params, name: str, empty_status: str) -> list[str]:
    ids = params.id_list(name)
    if not ids:
        raise bad_request(empty_status, f"argument '{name}' is empty")
    return ids


def _membership(
    id_key: str, result: MembershipResult, count_key: str, changed_key: str, with_name: bool
) -> dict:
    body: dict = {"status": "OK", id_key: result.public_id}
    if with_name:
        body["name"] = result.name
    body[count_key] = result.count
    body[changed_key] = result.changed
    return body


def _change(
    caller: CallerDep, model: type[Person | Group | Faceset], id_key: str, status: str
) -> dict:
    params = caller.params
    with session_scope() as db:
        change_entity(
            db,
            caller.account.id,
            model,
            params.text(id_key),
            status,
            params.label(),
            params.user_data(),
        )
    return OK


# --- persons -------------------------------------------------------------------------------


@router.post("/person/create")
def person_create(caller: CallerDep) -> dict:
    params = caller.params
    name = params.label(required=True)
    with session_scope() as db:
        person, count = persons.create(
            db, caller.account, name, params.user_data(), params.id_list("face_id") or []
        )
    body: dict = {"status": "OK", "person_id": person.public_id}
    if count:
        body["face_count"] = count
    return body


@router.post("/person/delete")
def person_delete(caller: CallerDep) -> dict:
    with session_scope() as db:
        persons.delete_person(db, caller.account, caller.params.text("person_id"))
    return OK


@router.post("/person/add_face")
def person_add_face(caller: CallerDep) -> dict:
    params = caller.params
    person_id = params.text("person_id")
    face_ids = _ids(params, "face_id", "EMPTY_FACE_ID")
    with session_scope() as db:
        result = persons.add_faces(db, caller.account, person_id, face_ids)
    return _membership("person_id", result, "face_count", "added_count", with_name=False)


@router.post("/person/remove_face")
def person_remove_face(caller: CallerDep) -> dict:
    params = caller.params
    person_id = params.text("person_id")
    face_ids = _ids(params, "face_id", "EMPTY_FACE_ID")
    with session_scope() as db:
        result = persons.remove_faces(db, caller.account, person_id, face_ids)
    return _membership("person_id", result, "face_count", "removed_count", with_name=False)


@router.post("/person/change")
def person_change(caller: CallerDep) -> dict:
    return _change(caller, Person, "person_id", "INVALID_PERSON")


# --- groups --------------------------------------------------------------------------------


@router.post("/group/create")
def group_create(caller: CallerDep) -> dict:
    params = caller.params
    name = params.label(required=True)
    with session_scope() as db:
        group, count = groups.create(
            db, caller.account, name, params.user_data(), params.id_list("person_id") or []
        )
    body: dict = {"status": "OK", "group_id": group.public_id, "name": group.name}
    if count:
        body["person_count"] = count
    return body


@router.post("/group/delete")
def group_delete(caller: CallerDep) -> dict:
    with session_scope() as db:
        groups.delete_group(db, caller.account, caller.params.text("group_id"))
    return OK


@router.post("/group/add_person")
def group_add_person(caller: CallerDep) -> dict:
    params = caller.params
    group_id = params.text("group_id")
    person_ids = _ids(params, "person_id", "EMPTY_PERSON_ID")
    with session_scope() as db:
        result = groups.add_persons(db, caller.account, group_id, person_ids)
    return _membership("group_id", result, "person_count", "added_count", with_name=True)


@router.post("/group/remove_person")
def group_remove_person(caller: CallerDep) -> dict:
    params = caller.params
    group_id = params.text("group_id")
    person_ids = _ids(params, "person_id", "EMPTY_PERSON_ID")
    with session_scope() as db:
        result = groups.remove_persons(db, caller.account, group_id, person_ids)
    return _membership("group_id", result, "person_count", "removed_count", with_name=True)


@router.post("/group/change")
def group_change(caller: CallerDep) -> dict:
    return _change(caller, Group, "group_id", "INVALID_GROUP")


# --- facesets ------------------------------------------------------------------------------


@router.post("/faceset/create")
def faceset_create(caller: CallerDep) -> dict:
    params = caller.params
    name = params.label(required=True)
    with session_scope() as db:
        faceset, count = facesets.create(
            db, caller.account, name, params.user_data(), params.id_list("face_id") or []
        )
    body: dict = {"status": "OK", "faceset_id": faceset.public_id, "name": faceset.name}
    if count:
        body["face_count"] = count
    return body


@router.post("/faceset/delete")
def faceset_delete(caller: CallerDep) -> dict:
    with session_scope() as db:
        facesets.delete_faceset(db, caller.account, caller.params.text("faceset_id"))
    return OK


@router.post("/faceset/add_face")
def faceset_add_face(caller: CallerDep) -> dict:
    params = caller.params
    faceset_id = params.text("faceset_id")
    face_ids = _ids(params, "face_id", "EMPTY_FACE_ID")
    with session_scope() as db:
        result = facesets.add_faces(db, caller.account, faceset_id, face_ids)
    return _membership("faceset_id", result, "face_count", "added_count", with_name=True)


@router.post("/faceset/remove_face")
def faceset_remove_face(caller: CallerDep) -> dict:
    params = caller.params
    faceset_id = params.text("faceset_id")
    face_ids = _ids(params, "face_id", "EMPTY_FACE_ID")
    with session_scope() as db:
        result = facesets.remove_faces(db, caller.account, faceset_id, face_ids)
    return _membership("faceset_id", result, "face_count", "removed_count", with_name=True)


@router.post("/faceset/change")
def faceset_change(caller: CallerDep) -> dict:
    return _change(caller, Faceset, "faceset_id", "INVALID_FACESET")
