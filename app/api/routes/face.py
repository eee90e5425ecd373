"""/face/detection."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import CallerDep
from app.api.presenters import detection_face
from app.db.session import session_scope
from app.services import detection

router = APIRouter()


@router.post("/face/detection")
def face_detection(caller: CallerDep) -> dict:
    params = caller.params
    want_landmarks106 = params.flag("landmarks106")
    want_attributes = params.flag("attributes")
    want_emotions = params.flag("emotions")
    auto_rotate = params.flag("auto_rotate")
    user_data = params.text("user_data")
    data = detection.image_bytes(params.file("file"), params.text("url"))
    analysis = detection.analyse(
        data, attributes=want_attributes, emotions=want_emotions, auto_rotate=auto_rotate
    )
    with session_scope() as db:
        result = detection.store(db, caller.account, analysis, data, user_data)
    body: dict = {"image_id": result.image.public_id}
    if result.image.exif_orientation is not None:
        body["exif_orientation"] = result.image.exif_orientation
    if result.rotate:
        body["rotate"] = result.rotate
    body["width"] = result.image.width
    body["height"] = result.image.height
    body["faces"] = [
        detection_face(
            face,
            landmarks106=want_landmarks106,
            attributes=want_attributes,
            emotions=want_emotions,
        )
        for face in result.faces
    ]
    body["status"] = "OK"
    return body
