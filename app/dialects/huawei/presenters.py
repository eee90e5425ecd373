"""Huawei's response shapes, in the key order of the seed pages and the SDK's models.

`similarity` is on Huawei's 0-1 scale, mapped from the core's calibrated confidence so that the
vendor's recommended threshold, 0.93, is the core's same-person threshold (0.6, a false-accept
rate of 1e-3): linear from 0 to 0.93 below it, from 0.93 to 1 above. The seed's false-accept
table then reads: 0.62 -> 1e-1, 0.775 -> 1e-2, 0.93 -> 1e-3, 0.9475 -> 1e-4, 0.965 -> 1e-5,
0.9825 -> 1e-6. A face searched with its own face id scores 1.
"""

from __future__ import annotations

from app.db.models import Face, Faceset, as_utc
from app.domain import Dialect
from app.services.confidence import SAME_PERSON_CONFIDENCE
from app.services.face_ids import huawei_face_set_id, vendor_face_id
from app.services.libraries import Library, LibraryFace
from app.services.owned import handle_of

RECOMMENDED_THRESHOLD = 0.93


def similarity(confidence: float) -> float:
    if confidence <= SAME_PERSON_CONFIDENCE:
        mapped = RECOMMENDED_THRESHOLD * confidence / SAME_PERSON_CONFIDENCE
    else:
        above = (confidence - SAME_PERSON_CONFIDENCE) / (1 - SAME_PERSON_CONFIDENCE)
        mapped = RECOMMENDED_THRESHOLD + (1 - RECOMMENDED_THRESHOLD) * above
    return round(mapped, 6)


def confidence_at(threshold: float) -> float:
    """The core's confidence where `similarity` reaches the vendor's `threshold`."""
    if threshold <= RECOMMENDED_THRESHOLD:
        return SAME_PERSON_CONFIDENCE * threshold / RECOMMENDED_THRESHOLD
    above = (threshold - RECOMMENDED_THRESHOLD) / (1 - RECOMMENDED_THRESHOLD)
    return SAME_PERSON_CONFIDENCE + (1 - SAME_PERSON_CONFIDENCE) * above


def face_id(row_id: int) -> str:
    return str(vendor_face_id(Dialect.HUAWEI, row_id))


def face_set_id(faceset: Faceset) -> str:
    """Eight characters that look random, derived from the faceset row (never stored twice)."""
    return huawei_face_set_id(faceset.id)


def face_set_info(library: Library) -> dict:
    faceset = library.faceset
    schema = faceset.field_types or {}
    return {
        "face_number": library.face_count,
        "external_fields": {name: {"type": kind} for name, kind in schema.items()},
        "face_set_id": face_set_id(faceset),
        "face_set_name": handle_of(faceset),
        "create_date": as_utc(faceset.created_at).strftime("%Y-%m-%d %H:%M:%S"),
        "face_set_capacity": library.capacity,
    }


def bounding_box(face: Face) -> dict:
    return {
        "width": face.rect_right - face.rect_left,
        "top_left_y": face.rect_top,
        "top_left_x": face.rect_left,
        "height": face.rect_bottom - face.rect_top,
    }


def library_face(member: LibraryFace, fields: list[str] | None = None) -> dict:
    values = member.external_fields or {}
    if fields is not None:
        values = {name: value for name, value in values.items() if name in fields}
    return {
        "bounding_box": bounding_box(member.face),
        "external_fields": values,
        "external_image_id": member.external_image_id or "",
        "face_id": face_id(member.face.id),
    }


def search_face(member: LibraryFace, confidence: float, fields: list[str] | None) -> dict:
    listed = library_face(member, fields)
    return {"bounding_box": listed.pop("bounding_box"), "similarity": similarity(confidence)} | (
        listed
    )


def library_counts(library: Library, face_number: int) -> dict:
    """What delete, batch delete and update answer: how many faces, in which face set."""
    return {
        "face_number": face_number,
        "face_set_id": face_set_id(library.faceset),
        "face_set_name": handle_of(library.faceset),
    }


def library_faces(library: Library, members: list[dict]) -> dict:
    return {
        "face_set_id": face_set_id(library.faceset),
        "face_set_name": handle_of(library.faceset),
        "faces": members,
    }
