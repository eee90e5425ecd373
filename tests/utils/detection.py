"""Detection test helpers: photos, calls, the seed's shapes and how to check them."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import update

from app.config import get_settings
from app.db.models import Face
from app.db.models import Image as ImageRow
from app.db.session import session_scope
from tests.conftest import SHARED_DATA, Credentials, require_research_photos
from tests.utils.api import HEX32

CELEBA_IMAGES = SHARED_DATA / "celeba-dev" / "images"
ONE_FACE = "000724.jpg"  # a one-face CelebA dev photo
TOP_KEYS = ["image_id", "width", "height", "faces", "status", "request_id"]
FACE_KEYS = ["face_id", "rect", "eye_dist", "landmarks21"]
RECT_KEYS = ["left", "top", "right", "bottom"]
# The seed's order, then the live service's extras (wire-compat.md, "Beyond the seed").
ATTRIBUTE_KEYS = [
    "age",
    "gender",
    "attractive",
    "eyeglass",
    "sunglass",
    "smile",
    "eye_open",
    "mouth_open",
]
EMOTION_KEYS = [
    "angry",
    "calm",
    "disgust",
    "happy",
    "sad",
    "surprised",
    "confused",
    "squint",
    "screaming",
    "scared",
]
MUST_SPECIFY = "must specify 'file' or 'url' argument"


# --- helpers -----------------------------------------------------------------------------------


def model_photo(name: str) -> bytes:
    """players.jpg, gdp.jpg or yaoming.jpg, as the operator installed them."""
    return (get_settings().models_dir / name).read_bytes()


def celeba_photo(name: str = ONE_FACE) -> bytes:
    require_research_photos("celeba-dev", "images", name)
    return (CELEBA_IMAGES / name).read_bytes()


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def detect(
    client: TestClient,
    creds: Credentials,
    data: bytes,
    *,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
    form: dict[str, str] | None = None,
    **params: object,
) -> httpx.Response:
    """POST the bytes as the multipart `file` part; extra params go to the query string."""
    return client.post(
        "/face/detection",
        params={**creds.query, **{key: str(value) for key, value in params.items()}},
        data=form or {},
        files={"file": (filename, data, content_type)},
    )


def detect_url(
    client: TestClient, creds: Credentials, url: str, **params: object
) -> httpx.Response:
    return client.post(
        "/face/detection",
        params={**creds.query, **{key: str(value) for key, value in params.items()}},
        data={"url": url},
    )


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_detection_face(face: dict, width: int, height: int) -> None:
    """The seed's per-face types and a box that lies in the image with landmarks inside it."""
    assert HEX32.match(face["face_id"])
    rect = face["rect"]
    assert list(rect) == RECT_KEYS
    assert all(is_int(value) for value in rect.values()), rect
    assert -2 <= rect["left"] < rect["right"] <= width + 2
    assert -2 <= rect["top"] < rect["bottom"] <= height + 2
    box_width = rect["right"] - rect["left"]
    assert is_int(face["eye_dist"]) and 0 < face["eye_dist"] < box_width
    points = face["landmarks21"]
    assert len(points) == 21
    margin = 0.25 * box_width
    for point in points:
        assert isinstance(point, list) and len(point) == 2 and all(map(is_number, point))
        assert rect["left"] - margin <= point[0] <= rect["right"] + margin
        assert rect["top"] - margin <= point[1] <= rect["bottom"] + margin


def rect_of(face: dict) -> np.ndarray:
    return np.array([face["rect"][key] for key in RECT_KEYS], dtype=float)


def set_expired(model: type[Face] | type[ImageRow], public_id: str) -> None:
    with session_scope() as db:
        result = db.execute(
            update(model)
            .where(model.public_id == public_id)
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        assert result.rowcount == 1
