"""Face thumbnails for the web console: the small crop `detection.store` kept with each face."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Face, FaceThumbnail
from app.errors import ApiError
from app.services.owned import normalise_id


def thumbnail_of(db: Session, account_id: int, face_id: str) -> bytes | None:
    """The JPEG of the account's face `face_id` (its SenseTime id), or None when the face was
    stored without one (FACESRV_THUMBNAILS off, or stored before thumbnails existed).

    Another account's face is as unknown as a made-up id: 404. A face held by a person or
    faceset outlives its 5-day id (it is still listed there), so expiry does not hide its
    thumbnail; a purged face takes its thumbnail with it (ON DELETE CASCADE).
    """
    found = db.execute(
        select(Face.id, FaceThumbnail.jpeg)
        .outerjoin(FaceThumbnail, FaceThumbnail.face_id == Face.id)
        .where(Face.public_id == normalise_id(face_id), Face.account_id == account_id)
    ).first()
    if found is None:
        raise ApiError(404, "NOT_FOUND", "no such face_id")
    return found.jpeg
