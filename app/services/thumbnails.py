"""Face thumbnails for the web console: the small crop `detection.store` kept with each face."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Face, FaceThumbnail
from app.services.owned import normalise_id


def thumbnails_of(db: Session, account_id: int, face_ids: Sequence[str]) -> dict[str, bytes | None]:
    """The JPEG of each of the account's faces `face_ids` (SenseTime ids, keyed as given), or
    None where there is none to show: a face stored without one (FACESRV_THUMBNAILS off, or
    stored before thumbnails existed), a made-up id, or another account's face, alike, so the
    answer never tells whether an id exists elsewhere.

    A face held by a person or faceset outlives its 5-day id (it is still listed there), so
    expiry does not hide its thumbnail; a purged face takes its thumbnail with it (ON DELETE
    CASCADE).
    """
    wanted = {normalise_id(face_id) for face_id in face_ids}
    rows = db.execute(
        select(Face.public_id, FaceThumbnail.jpeg)
        .join(FaceThumbnail, FaceThumbnail.face_id == Face.id)
        .where(Face.public_id.in_(wanted), Face.account_id == account_id)
    ).all()
    found = {public_id: jpeg for public_id, jpeg in rows}
    return {face_id: found.get(normalise_id(face_id)) for face_id in face_ids}
