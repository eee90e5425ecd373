"""Face libraries: facesets as Huawei's face sets are, with a capacity, a schema of typed fields,
and per face the client's external image id and field values.

A library is a faceset (one row, one index): a face set made here is a faceset SenseTime's
`/face/search` searches, and a SenseTime faceset is a library without fields. Every write goes
through `membership` inside one `account_write`, so quotas and the change log hold as for any
faceset. The extras live on the faceset's member rows (`FacesetFace`): a face in two libraries
has its own fields in each.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.db.models import Account, Face, Faceset, FacesetFace
from app.db.session import session_scope
from app.errors import bad_request
from app.services import detection, membership
from app.services.accounts import account_write
from app.services.detection import Analysis
from app.services.matching import Probe, search_faceset
from app.services.membership import FACESETS
from app.services.owned import Ref, find_owned

DEFAULT_CAPACITY = 100_000
FIELD_TYPES = frozenset({"string", "integer", "long", "float", "double", "boolean"})
MAX_FIELDS = 10
FIELD_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,36}")
STRING_VALUE_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
RESERVED_FIELDS = frozenset(
    {
        "external_image_id", "bounding_box", "similarity", "face_id", "create_time", "vector",
        "_id", "_all", "_source",
    }
)  # fmt: skip
INTEGER_BITS = {"integer": 31, "long": 63}


def checked_schema(fields: object) -> dict[str, str]:
    """`{"name": {"type": "integer"}, ...}` as `{"name": "integer"}`; INVALID_FIELDS otherwise."""
    if fields is None:
        return {}
    if not isinstance(fields, dict) or len(fields) > MAX_FIELDS:
        raise bad_request("INVALID_FIELDS", f"external_fields: an object of at most {MAX_FIELDS}")
    schema = {}
    for name, spec in fields.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if not FIELD_NAME_RE.fullmatch(name) or name in RESERVED_FIELDS:
            raise bad_request("INVALID_FIELDS", f"field name {name!r} is not allowed")
        if not isinstance(kind, str) or kind.lower() not in FIELD_TYPES:
            raise bad_request("INVALID_FIELDS", f"field {name}: type one of {sorted(FIELD_TYPES)}")
        schema[name] = kind.lower()
    return schema


def _typed(name: str, kind: str, value: object) -> object:
    if kind == "boolean" and isinstance(value, bool):
        return value
    integral = isinstance(value, int) and not isinstance(value, bool)
    if kind in INTEGER_BITS and integral:
        bound = 2 ** INTEGER_BITS[kind]
        if -bound <= value < bound:  # type: ignore[operator]
            return value
    numeric = integral or isinstance(value, float)
    if kind in ("float", "double") and numeric and math.isfinite(value):  # type: ignore[arg-type]
        return value
    if kind == "string" and isinstance(value, str) and STRING_VALUE_RE.fullmatch(value):
        return value
    raise bad_request("INVALID_FIELDS", f"field {name} must be a {kind}")


def checked_values(schema: dict[str, str], values: object) -> dict | None:
    """Field values of a face, each of its library's declared type; unknown names refused."""
    if values is None:
        return None
    if not isinstance(values, dict):
        raise bad_request("INVALID_FIELDS", "external_fields must be an object")
    unknown = sorted(set(values) - set(schema))
    if unknown:
        raise bad_request("UNKNOWN_FIELD", f"the face set has no field {unknown[0]!r}")
    return {name: _typed(name, schema[name], value) for name, value in values.items()}


@dataclass(frozen=True)
class Library:
    faceset: Faceset
    face_count: int

    @property
    def capacity(self) -> int:
        return self.faceset.capacity or DEFAULT_CAPACITY


@dataclass(frozen=True)
class LibraryFace:
    face: Face
    external_image_id: str | None
    external_fields: dict | None


def _count(db: Session, faceset_id: int) -> int:
    query = select(func.count()).where(FacesetFace.faceset_id == faceset_id)
    return db.scalar(query) or 0


def _find(db: Session, account: Account, ref: Ref) -> Faceset:
    return find_owned(db, Faceset, account.id, ref, FACESETS.invalid_status)


def create(account: Account, name: str, capacity: int | None, fields: object) -> Library:
    schema = checked_schema(fields)
    with account_write(account.id):
        faceset, _ = membership.create(account, FACESETS, name, None, [], key=name)
        faceset.capacity = capacity
        faceset.field_types = schema or None
        return Library(faceset, 0)


def describe(account: Account, ref: Ref) -> Library:
    with session_scope() as db:
        faceset = _find(db, account, ref)
        return Library(faceset, _count(db, faceset.id))


def listing(account: Account) -> list[Library]:
    counts = (
        select(FacesetFace.faceset_id, func.count().label("faces"))
        .group_by(FacesetFace.faceset_id)
        .subquery()
    )
    query = (
        select(Faceset, func.coalesce(counts.c.faces, 0))
        .outerjoin(counts, counts.c.faceset_id == Faceset.id)
        .where(Faceset.account_id == account.id)
        .order_by(Faceset.id)
    )
    with session_scope() as db:
        return [Library(faceset, faces) for faceset, faces in db.execute(query)]


def _member_rows(db: Session, faceset_id: int) -> Select:
    return (
        select(Face, FacesetFace.external_image_id, FacesetFace.external_fields)
        .join(FacesetFace, FacesetFace.face_id == Face.id)
        .where(FacesetFace.faceset_id == faceset_id)
    )


def faces(
    account: Account, ref: Ref, offset: int, limit: int, row_id: int | None = None
) -> tuple[Library, list[LibraryFace]]:
    """A page of the library's faces in the order they joined, or the one face `row_id`."""
    with session_scope() as db:
        faceset = _find(db, account, ref)
        query = _member_rows(db, faceset.id)
        if row_id is not None:
            query = query.where(Face.id == row_id)
        query = query.order_by(FacesetFace.added_at, Face.id).offset(offset).limit(limit)
        found = [LibraryFace(*row) for row in db.execute(query)]
        return Library(faceset, _count(db, faceset.id)), found


def add_faces(
    account: Account,
    ref: Ref,
    analysis: Analysis,
    data: bytes,
    external_image_id: str | None,
    external_fields: object,
) -> tuple[Library, list[LibraryFace]]:
    """Every face of the analysis joins the library with the client's id and fields."""
    if not analysis.faces:
        raise bad_request("NO_FACE", "no face found in the image")
    with account_write(account.id) as db:
        faceset = _find(db, account, ref)
        values = checked_values(faceset.field_types or {}, external_fields)
        after = _count(db, faceset.id) + len(analysis.faces)
        if after > (faceset.capacity or DEFAULT_CAPACITY):
            raise bad_request("FACESET_FULL", "the face set is at its capacity")
        stored = detection.store(db, account, analysis, data, None).faces
        membership.add_members(
            account, FACESETS, faceset.public_id, [face.public_id for face in stored]
        )
        _set_extras(db, faceset.id, [face.id for face in stored], external_image_id, values)
        return Library(faceset, after), [
            LibraryFace(face, external_image_id, values) for face in stored
        ]


def _set_extras(
    db: Session, faceset_id: int, row_ids: list[int], image_id: str | None, values: dict | None
) -> None:
    links = db.scalars(
        select(FacesetFace).where(
            FacesetFace.faceset_id == faceset_id, FacesetFace.face_id.in_(row_ids)
        )
    )
    for link in links:
        if image_id is not None:
            link.external_image_id = image_id
        if values is not None:
            link.external_fields = values


def update_face(
    account: Account, ref: Ref, row_id: int, image_id: str | None, fields: object
) -> Library:
    with account_write(account.id) as db:
        faceset = _find(db, account, ref)
        link = db.get(FacesetFace, (faceset.id, row_id))
        if link is None:
            raise bad_request("INVALID_FACE", "the face set has no such face")
        values = checked_values(faceset.field_types or {}, fields)
        _set_extras(db, faceset.id, [row_id], image_id, values)
        return Library(faceset, _count(db, faceset.id))


def remove_faces(
    account: Account, ref: Ref, matches: Callable[[LibraryFace], bool]
) -> tuple[Library, int]:
    """The library's faces `matches` picks leave it; returns the library and how many left."""
    with account_write(account.id) as db:
        faceset = _find(db, account, ref)
        chosen = [
            row[0].public_id
            for row in db.execute(_member_rows(db, faceset.id))
            if matches(LibraryFace(*row))
        ]
        result = membership.remove_members(account, FACESETS, faceset.public_id, chosen)
        return Library(faceset, result.count), result.changed


def search(
    account: Account,
    probe: Probe,
    ref: Ref,
    top: int,
    threshold: float,
    matches: Callable[[LibraryFace], bool] | None,
    depth: int,
) -> list[tuple[LibraryFace, float]]:
    """The library's faces most like the probe, at least `threshold` confident, best first.

    With a filter, `depth` nearest faces are fetched and filtered, so a filter that keeps few
    faces may return fewer than `top` even when more qualify beyond that depth.
    """
    with session_scope() as db:
        faceset = _find(db, account, ref)
        held = _count(db, faceset.id)
        if held == 0:
            return []
        fetched = min(depth if matches else top, held)
        candidates = search_faceset(db, account, probe, faceset.public_id, fetched)
        rows = {
            row[0].id: LibraryFace(*row)
            for row in db.execute(
                _member_rows(db, faceset.id).where(
                    Face.id.in_([c.face_row for c in candidates if c.face_row is not None])
                )
            )
        }
    found = []
    for candidate in candidates:
        member = rows.get(candidate.face_row or 0)
        if member is None or candidate.confidence < threshold:
            continue
        if matches is None or matches(member):
            found.append((member, candidate.confidence))
    return found[:top]
