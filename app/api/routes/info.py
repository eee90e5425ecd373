"""/info/* endpoints about the account itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter

from app.api.deps import CallerDep
from app.api.params import Params
from app.api.presenters import info_face, info_image
from app.db.models import Faceset, Group, Image, Person, as_utc
from app.db.session import session_scope
from app.errors import bad_request
from app.services import detection, facesets, groups, persons, tasks
from app.services.accounts import quota_of, usage_of
from app.services.common import find_owned, listing, usable_faces

router = APIRouter()
Endpoint = TypeVar("Endpoint", bound=Callable[..., dict])


def get_or_post(path: str) -> Callable[[Endpoint], Endpoint]:
    """Both methods the seed allows, as two routes so each has its own OpenAPI operation id."""

    def register(endpoint: Endpoint) -> Endpoint:
        return router.get(path)(router.post(path)(endpoint))

    return register


@get_or_post("/info/api")
def info_api(caller: CallerDep) -> dict:
    account = caller.account
    body: dict = {"status": "OK", "rate_limit": account.rate_limit}
    if account.expires_at is not None:
        body["expiration_date"] = as_utc(account.expires_at).isoformat(timespec="seconds")
    with session_scope() as db:
        usage = usage_of(db, account.id)
    body["quota"] = quota_of(account)
    body["usage"] = usage
    return body


def _page(params: Params) -> tuple[int | None, int]:
    """Optional `limit`/`offset` for large deployments; absent means the seed's "everything"."""
    limit = params.integer("limit", default=1, lo=1, hi=1_000_000) if params.has("limit") else None
    return limit, params.integer("offset", default=0, lo=0, hi=2**31 - 1)


def _list(caller: CallerDep, model: type[Person | Group | Faceset], key: str, id_key: str) -> dict:
    limit, offset = _page(caller.params)
    with session_scope() as db:
        rows = listing(db, model, caller.account.id, limit, offset)
    return {"status": "OK", key: [{id_key: row.public_id, "name": row.name} for row in rows]}


@get_or_post("/info/list_persons")
def list_persons(caller: CallerDep) -> dict:
    return _list(caller, Person, "persons", "person_id")


@get_or_post("/info/list_groups")
def list_groups(caller: CallerDep) -> dict:
    return _list(caller, Group, "groups", "group_id")


@get_or_post("/info/list_facesets")
def list_facesets(caller: CallerDep) -> dict:
    return _list(caller, Faceset, "facesets", "faceset_id")


@get_or_post("/info/person")
def info_person(caller: CallerDep) -> dict:
    with session_scope() as db:
        person = find_owned(
            db, Person, caller.account.id, caller.params.text("person_id"), "INVALID_PERSON"
        )
        face_ids = persons.face_public_ids(db, person.id)
    return {
        "status": "OK",
        "person_id": person.public_id,
        "name": person.name,
        "user_data": person.user_data or "",
        "face_ids": face_ids,
    }


@get_or_post("/info/group")
def info_group(caller: CallerDep) -> dict:
    with session_scope() as db:
        group = find_owned(
            db, Group, caller.account.id, caller.params.text("group_id"), "INVALID_GROUP"
        )
        members = groups.members(db, group.id)
    return {
        "status": "OK",
        "group_id": group.public_id,
        "name": group.name,
        "user_data": group.user_data or "",
        "persons": [{"person_id": person.public_id, "name": person.name} for person in members],
    }


@get_or_post("/info/faceset")
def info_faceset(caller: CallerDep) -> dict:
    with session_scope() as db:
        faceset = find_owned(
            db, Faceset, caller.account.id, caller.params.text("faceset_id"), "INVALID_FACESET"
        )
        face_ids = facesets.face_public_ids(db, faceset.id)
    return {
        "status": "OK",
        "faceset_id": faceset.public_id,
        "name": faceset.name,
        "user_data": faceset.user_data or "",
        "face_ids": face_ids,
    }


@get_or_post("/info/image")
def info_image_endpoint(caller: CallerDep) -> dict:
    params = caller.params
    with_faces = params.flag("with_faces")
    with session_scope() as db:
        image = detection.find_image(db, caller.account.id, params.text("image_id"))
        if image is None:
            raise bad_request("INVALID_IMAGE", "invalid image_id")
        faces = detection.faces_of_image(db, image.id) if with_faces else []
    body = {"status": "OK", **info_image(image)}
    if with_faces:
        body["faces"] = [info_face(face) for face in faces]
    return body


@get_or_post("/info/face")
def info_face_endpoint(caller: CallerDep) -> dict:
    params = caller.params
    with_image = params.flag("with_image")
    face_id = params.text("face_id")
    with session_scope() as db:
        (face,) = usable_faces(db, caller.account.id, [face_id or ""])
        image = db.get(Image, face.image_id) if with_image and face.image_id else None
    body = {"status": "OK", **info_face(face)}
    if image is not None:
        body["image"] = info_image(image)
    return body


@get_or_post("/info/task")
def info_task(caller: CallerDep) -> dict:
    with session_scope() as db:
        task = tasks.find(db, caller.account.id, caller.params.text("task_id", required=True))
    if task is None:
        raise bad_request("INVALID_TASK", "invalid task_id")
    body: dict = {"status": "OK", "task_id": task.public_id, "task_status": task.status}
    if task.status in ("done", "failed") and task.result is not None:
        body["result"] = task.result
    return body
