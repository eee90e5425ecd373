"""Tencent's response shapes: the `{"data", "code", "message"}` envelope, in the seed's key order.

Confidence is on the vendor's 0-100 scale: 100 x the calibrated confidence of the core
(app.services.confidence), so Tencent thresholds read as false-accept rates the same way the
SenseTime seed's do: 40 -> 1e-1, 50 -> 1e-2, 60 -> 1e-3, 70 -> 1e-4, 80 -> 1e-5, 90 -> 1e-6.
`ismatch` is true above 60 (1e-3), the core's same-person threshold.
"""

from __future__ import annotations

import math

from app.db.models import Face
from app.dialects.tencent.errors import Code, TencentError
from app.domain import Dialect
from app.services.face_ids import vendor_face_id


def ok(data: dict) -> dict:
    return {"data": data, "code": int(Code.OK), "message": "OK"}


def failure(error: TencentError) -> dict:
    return {"data": error.data, "code": int(error.code), "message": error.message}


def face_id(row_id: int) -> str:
    return str(vendor_face_id(Dialect.TENCENT, row_id))


def score(confidence: float) -> float:
    """The core's 0-1 confidence on Tencent's 0-100 scale."""
    return round(confidence * 100, 4)


def _roll(face: Face) -> int:
    """In-plane rotation of the line between the pupils, in degrees, positive when the face
    turns clockwise in the image: geometry, measured, not estimated."""
    (left_x, left_y), (right_x, right_y) = face.landmarks21[7], face.landmarks21[10]
    return int(round(math.degrees(math.atan2(right_y - left_y, right_x - left_x))))


def face_item(face: Face, *, beauty: bool = False) -> dict:
    """faceItem: the box, pose and attributes of one face, in the seed sample's order."""
    attributes = face.attributes or {}
    item: dict = {
        "face_id": face_id(face.id),
        "x": face.rect_left,
        "y": face.rect_top,
        "height": float(face.rect_bottom - face.rect_top),
        "width": float(face.rect_right - face.rect_left),
        "roll": _roll(face),
    }
    if attributes:
        item["age"] = attributes["age"]
        item["gender"] = attributes["gender"]
        item["glass"] = attributes.get("eyeglass", 0) >= 50 or attributes.get("sunglass", 0) >= 50
        item["expression"] = attributes.get("smile", 0)
        if beauty and "attractive" in attributes:
            item["beauty"] = attributes["attractive"]
    return item
