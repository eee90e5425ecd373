"""/face/detection."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api import fields
from app.api.analysis import analysed
from app.api.fields import Form
from app.db.models import Account
from app.db.session import session_scope
from app.dialects.sensetime.auth import CallerDep, operations
from app.dialects.sensetime.presenters import detection_face
from app.services import detection
from app.services.detection import Analysis, Detection

router = APIRouter()
operation = operations(router)

DETECTION = Form(
    [
        fields.image("file", "the photo (JPG, PNG, BMP, GIF, TIFF, WebP); this or `url`"),
        fields.text("url", "an http(s) address the server fetches the photo from; or `file`"),
        fields.flag("landmarks106", "1: the 106 landmarks of each face"),
        fields.flag("attributes", "1: age, gender and the other attributes of each face"),
        fields.flag("emotions", "1: the expression scores of each face"),
        fields.flag("auto_rotate", "1: find the upright orientation from the faces"),
        fields.user_data(),
    ],
    description="Find the faces in a photo (uploaded or fetched): boxes, 21 landmarks, quality "
    "and, when asked, 106 landmarks, attributes and expressions. Ids last 5 days.",
)


def _store(account: Account, analysis: Analysis, data: bytes, user_data: str | None) -> Detection:
    with session_scope() as db:
        return detection.store(db, account, analysis, data, user_data)


@operation.post("/face/detection", DETECTION)
async def face_detection(caller: CallerDep) -> dict:
    """Async so that the download and the analysis wait for their fair pools without a thread."""
    args = DETECTION.read(caller.params)
    account = caller.account
    want_landmarks106 = args["landmarks106"]
    want_attributes = args["attributes"]
    want_emotions = args["emotions"]
    source = detection.image_source(args["file"], args["url"])
    data, analysis = await analysed(
        account.id,
        source,
        attributes=want_attributes,
        emotions=want_emotions,
        auto_rotate=args["auto_rotate"],
    )
    result = await run_in_threadpool(_store, account, analysis, data, args["user_data"])
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
