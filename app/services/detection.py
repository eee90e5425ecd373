"""/face/detection as a use case: get the bytes, decode, analyse, remember the image and faces."""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import metrics
from app.config import get_settings
from app.db.models import Account, Face, FaceThumbnail, Image
from app.errors import invalid_argument
from app.media.decode import DecodedImage, decode_image
from app.vision.pipeline import DetectedFace, FaceAnalyzer
from app.vision.thumbnail import face_thumbnail

# Image and face ids live this long; a face in a person or faceset outlives it (see purge).
ID_LIFETIME = timedelta(days=5)
ROTATE_NAMES = {90: "cw90", 180: "cw180", 270: "cw270"}

# Without batching (FACESRV_INFERENCE_BATCH=1): the models already use every core, so analyses
# run one at a time. Measured on the 2-core box
# (100 CelebA photos, 4 client threads in-process, 11 interleaved rounds under a load of 4.5-6
# from other work): this lock 26.6-27.8 img/s median (best 32.2), a 2-slot semaphore 28.7-29.9
# (best 34.1), the semaphore with 1 intra-op thread per session 20.9-28.7 (best 32.6); within
# the noise, so the lock stays: it bounds memory and keeps each request's latency lowest.
_inference_lock = threading.Lock()


@lru_cache(maxsize=1)
def get_analyzer() -> FaceAnalyzer:
    settings = get_settings()
    return FaceAnalyzer.load(
        settings.model_manifest,
        settings.models_dir,
        batch=settings.inference_batch,
        attractive=settings.attractive,
    )


@dataclass(frozen=True)
class Detection:
    image: Image
    faces: list[Face]
    rotate: str | None


@dataclass(frozen=True)
class Analysis:
    decoded: DecodedImage
    rgb: np.ndarray  # upright, after EXIF and auto-rotation
    turned: int  # clockwise degrees auto_rotate applied
    faces: list[DetectedFace]
    # One JPEG crop per face (FACESRV_THUMBNAILS), made here with the other pixel work: made in
    # `store`, inside the write transaction, 36 faces of a crowd photo held SQLite's write lock
    # long enough to stall every other account's writes (tests/test_fairness.py caught it).
    thumbnails: list[bytes] | None

    def only_face(self, index: int) -> Analysis:
        """This analysis down to one of its faces (the one a person is enrolled with), its
        thumbnail kept beside it."""
        thumbnails = None if self.thumbnails is None else [self.thumbnails[index]]
        return replace(self, faces=[self.faces[index]], thumbnails=thumbnails)


def image_source(file: bytes | None, url: str | None) -> bytes | str:
    """The upload's bytes, or the url to download (under the SSRF rules of app.media.fetch).

    An empty `url` is no url: HTML forms, Swagger UI's among them, send every field, empty or not.
    """
    url = url or None
    if (file is None) == (url is None):
        raise invalid_argument("must specify 'file' or 'url' argument")
    return file if file is not None else url


def _rotate(rgb: np.ndarray, clockwise: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(rgb, k=-(clockwise // 90)))


def analyse(data: bytes, *, attributes: bool, emotions: bool, auto_rotate: bool) -> Analysis:
    """Pixels to faces, outside any database transaction (this is the slow part)."""
    decoded = decode_image(data)
    rgb, turned = decoded.rgb, 0
    analyzer = get_analyzer()
    with nullcontext() if analyzer.shares_calls else _inference_lock:
        if auto_rotate:
            turned = analyzer.upright_rotation(rgb)
            if turned:
                rgb = _rotate(rgb, turned)
        faces = analyzer.analyze(rgb, attributes=attributes, emotions=emotions)
    metrics.FACES_DETECTED.inc(len(faces))
    thumbnails = None
    if get_settings().thumbnails:
        thumbnails = [face_thumbnail(rgb, face.box) for face in faces]
    return Analysis(decoded, rgb, turned, faces, thumbnails)


def _face_row(
    account_id: int, image: Image, face: DetectedFace, expires_at: datetime, model: str
) -> Face:
    left, top, right, bottom = (int(round(float(v))) for v in face.box)
    return Face(
        account_id=account_id,
        image_id=image.id,
        rect_left=left,
        rect_top=top,
        rect_right=right,
        rect_bottom=bottom,
        eye_dist=face.eye_dist,
        landmarks21=np.round(face.landmarks21.astype(np.float64), 6).tolist(),
        landmarks106=np.round(face.landmarks106.astype(np.float64), 6).tolist(),
        attributes=face.attributes or None,
        emotions=face.emotions or None,
        embedding=np.asarray(face.embedding, dtype=np.float32).tobytes(),
        embedding_model=model,
        expires_at=expires_at,
    )


def store(
    db: Session,
    account: Account,
    analysis: Analysis,
    data: bytes,
    user_data: str | None,
    source_url: str | None = None,
) -> Detection:
    """Remember the image (and the url it came from) and its faces, each with the thumbnail
    `analyse` made (unless FACESRV_THUMBNAILS is off); ids expire after ID_LIFETIME."""
    height, width = analysis.rgb.shape[:2]
    expires_at = datetime.now(UTC) + ID_LIFETIME
    image = Image(
        account_id=account.id,
        width=width,
        height=height,
        user_data=user_data,
        exif_orientation=analysis.decoded.exif_orientation,
        data=data if get_settings().keep_images else None,
        source_url=source_url,
        expires_at=expires_at,
    )
    db.add(image)
    db.flush()
    # The analyser that made the embeddings names their model (what `facesrv reembed` reads).
    model = get_analyzer().manifest.models["recognition"].identity
    rows = [_face_row(account.id, image, face, expires_at, model) for face in analysis.faces]
    db.add_all(rows)
    db.flush()
    if analysis.thumbnails is not None:
        db.add_all(
            FaceThumbnail(face_id=row.id, jpeg=jpeg)
            for row, jpeg in zip(rows, analysis.thumbnails, strict=True)
        )
        db.flush()
    return Detection(image, rows, ROTATE_NAMES.get(analysis.turned))


def find_image(db: Session, account_id: int, public_id: str | None) -> Image | None:
    if not public_id:
        return None
    return db.scalar(
        select(Image).where(
            Image.public_id == public_id.strip().lower(),
            Image.account_id == account_id,
            Image.expires_at > datetime.now(UTC),
        )
    )


def faces_of_image(db: Session, image_id: int) -> list[Face]:
    """The image's faces; they share its 5-day lifetime, so a valid image has valid faces."""
    return list(db.scalars(select(Face).where(Face.image_id == image_id).order_by(Face.id)))
