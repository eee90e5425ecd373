"""Alibaba Green sface: getPersonFacesInfo (the seed) and the rest of the family its SDK has.

Every call is a POST whose body is JSON whatever its Content-Type (the SDK sends
`application/octet-stream`); each operation's fields are a `Form` declared beside its handler
(the parser reads through it, OpenAPI lists it). Persons and groups are named by the client's
ids (an entity made through SenseTime by its public id); face ids are JSON integers of 18 digits
derived from the face row, beyond 2^53 like the seed's, and every digit is kept on the wire.
Successes are `{"code": 200, "requestId", "data": {"code": 200, ...}}`; errors are shaped by
`errors.py`.

`/green/sface/search` has no public request reference; it takes `{"groupId", "url", "top"}`
(top 1-20, default 5) and answers the persons most like the photo's largest face, best first,
`rate` on the 0-100 scale of the Tencent door (100 x the calibrated confidence), above 60 only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api import fields
from app.api.analysis import analysed
from app.api.fields import JSON_BODY, Check, Field, Form
from app.api.params import MAX_NAME_CHARS, MAX_USER_DATA_CHARS
from app.api.pools import get_pools
from app.api.responses import ApiResponse, current_request_id
from app.api.routing import enveloped
from app.db.models import Account
from app.db.session import session_scope
from app.dialects.alibaba.auth import Caller, CallerDep, operations
from app.dialects.alibaba.errors import BusinessError, GatewayError, from_api_error
from app.domain import Dialect
from app.errors import ApiError
from app.services import enrolment, matching, membership
from app.services.enrolment import Photo
from app.services.face_ids import face_row_id, vendor_face_id
from app.services.membership import GROUPS, PERSONS
from app.services.owned import Key, face_sources, handle_of, held_or_usable_faces

ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")  # the vendor's rule for personId and groupIds
MAX_FACES_PER_PERSON = 20
MAX_FACE_IDS = 1000
SEARCH_TOP = 5


def _render(error: ApiError | None) -> ApiResponse:
    if error is None:
        failure: GatewayError | BusinessError = GatewayError(500, "InternalError", "internal error")
    else:
        failure = from_api_error(error)
    request_id = current_request_id.get()
    if isinstance(failure, GatewayError):
        body = {"Code": failure.code, "Message": failure.message, "RequestId": request_id}
        return ApiResponse(body, status_code=failure.http_status)
    body = {"code": failure.code, "msg": failure.message, "requestId": request_id, "data": {}}
    return ApiResponse(body)


router = APIRouter(route_class=enveloped(_render))
operation = operations(router)


def ok(data: dict) -> dict:
    return {"code": 200, "requestId": current_request_id.get(), "data": {"code": 200, **data}}


# --- the fields' checks: Green's code 400 with what is wrong ------------------------------------


def _checked_id(name: str, value: str | None) -> str:
    if not value or not ID_RE.fullmatch(value):
        raise BusinessError(400, f"{name}: 1 to 32 letters, digits, _ or -")
    return value


def _checked_ids(name: str, values: list[str] | None) -> list[str]:
    if not values:
        raise BusinessError(400, f"{name} is missing or empty")
    for value in values:
        if not ID_RE.fullmatch(value):
            raise BusinessError(400, f"{name}: 1 to 32 letters, digits, _ or -")
    return values


def _at_most(max_chars: int) -> Check:
    def check(name: str, value: str | None) -> str | None:
        if value is not None and len(value) > max_chars:
            raise BusinessError(400, f"{name} is longer than {max_chars}")
        return value

    return check


def _face_ids(_name: str, value: object) -> list[object] | None:
    """`faceIds` as sent: JSON integers (or strings of digits, from clients that quote Longs)."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_FACE_IDS:
        raise BusinessError(400, "faceIds must be a list of face ids")
    return value


def _some_face_ids(name: str, value: object) -> list[object]:
    wanted = _face_ids(name, value)
    if not wanted:
        raise BusinessError(400, "faceIds is missing or empty")
    return wanted


def _urls(_name: str, urls: list[str] | None) -> list[str]:
    if not urls or len(urls) > MAX_FACES_PER_PERSON:
        raise BusinessError(400, f"urls: 1 to {MAX_FACES_PER_PERSON} image urls")
    return urls


def _url_given(_name: str, url: str | None) -> str:
    if not url:
        raise BusinessError(400, "url is missing")
    return url


# --- the fields ------------------------------------------------------------------------------

ID_RULE = "1 to 32 letters, digits, _ or -"


def _id(name: str, description: str) -> Field:
    return fields.text(name, f"{description}: {ID_RULE}", required=True, max_length=32,
                       check=_checked_id)  # fmt: skip


def _text(name: str, description: str, max_chars: int) -> Field:
    return fields.text(name, description, max_length=max_chars, check=_at_most(max_chars))


PERSON_ID = _id("personId", "the person (the client's id)")
GROUP_ID = _id("groupId", "the group (the client's id)")
GROUP_IDS = fields.listing("groupIds", f"the groups, each {ID_RULE}", required=True,
                           check=_checked_ids)  # fmt: skip
NAME = _text("name", "the person's name", MAX_NAME_CHARS)
NOTE = _text("note", "free text kept with the person", MAX_USER_DATA_CHARS)
FACE_IDS_SHAPE = {"type": "array", "items": {"type": "integer"}, "maxItems": MAX_FACE_IDS}


def _form(description: str, *declared: Field) -> Form:
    return Form(declared, JSON_BODY, description)


def _face_id(row_id: int) -> int:
    return int(vendor_face_id(Dialect.ALIBABA, row_id))


def _group_ids(account: Account, person: Key) -> list[str]:
    return [handle_of(group) for group in membership.groups_of(account, person)]


# --- persons ------------------------------------------------------------------------------


ADD_PERSON = _form("Create a person in groups (missing groups are made).",
                   PERSON_ID, GROUP_IDS, NAME, NOTE)  # fmt: skip


@operation.post("/green/sface/person/add", ADD_PERSON)
def add_person(caller: CallerDep) -> dict:
    args = ADD_PERSON.read(caller.params)
    person_id, group_ids = args["personId"], args["groupIds"]
    name, note = args["name"] or "", args["note"]
    _, _, groups = enrolment.create_person(caller.account, person_id, name, note, None, group_ids)
    return ok({"personId": person_id, "groupIds": [handle_of(group) for group in groups]})


GET_PERSON = _form("A person's name, note, groups and face ids.", PERSON_ID)


@operation.post("/green/sface/person", GET_PERSON)
def get_person(caller: CallerDep) -> dict:
    person = Key(GET_PERSON.read(caller.params)["personId"])
    entity, faces = membership.describe(caller.account, PERSONS, person)
    return ok(
        {
            "personId": handle_of(entity),
            "name": entity.name,
            "note": entity.user_data or "",
            "groupIds": _group_ids(caller.account, person),
            "faceIds": [_face_id(face.row_id) for face in faces],
        }
    )


SET_PERSON = _form("Change a person's name or note (one of them at least).", PERSON_ID, NAME,
                   NOTE)  # fmt: skip


@operation.post("/green/sface/person/update", SET_PERSON)
def set_person(caller: CallerDep) -> dict:
    args = SET_PERSON.read(caller.params)
    person, name, note = Key(args["personId"]), args["name"], args["note"]
    if name is None and note is None:
        raise BusinessError(400, "give name or note")
    membership.change(caller.account, PERSONS, person, name, note)
    return ok({"personId": person.value})


DELETE_PERSON = _form("Delete a person and its faces.", PERSON_ID)


@operation.post("/green/sface/person/delete", DELETE_PERSON)
def delete_person(caller: CallerDep) -> dict:
    person = Key(DELETE_PERSON.read(caller.params)["personId"])
    membership.delete_entity(caller.account, PERSONS, person)
    return ok({"personId": person.value})


# --- groups -------------------------------------------------------------------------------


GET_GROUPS = _form("The ids of every group of the account.")


@operation.post("/green/sface/groups", GET_GROUPS)
def get_groups(caller: CallerDep) -> dict:
    GET_GROUPS.read(caller.params)
    groups = membership.entities(caller.account, GROUPS, None, 0)
    return ok({"groupIds": [handle_of(group) for group in groups]})


GET_PERSONS = _form("The ids of a group's persons.", GROUP_ID)


@operation.post("/green/sface/group/persons", GET_PERSONS)
def get_persons(caller: CallerDep) -> dict:
    group = Key(GET_PERSONS.read(caller.params)["groupId"])
    _, persons = membership.describe(caller.account, GROUPS, group)
    return ok({"groupId": group.value, "personIds": [person.handle for person in persons]})


ADD_GROUPS = _form("Put a person in more groups (missing groups are made).", PERSON_ID,
                   GROUP_IDS)  # fmt: skip
DELETE_GROUPS = _form("Take a person out of groups.", PERSON_ID, GROUP_IDS)


def _regroup(caller: Caller, form: Form, change: Callable[..., tuple[int, list]]) -> dict:
    """person/groups/add and /delete: the person joins or leaves groups; its groups after."""
    args = form.read(caller.params)
    person = Key(args["personId"])
    _, groups = change(caller.account, person, args["groupIds"])
    return ok({"personId": person.value, "groupIds": [handle_of(group) for group in groups]})


@operation.post("/green/sface/person/groups/add", ADD_GROUPS)
def add_groups(caller: CallerDep) -> dict:
    return _regroup(caller, ADD_GROUPS, enrolment.join_groups)


@operation.post("/green/sface/person/groups/delete", DELETE_GROUPS)
def delete_groups(caller: CallerDep) -> dict:
    return _regroup(caller, DELETE_GROUPS, enrolment.leave_groups)


# --- faces --------------------------------------------------------------------------------


async def _photo(account: Account, url: str) -> Photo:
    data, analysis = await analysed(account.id, url)
    return Photo(data, enrolment.largest_face(analysis), url)


ADD_FACES = _form(
    "Add each photo's largest face to a person.",
    PERSON_ID,
    fields.listing("urls", f"http(s) addresses of 1 to {MAX_FACES_PER_PERSON} photos",
                   required=True, check=_urls),
)  # fmt: skip


@operation.post("/green/sface/face/add", ADD_FACES)
async def add_faces(caller: CallerDep) -> dict:
    """Each url's largest face joins the person; a url that gives none is `success: false`."""
    args, account = ADD_FACES.read(caller.params), caller.account
    person, urls = Key(args["personId"]), args["urls"]
    await run_in_threadpool(membership.describe, account, PERSONS, person)
    photos: list[Photo | ApiError] = []
    for url in urls:
        try:
            photos.append(await _photo(account, url))
        except ApiError as error:
            photos.append(error)
    add = partial(enrolment.add_faces, account, person, photos, None, float("inf"))
    results = await run_in_threadpool(add)
    items = [
        {"faceId": _face_id(r.face.id), "success": True, "url": url}
        if r.face is not None
        else {"success": False, "url": url, "msg": r.error.reason if r.error else ""}
        for r, url in zip(results, urls, strict=True)
    ]
    groups = await run_in_threadpool(_group_ids, account, person)
    return ok({"personId": person.value, "groupIds": groups, "faceImageItems": items})


def _rows_of(values: list[object]) -> list[int]:
    rows = [face_row_id(Dialect.ALIBABA, value) for value in values]
    return [row for row in rows if row is not None]


DELETE_FACES = _form(
    "Remove faces from a person.",
    PERSON_ID,
    fields.value("faceIds", "the faces to remove (digit strings accepted)", required=True,
                 check=_some_face_ids, shape=FACE_IDS_SHAPE),
)  # fmt: skip


@operation.post("/green/sface/face/delete", DELETE_FACES)
def delete_faces(caller: CallerDep) -> dict:
    account, args = caller.account, DELETE_FACES.read(caller.params)
    person, wanted = Key(args["personId"]), args["faceIds"]
    with session_scope() as db:
        faces = held_or_usable_faces(db, account.id, _rows_of(wanted))
        public_ids = [face.public_id for face in faces]
    result = membership.remove_members(account, PERSONS, person, public_ids)
    return ok({"personId": person.value, "faceIds": [_face_id(r) for r in result.changed_ids]})


GET_PERSON_FACES = _form(
    "A person's faces (all, or the ones asked for), each with the url it was added from.",
    PERSON_ID,
    fields.value("faceIds", "only these faces (digit strings accepted); default: all",
                 check=_face_ids, shape=FACE_IDS_SHAPE),
)  # fmt: skip


@operation.post("/green/sface/faces", GET_PERSON_FACES)
def get_person_faces(caller: CallerDep) -> dict:
    """The seed's getPersonFacesInfo: every face of the person, or the ones asked for, each
    with the url it was added from; a requested face the person lacks is `success: false`."""
    account, args = caller.account, GET_PERSON_FACES.read(caller.params)
    person = Key(args["personId"])
    _, members = membership.describe(account, PERSONS, person)
    with session_scope() as db:
        urls = face_sources(db, account.id, [member.row_id for member in members])
    wanted = args["faceIds"]
    if wanted is None:
        return ok({"faceImageItems": [_item(row, urls[row]) for row in urls]})
    items = []
    for value in wanted:
        row = face_row_id(Dialect.ALIBABA, value)
        items.append(_item(row, urls[row]) if row in urls else {"success": False, "faceId": value})
    return ok({"faceImageItems": items})


def _item(row: int, url: str | None) -> dict:
    return {"success": True, "faceId": _face_id(row), "url": url or ""}


# --- search -------------------------------------------------------------------------------


def _search(account: Account, probe: matching.Probe, group: Key, top: int) -> dict:
    with session_scope() as db:
        try:
            candidates, _ = matching.identify(db, account, probe, group, top)
        except ApiError as error:
            if error.status != "EMPTY_GROUP":
                raise
            candidates = []
    return {
        "groupId": group.value,
        "persons": [
            {
                "personId": candidate.key or candidate.public_id,
                "name": candidate.name or "",
                "note": candidate.user_data or "",
                "rate": round(candidate.confidence * 100, 4),
                "faceId": _face_id(candidate.face_row or 0),
            }
            for candidate in candidates
        ],
    }


SEARCH = _form(
    "The persons of a group most like a photo's largest face, best first (rate above 60).",
    GROUP_ID,
    fields.integer("top", "at most this many persons", default=SEARCH_TOP, lo=1, hi=20),
    fields.text("url", "an http(s) address of the photo", required=True, check=_url_given),
)


@operation.post("/green/sface/search", SEARCH)
async def search(caller: CallerDep) -> dict:
    args, account = SEARCH.read(caller.params), caller.account
    group, top = Key(args["groupId"]), args["top"]
    photo = await _photo(account, args["url"])
    probe = matching.fresh_probe(photo.analysis.faces[0].embedding)
    work = partial(_search, account, probe, group, top)
    return ok(await get_pools().matching.run(account.id, work))
