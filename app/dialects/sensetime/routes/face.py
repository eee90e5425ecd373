"""/face/detection."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api.analysis import analysed
from app.db.models import Account
from app.db.session import session_scope
from app.dialects.sensetime.auth import CallerDep
from app.dialects.sensetime.presenters import detection_face
from app.services import detection
from app.services.detection import Analysis, Detection

router = APIRouter()


def _store(account: Account, analysis: Analysis, data: bytes, user_data: str | None) -> Detection:
    with session_scope() as db:
        return detection.store(db, account, analysis, data, user_data)


@router.post("/face/detection")
async def face_detection(caller: CallerDep) -> dict:
    """Async so that the download and the analysis wait for their fair pools without a thread."""
    params = caller.params
    account = caller.account
    want_landmarks106 = params.flag("landmarks106")
    want_attributes = params.flag("attributes")
    want_emotions = params.flag("emotions")
    auto_rotate = params.flag("auto_rotate")
    user_data = params.user_data()
    source = detection.image_source(params.file("file"), params.text("url"))
    data, analysis = await analysed(
        account.id,
        source,
        attributes=want_attributes,
        emotions=want_emotions,
        auto_rotate=auto_rotate,
    )
    result = await run_in_threadpool(_store, account, analysis, data, user_data)
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
