"""/info/* endpoints about the account itself."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import fields
from app.api.fields import Form
from app.db.models import Image, as_utc
from app.db.session import session_scope
from app.dialects.sensetime.auth import CallerDep, operations
from app.dialects.sensetime.presenters import info_face, info_image
from app.domain import TaskStatus
from app.errors import bad_request
from app.services import detection, tasks
from app.services.accounts import quota_of, usage_of
from app.services.owned import usable_faces

router = APIRouter()
operation = operations(router)

INFO_IMAGE = Form(
    [
        fields.text("image_id", "the image, from /face/detection", required=True),
        fields.flag("with_faces", "1: the image's faces too"),
    ],
    description="An image detection stored: its size and, when asked, its faces.",
)
INFO_FACE = Form(
    [
        fields.text("face_id", "the face, from /face/detection", required=True),
        fields.flag("with_image", "1: the face's image too"),
    ],
    description="A face detection found: box, landmarks, attributes and, when asked, its image.",
)
INFO_TASK = Form(
    [fields.text("task_id", "the task an `async=1` call answered", required=True)],
    description="The status of a task and, once done, its result.",
)


@operation.get_or_post("/info/api")
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


@operation.get_or_post("/info/image", INFO_IMAGE)
def info_image_endpoint(caller: CallerDep) -> dict:
    args = INFO_IMAGE.read(caller.params)
    with_faces = args["with_faces"]
    with session_scope() as db:
        image = detection.find_image(db, caller.account.id, args["image_id"])
        if image is None:
            raise bad_request("INVALID_IMAGE", "invalid image_id")
        faces = detection.faces_of_image(db, image.id) if with_faces else []
    body = {"status": "OK", **info_image(image)}
    if with_faces:
        body["faces"] = [info_face(face) for face in faces]
    return body


@operation.get_or_post("/info/face", INFO_FACE)
def info_face_endpoint(caller: CallerDep) -> dict:
    args = INFO_FACE.read(caller.params)
    with_image = args["with_image"]
    with session_scope() as db:
        (face,) = usable_faces(db, caller.account.id, [args["face_id"]])
        image = db.get(Image, face.image_id) if with_image and face.image_id else None
    body = {"status": "OK", **info_face(face)}
    if image is not None:
        body["image"] = info_image(image)
    return body


@operation.get_or_post("/info/task", INFO_TASK)
def info_task(caller: CallerDep) -> dict:
    args = INFO_TASK.read(caller.params)
    with session_scope() as db:
        task = tasks.find(db, caller.account.id, args["task_id"])
    if task is None:
        raise bad_request("INVALID_TASK", "invalid task_id")
    body: dict = {"status": "OK", "task_id": task.public_id, "task_status": task.status}
    if task.status in (TaskStatus.DONE, TaskStatus.FAILED) and task.result is not None:
        body["result"] = task.result
    return body
