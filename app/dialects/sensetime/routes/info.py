"""/info/* endpoints about the account itself."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.routing import get_or_post
from app.db.models import Image, as_utc
from app.db.session import session_scope
from app.dialects.sensetime.auth import CallerDep
from app.dialects.sensetime.presenters import info_face, info_image
from app.domain import TaskStatus
from app.errors import bad_request
from app.services import detection, tasks
from app.services.accounts import quota_of, usage_of
from app.services.owned import usable_faces

router = APIRouter()


@get_or_post(router, "/info/api")
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


@get_or_post(router, "/info/image")
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


@get_or_post(router, "/info/face")
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


@get_or_post(router, "/info/task")
def info_task(caller: CallerDep) -> dict:
    with session_scope() as db:
        task = tasks.find(db, caller.account.id, caller.params.text("task_id", required=True))
    if task is None:
        raise bad_request("INVALID_TASK", "invalid task_id")
    body: dict = {"status": "OK", "task_id": task.public_id, "task_status": task.status}
    if task.status in (TaskStatus.DONE, TaskStatus.FAILED) and task.result is not None:
        body["result"] = task.result
    return body
