"""Huawei FRS face sets: the seed's two queries and the rest of the family the SDK calls.

Face sets are named by the client (`face_set_name`, the faceset's key; a SenseTime faceset by
its public id), faces by 8-character ids derived from the face row. Errors of any layer reach
the client as `{"error_code", "error_msg"}` with the status of `errors.py`.
"""

from __future__ import annotations

import base64
import binascii
import json
from functools import partial

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api.analysis import analysed
from app.api.params import Params
from app.api.pools import get_pools
from app.api.responses import ApiResponse
from app.api.routing import enveloped
from app.db.models import Account
from app.db.session import session_scope
from app.dialects.huawei import filters
from app.dialects.huawei.auth import Caller, CallerDep
from app.dialects.huawei.errors import INTERNAL, HuaweiError, bad_parameter, from_api_error
from app.dialects.huawei.presenters import (
    confidence_at,
    face_set_info,
    library_counts,
    library_face,
    library_faces,
    search_face,
)
from app.domain import Dialect
from app.errors import ApiError
from app.services import enrolment, libraries, membership
from app.services.face_ids import face_row_id
from app.services.libraries import LibraryFace
from app.services.matching import Probe, fresh_probe, probe_of
from app.services.membership import FACESETS
from app.services.owned import Key, held_or_usable_faces

MAX_FACE_SET_NAME_CHARS = 64
MAX_PAGE_END = 10_000  # offset + limit, the seed's bound
FILTER_DEPTH = 10_000  # nearest faces a filtered search looks through
PREFIX = "/v2/{project_id}/face-sets"
ONE_SET = PREFIX + "/{face_set_name}"


def _render(error: ApiError | None) -> ApiResponse:
    if error is None:
        huawei = HuaweiError(500, INTERNAL, "internal error")
    else:
        huawei = from_api_error(error)
    body = {"error_code": huawei.code, "error_msg": huawei.message}
    return ApiResponse(body, status_code=huawei.http_status)


router = APIRouter(route_class=enveloped(_render))


def _name(value: str | None) -> str:
    if not value:
        raise HuaweiError(400, "FRS.0011", "face_set_name is missing")
    if len(value) > MAX_FACE_SET_NAME_CHARS or not value.isprintable():
        raise bad_parameter(f"face_set_name: 1 to {MAX_FACE_SET_NAME_CHARS} printable characters")
    return value


def _set(face_set_name: str) -> Key:
    """The face set a path names, checked like a new name (no NUL or control reaches a query)."""
    return Key(_name(face_set_name))


def _fields(params: Params) -> object:
    """`external_fields`: an object in JSON, a JSON text in a multipart form."""
    value = params.value("external_fields")
    if isinstance(value, bytes | str):
        try:
            return json.loads(value)
        except ValueError:
            raise HuaweiError(400, "FRS.0014", "external_fields is not JSON") from None
    return value


def _image_id(params: Params) -> str | None:
    value = params.text("external_image_id")
    if value is not None and not (0 < len(value) <= 64 and value.isprintable()):
        raise bad_parameter("external_image_id: 1 to 64 printable characters")
    return value


def _source(params: Params) -> bytes | str:
    url = params.text("image_url")
    if url:
        return url
    file = params.file("image_file")
    if file:
        return file
    encoded = params.text("image_base64")
    if not encoded:
        raise HuaweiError(400, "FRS.0011", "image_base64, image_url or image_file is missing")
    try:
        return base64.b64decode(encoded.split(",", 1)[-1], validate=True)
    except (binascii.Error, ValueError):
        raise HuaweiError(400, "FRS.0015", "image_base64 is not Base64") from None


def _face_row(value: str | None) -> int:
    row = face_row_id(Dialect.HUAWEI, value) if value else None
    if row is None:
        raise HuaweiError(400, "FRS.0403", f"no such face: {value}")
    return row


# --- face sets -----------------------------------------------------------------------------


@router.post(PREFIX)
def create_face_set(caller: CallerDep) -> dict:
    params = caller.params
    name = _name(params.text("face_set_name"))
    capacity = params.integer("face_set_capacity", default=0, lo=1, hi=10_000_000) or None
    library = libraries.create(caller.account, name, capacity, params.value("external_fields"))
    return {"face_set_info": face_set_info(library)}


@router.get(PREFIX)
def show_all_face_sets(caller: CallerDep) -> dict:
    return {"face_sets_info": [face_set_info(lib) for lib in libraries.listing(caller.account)]}


@router.get(ONE_SET)
def show_face_set(caller: CallerDep, face_set_name: str) -> dict:
    return {"face_set_info": face_set_info(libraries.describe(caller.account, _set(face_set_name)))}


@router.delete(ONE_SET)
def delete_face_set(caller: CallerDep, face_set_name: str) -> dict:
    membership.delete_entity(caller.account, FACESETS, _set(face_set_name))
    return {"face_set_name": face_set_name}


# --- faces ----------------------------------------------------------------------------------


@router.post(ONE_SET + "/faces")
async def add_faces(caller: CallerDep, face_set_name: str) -> dict:
    """Every face of the photo, or its largest with `single`; all with the same id and fields."""
    params, account = caller.params, caller.account
    image_id, fields = _image_id(params), _fields(params)
    single = params.flag("single")
    await run_in_threadpool(libraries.describe, account, _set(face_set_name))
    data, analysis = await analysed(account.id, _source(params))
    if single and analysis.faces:
        analysis = enrolment.largest_face(analysis)
    add = partial(
        libraries.add_faces, account, _set(face_set_name), analysis, data, image_id, fields
    )
    library, members = await run_in_threadpool(add)
    return library_faces(library, [library_face(member) for member in members])


@router.get(ONE_SET + "/faces")
def show_faces(caller: CallerDep, face_set_name: str) -> dict:
    """By `offset`/`limit` (0 / 5; their sum at most 10,000) or by `face_id`."""
    params = caller.params
    if params.has("face_id"):
        row = _face_row(params.text("face_id"))
        library, members = libraries.faces(caller.account, _set(face_set_name), 0, 1, row)
    else:
        offset = params.integer("offset", default=0, lo=0, hi=MAX_PAGE_END)
        limit = params.integer("limit", default=5, lo=1, hi=MAX_PAGE_END)
        if offset + limit > MAX_PAGE_END:
            raise bad_parameter(f"offset + limit must not exceed {MAX_PAGE_END}")
        library, members = libraries.faces(caller.account, _set(face_set_name), offset, limit)
    return library_faces(library, [library_face(member) for member in members])


def _removed(caller: Caller, face_set_name: str, matches: filters.Predicate) -> dict:
    library, removed = libraries.remove_faces(caller.account, _set(face_set_name), matches)
    return library_counts(library, removed)


@router.delete(ONE_SET + "/faces")
def delete_faces(caller: CallerDep, face_set_name: str) -> dict:
    """`?face_id=...`, or `?<field>=<value>` for `external_image_id` or a face set field."""
    params = caller.params
    if params.has("face_id"):
        row = _face_row(params.text("face_id"))
        return _removed(caller, face_set_name, lambda member: member.face.id == row)
    library = libraries.describe(caller.account, _set(face_set_name))
    known = {"external_image_id", *(library.faceset.field_types or {})}
    named = [name for name in params.values if name in known]
    if len(named) != 1:
        raise HuaweiError(400, "FRS.0402", "give face_id, external_image_id or one face set field")
    matches = filters.parse(f'{named[0]}:"{params.text(named[0]) or ""}"', known)
    return _removed(caller, face_set_name, matches)


@router.delete(ONE_SET + "/faces/batch")
def batch_delete_faces(caller: CallerDep, face_set_name: str) -> dict:
    library = libraries.describe(caller.account, _set(face_set_name))
    text = caller.params.text("filter")
    if not text:
        raise HuaweiError(400, "FRS.0011", "filter is missing")
    matches = filters.parse(text, set(library.faceset.field_types or {}))
    return _removed(caller, face_set_name, matches)


@router.put(ONE_SET + "/faces")
def update_face(caller: CallerDep, face_set_name: str) -> dict:
    params = caller.params
    row = _face_row(params.text("face_id"))
    library = libraries.update_face(
        caller.account, _set(face_set_name), row, _image_id(params), _fields(params)
    )
    return library_counts(library, 1)


# --- search ---------------------------------------------------------------------------------


def _stored_probe(account: Account, value: str | None) -> Probe:
    row = _face_row(value)
    with session_scope() as db:
        found = held_or_usable_faces(db, account.id, [row])
    if not found:
        raise HuaweiError(400, "FRS.0403", f"no such face: {value}")
    return probe_of(found[0])


def _sorted(
    found: list[tuple[LibraryFace, float]], sort: object
) -> list[tuple[LibraryFace, float]]:
    """`sort`: `[{"field": "asc" | "desc"}, ...]` over numeric fields, first key first."""
    if sort is None:
        return found
    if not isinstance(sort, list) or not all(isinstance(item, dict) for item in sort):
        raise bad_parameter("sort must be a list of {field: asc|desc}")
    for item in reversed(sort):
        for name, order in reversed(list(item.items())):
            if order not in ("asc", "desc"):
                raise bad_parameter(f"sort {name}: asc or desc")

            def key(pair: tuple[LibraryFace, float], name: str = name) -> float:
                value = (pair[0].external_fields or {}).get(name)
                return float(value) if isinstance(value, int | float) else float("inf")

            found = sorted(found, key=key, reverse=order == "desc")
    return found


@router.post(ONE_SET + "/search")
async def search_faces(caller: CallerDep, face_set_name: str) -> dict:
    params, account = caller.params, caller.account
    top = params.integer("top_n", default=10, lo=1, hi=1000)
    threshold = confidence_at(params.number("threshold", default=0.0, lo=0.0, hi=1.0))
    returned = params.value("return_fields")
    if returned is not None and not (
        isinstance(returned, list) and all(isinstance(name, str) for name in returned)
    ):
        raise bad_parameter("return_fields must be a list of field names")
    library = await run_in_threadpool(libraries.describe, account, _set(face_set_name))
    text = params.text("filter")
    matches = filters.parse(text, set(library.faceset.field_types or {})) if text else None
    if params.has("face_id"):
        probe = await run_in_threadpool(_stored_probe, account, params.text("face_id"))
    else:
        _, analysis = await analysed(account.id, _source(params))
        if not analysis.faces:
            raise HuaweiError(400, "FRS.0304", "Detect no face, can not search.")
        probe = fresh_probe(enrolment.largest_face(analysis).faces[0].embedding)
    work = partial(
        libraries.search, account, probe, _set(face_set_name), top, threshold, matches, FILTER_DEPTH
    )
    found = _sorted(await get_pools().matching.run(account.id, work), params.value("sort"))
    return {"faces": [search_face(member, score, returned) for member, score in found]}
