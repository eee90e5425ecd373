"""Faces and images as the seed prints them.

`/face/detection` sends numbers (rect integers, landmark floats) and nothing null, because one
client parses it with `ast.literal_eval`; `/info/image` and `/info/face` keep the seed's own
samples' types there: rect values and landmarks21 coordinates as strings. `attributes` and
`emotions` go out in the wire order clients index by, whatever order a stored row has.
"""

from __future__ import annotations

from app.db.models import Face, Image
from app.vision.attributes import ATTRIBUTE_KEYS
from app.vision.emotion import EMOTION_KEYS


def _ordered(values: dict[str, int] | None, keys: tuple[str, ...]) -> dict[str, int]:
    stored = values or {}
    return {key: stored[key] for key in keys if key in stored}


def _rect(face: Face, cast: type) -> dict:
    return {
        "left": cast(face.rect_left),
        "top": cast(face.rect_top),
        "right": cast(face.rect_right),
        "bottom": cast(face.rect_bottom),
    }


def detection_face(face: Face, *, landmarks106: bool, attributes: bool, emotions: bool) -> dict:
    body: dict = {
        "face_id": face.public_id,
        "rect": _rect(face, int),
        "eye_dist": face.eye_dist,
        "landmarks21": face.landmarks21,
    }
    if landmarks106:
        body["landmarks106"] = face.landmarks106
    if attributes:
        body["attributes"] = _ordered(face.attributes, ATTRIBUTE_KEYS)
    if emotions:
        body["emotions"] = _ordered(face.emotions, EMOTION_KEYS)
    return body


def info_face(face: Face) -> dict:
    body: dict = {
        "face_id": face.public_id,
        "rect": _rect(face, str),
        "landmarks21": [[f"{x:.6f}", f"{y:.6f}"] for x, y in face.landmarks21],
        "eye_dist": face.eye_dist,
        "landmarks106": face.landmarks106,
    }
    if face.attributes:
        body["attributes"] = _ordered(face.attributes, ATTRIBUTE_KEYS)
    if face.emotions:
        body["emotions"] = _ordered(face.emotions, EMOTION_KEYS)
    return body


def info_image(image: Image) -> dict:
    return {
        "image_id": image.public_id,
        "width": image.width,
        "height": image.height,
        "user_data": image.user_data or "",
    }
