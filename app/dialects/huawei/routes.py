"""Huawei FRS face sets: the seed's two queries and the rest of the family the SDK calls.

Face sets are named by the client (`face_set_name`, the faceset's key; a SenseTime faceset by
its public id), faces by 8-character ids derived from the face row. Each operation's
parameters are a `Form` declared beside its handler (the parser reads through it, OpenAPI lists
it): a JSON body (or multipart, where an `image_file` part is taken) for POST and PUT, the query
string for GET and DELETE; `project_id` and `face_set_name` are path parameters. Errors of any
layer reach the client as `{"error_code", "error_msg"}` with the status of `errors.py`.
"""

from __future__ import annotations

import base64
import binascii
import json
from functools import partial

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api import fields
from app.api.analysis import analysed
from app.api.fields import JSON_BODY, JSON_OR_MULTIPART, Args, Form
from app.api.pools import get_pools
from app.api.responses import ApiResponse
from app.api.routing import enveloped
from app.db.models import Account
from app.db.session import session_scope
from app.dialects.huawei import filters
from app.dialects.huawei.auth import IMAGE_FIELD, Caller, CallerDep, operations
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
from app.services.libraries import DEFAULT_CAPACITY, FIELD_TYPES, LibraryFace
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
operation = operations(router)


def _name(value: str | None) -> str:
    if not value:
        raise HuaweiError(400, "FRS.0011", "face_set_name is missing")
    if len(value) > MAX_FACE_SET_NAME_CHARS or not value.isprintable():
        raise bad_parameter(f"face_set_name: 1 to {MAX_FACE_SET_NAME_CHARS} printable characters")
    return value


def _set(face_set_name: str) -> Key:
    """The face set a path names, checked like a new name (no NUL or control reaches a query)."""
    return Key(_name(face_set_name))


# --- the fields' checks, with the vendor's codes ------------------------------------------------


def _checked_name(_field: str, value: str | None) -> str:
    return _name(value)


def _fields(_field: str, value: object) -> object:
    """`external_fields`: an object in JSON, a JSON text in a multipart form."""
    if isinstance(value, bytes | str):
        try:
            return json.loads(value)
        except ValueError:
            raise HuaweiError(400, "FRS.0014", "external_fields is not JSON") from None
    return value


def _image_id(_field: str, value: str | None) -> str | None:
    if value is not None and not (0 < len(value) <= 64 and value.isprintable()):
        raise bad_parameter("external_image_id: 1 to 64 printable characters")
    return value


def _checked_face_row(_field: str, value: str | None) -> int:
    return _face_row(value)


def _field_names(_field: str, value: object) -> object:
    if value is not None and not (
        isinstance(value, list) and all(isinstance(name, str) for name in value)
    ):
        raise bad_parameter("return_fields must be a list of field names")
    return value


def _filter_given(_field: str, value: str | None) -> str:
    if not value:
        raise HuaweiError(400, "FRS.0011", "filter is missing")
    return value


# --- the fields --------------------------------------------------------------------------------

IMAGE_ID = fields.text("external_image_id", "the client's id of the photo: 1 to 64 printable "
                       "characters", max_length=64, check=_image_id)  # fmt: skip
FACE_FIELDS = fields.value(
    "external_fields",
    "the face's values of the face set's fields, `{name: value}` (JSON text in multipart)",
    check=_fields,
    shape={"type": "object"},
)
PHOTO = [
    fields.text("image_url", "an http(s) address of the photo; first of the three"),
    fields.image(IMAGE_FIELD, "the photo as a multipart part; second"),
    fields.text("image_base64", "the photo in Base64 (a `data:` prefix allowed); third"),
]
PHOTO_NOTE = " Give `image_url`, `image_file` or `image_base64`."


def _source(args: Args) -> bytes | str:
    url = args["image_url"]
    if url:
        return url
    file = args[IMAGE_FIELD]
    if file:
        return file
    encoded = args["image_base64"]
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


CREATE_FACE_SET = Form(
    [
        fields.text("face_set_name", f"the new face set's name: 1 to {MAX_FACE_SET_NAME_CHARS} "
                    "printable characters", required=True, max_length=MAX_FACE_SET_NAME_CHARS,
                    check=_checked_name),
        fields.integer("face_set_capacity", "the most faces it may hold (default "
                       f"{DEFAULT_CAPACITY:,})", default=None, lo=1, hi=10_000_000),
        fields.value("external_fields", "the face set's own fields, `{name: {\"type\": T}}`, "
                     f"T one of {', '.join(sorted(FIELD_TYPES))}", shape={"type": "object"}),
    ],
    JSON_BODY,
    "Create a face set, with the custom fields its faces may carry.",
)  # fmt: skip


@operation.post(PREFIX, CREATE_FACE_SET)
def create_face_set(caller: CallerDep) -> dict:
    args = CREATE_FACE_SET.read(caller.params)
    capacity = args["face_set_capacity"] or None
    library = libraries.create(
        caller.account, args["face_set_name"], capacity, args["external_fields"]
    )
    return {"face_set_info": face_set_info(library)}


@operation.get(PREFIX, Form(description="Every face set of the project, with its face count."))
def show_all_face_sets(caller: CallerDep) -> dict:
    return {"face_sets_info": [face_set_info(lib) for lib in libraries.listing(caller.account)]}


@operation.get(ONE_SET, Form(description="One face set: its fields, capacity and face count."))
def show_face_set(caller: CallerDep, face_set_name: str) -> dict:
    return {"face_set_info": face_set_info(libraries.describe(caller.account, _set(face_set_name)))}


@operation.delete(ONE_SET, Form(description="Delete a face set and its faces."))
def delete_face_set(caller: CallerDep, face_set_name: str) -> dict:
    membership.delete_entity(caller.account, FACESETS, _set(face_set_name))
    return {"face_set_name": face_set_name}


# --- faces ----------------------------------------------------------------------------------


ADD_FACES = Form(
    [
        IMAGE_ID,
        FACE_FIELDS,
        fields.flag("single", "true: only the photo's largest face"),
        *PHOTO,
    ],
    JSON_OR_MULTIPART,
    "Add the faces of a photo to a face set." + PHOTO_NOTE,
)


@operation.post(ONE_SET + "/faces", ADD_FACES)
async def add_faces(caller: CallerDep, face_set_name: str) -> dict:
    """Every face of the photo, or its largest with `single`; all with the same id and fields."""
    args, account = ADD_FACES.read(caller.params), caller.account
    await run_in_threadpool(libraries.describe, account, _set(face_set_name))
    data, analysis = await analysed(account.id, _source(args))
    if args["single"] and analysis.faces:
        analysis = enrolment.largest_face(analysis)
    add = partial(
        libraries.add_faces,
        account,
        _set(face_set_name),
        analysis,
        data,
        args["external_image_id"],
        args["external_fields"],
    )
    library, members = await run_in_threadpool(add)
    return library_faces(library, [library_face(member) for member in members])


# One face by `face_id`, or a page: the page is read only when no face_id is given.
ONE_FACE = Form([fields.text("face_id", "the face (an id add_faces answered); or a page")])
PAGE = Form(
    [
        fields.integer("offset", "skip this many faces first (with `limit`; not with face_id)",
                       default=0, lo=0, hi=MAX_PAGE_END),
        fields.integer("limit", f"at most this many faces; offset + limit <= {MAX_PAGE_END}",
                       default=5, lo=1, hi=MAX_PAGE_END),
    ]
)  # fmt: skip
SHOW_FACES = Form(
    [*ONE_FACE.fields, *PAGE.fields], description="A face set's faces, by face_id or by page."
)


@operation.get(ONE_SET + "/faces", SHOW_FACES)
def show_faces(caller: CallerDep, face_set_name: str) -> dict:
    """By `offset`/`limit` (0 / 5; their sum at most 10,000) or by `face_id`."""
    face = ONE_FACE.read(caller.params)["face_id"]
    if face is not None:
        row = _face_row(face)
        library, members = libraries.faces(caller.account, _set(face_set_name), 0, 1, row)
    else:
        page = PAGE.read(caller.params)
        offset, limit = page["offset"], page["limit"]
        if offset + limit > MAX_PAGE_END:
            raise bad_parameter(f"offset + limit must not exceed {MAX_PAGE_END}")
        library, members = libraries.faces(caller.account, _set(face_set_name), offset, limit)
    return library_faces(library, [library_face(member) for member in members])


def _removed(caller: Caller, face_set_name: str, matches: filters.Predicate) -> dict:
    library, removed = libraries.remove_faces(caller.account, _set(face_set_name), matches)
    return library_counts(library, removed)


DELETE_FACES = Form(
    [
        fields.text("face_id", "the face to delete; or one field below"),
        fields.text("external_image_id", "delete the faces of this photo id; or face_id"),
    ],
    description="Delete a face by `face_id`, or the faces whose `external_image_id` or one of "
    "the face set's own fields (`?<field>=<value>`, any name the face set's `external_fields` "
    "declares; not listed here, as each face set has its own) has the value. Exactly one of "
    "them (FRS.0402 otherwise).",
)


@operation.delete(ONE_SET + "/faces", DELETE_FACES)
def delete_faces(caller: CallerDep, face_set_name: str) -> dict:
    """`?face_id=...`, or `?<field>=<value>` for `external_image_id` or a face set field."""
    params = caller.params
    args = DELETE_FACES.read(params)
    if args["face_id"] is not None:
        row = _face_row(args["face_id"])
        return _removed(caller, face_set_name, lambda member: member.face.id == row)
    library = libraries.describe(caller.account, _set(face_set_name))
    known = {"external_image_id", *(library.faceset.field_types or {})}
    # The face set's own field names are its data, so no form can declare them: read as sent.
    named = [name for name in params.values if name in known]
    if len(named) != 1:
        raise HuaweiError(400, "FRS.0402", "give face_id, external_image_id or one face set field")
    value = args[named[0]] if named[0] in args else params.text(named[0])
    matches = filters.parse(f'{named[0]}:"{value or ""}"', known)
    return _removed(caller, face_set_name, matches)


BATCH_DELETE_FACES = Form(
    [
        fields.text("filter", "which faces: the search filter syntax over the face set's "
                    "fields, e.g. `age:[20 TO 30] AND name:\"Tom\"`", required=True,
                    check=_filter_given),
    ],
    description="Delete every face of a face set that a filter matches.",
)  # fmt: skip


@operation.delete(ONE_SET + "/faces/batch", BATCH_DELETE_FACES)
def batch_delete_faces(caller: CallerDep, face_set_name: str) -> dict:
    library = libraries.describe(caller.account, _set(face_set_name))
    text = BATCH_DELETE_FACES.read(caller.params)["filter"]  # after: FRS.0302 comes first
    matches = filters.parse(text, set(library.faceset.field_types or {}))
    return _removed(caller, face_set_name, matches)


UPDATE_FACE = Form(
    [
        fields.text("face_id", "the face to change", required=True, check=_checked_face_row),
        IMAGE_ID,
        FACE_FIELDS,
    ],
    JSON_BODY,
    "Change a face's external_image_id or field values.",
)


@operation.put(ONE_SET + "/faces", UPDATE_FACE)
def update_face(caller: CallerDep, face_set_name: str) -> dict:
    args = UPDATE_FACE.read(caller.params)
    library = libraries.update_face(
        caller.account,
        _set(face_set_name),
        args["face_id"],
        args["external_image_id"],
        args["external_fields"],
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


SEARCH = Form(
    [
        fields.integer("top_n", "at most this many faces", default=10, lo=1, hi=1000),
        fields.number("threshold", "only faces at least this similar (0 to 1)", default=0.0,
                      lo=0.0, hi=1.0),
        fields.value("return_fields", "the face set fields to answer with each face",
                     check=_field_names, shape={"type": "array", "items": {"type": "string"}}),
        fields.text("filter", "only faces whose fields match, e.g. `age:[20 TO 30]`"),
        fields.text("face_id", "search with this stored face instead of a photo"),
        *PHOTO,
        fields.value("sort", "order by numeric fields, first key first: "
                     "`[{\"<field>\": \"asc\" | \"desc\"}, ...]`",
                     shape={"type": "array", "items": {"type": "object"}}),
    ],
    JSON_OR_MULTIPART,
    "The faces of a face set most like a photo's largest face, or a stored face's. Give "
    "`face_id`, `image_url`, `image_file` or `image_base64`.",
)  # fmt: skip


@operation.post(ONE_SET + "/search", SEARCH)
async def search_faces(caller: CallerDep, face_set_name: str) -> dict:
    args, account = SEARCH.read(caller.params), caller.account
    top = args["top_n"]
    threshold = confidence_at(args["threshold"])
    returned = args["return_fields"]
    library = await run_in_threadpool(libraries.describe, account, _set(face_set_name))
    text = args["filter"]
    matches = filters.parse(text, set(library.faceset.field_types or {})) if text else None
    if args["face_id"] is not None:
        probe = await run_in_threadpool(_stored_probe, account, args["face_id"])
    else:
        _, analysis = await analysed(account.id, _source(args))
        if not analysis.faces:
            raise HuaweiError(400, "FRS.0304", "Detect no face, can not search.")
        probe = fresh_probe(enrolment.largest_face(analysis).faces[0].embedding)
    work = partial(
        libraries.search, account, probe, _set(face_set_name), top, threshold, matches, FILTER_DEPTH
    )
    found = _sorted(await get_pools().matching.run(account.id, work), args["sort"])
    return {"faces": [search_face(member, score, returned) for member, score in found]}
