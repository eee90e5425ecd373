"""Alibaba Green sface: getPersonFacesInfo (the seed) and the rest of the family its SDK has.

Every call is a POST whose body is JSON whatever its Content-Type (the SDK sends
`application/octet-stream`). Persons and groups are named by the client's ids (an entity made
through SenseTime by its public id); face ids are JSON integers of 18 digits derived from the
face row, beyond 2^53 like the seed's, and every digit is kept on the wire. Successes are
`{"code": 200, "requestId", "data": {"code": 200, ...}}`; errors are shaped by `errors.py`.

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

from app.api.analysis import analysed
from app.api.params import MAX_NAME_CHARS, MAX_USER_DATA_CHARS, Params
from app.api.pools import get_pools
from app.api.responses import ApiResponse, current_request_id
from app.api.routing import enveloped
from app.db.models import Account
from app.db.session import session_scope
from app.dialects.alibaba.auth import Caller, CallerDep
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


def ok(data: dict) -> dict:
    return {"code": 200, "requestId": current_request_id.get(), "data": {"code": 200, **data}}


def _id(params: Params, name: str) -> str:
    value = params.text(name)
    if not value or not ID_RE.fullmatch(value):
        raise BusinessError(400, f"{name}: 1 to 32 letters, digits, _ or -")
    return value


def _ids(params: Params, name: str) -> list[str]:
    values = params.indexed(name)
    if not values:
        raise BusinessError(400, f"{name} is missing or empty")
    for value in values:
        if not ID_RE.fullmatch(value):
            raise BusinessError(400, f"{name}: 1 to 32 letters, digits, _ or -")
    return values


def _text(params: Params, name: str, max_chars: int) -> str | None:
    value = params.text(name)
    if value is not None and len(value) > max_chars:
        raise BusinessError(400, f"{name} is longer than {max_chars}")
    return value


def _face_id(row_id: int) -> int:
    return int(vendor_face_id(Dialect.ALIBABA, row_id))


def _group_ids(account: Account, person: Key) -> list[str]:
    return [handle_of(group) for group in membership.groups_of(account, person)]


def _face_ids(params: Params) -> list[object] | None:
    """`faceIds` as sent: JSON integers (or strings of digits, from clients that quote Longs)."""
    value = params.value("faceIds")
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 1000:
        raise BusinessError(400, "faceIds must be a list of face ids")
    return value


# --- persons ------------------------------------------------------------------------------


@router.post("/green/sface/person/add")
def add_person(caller: CallerDep) -> dict:
    params = caller.params
    person_id, group_ids = _id(params, "personId"), _ids(params, "groupIds")
    name = _text(params, "name", MAX_NAME_CHARS) or ""
    note = _text(params, "note", MAX_USER_DATA_CHARS)
    _, _, groups = enrolment.create_person(caller.account, person_id, name, note, None, group_ids)
    return ok({"personId": person_id, "groupIds": [handle_of(group) for group in groups]})


@router.post("/green/sface/person")
def get_person(caller: CallerDep) -> dict:
    person = Key(_id(caller.params, "personId"))
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


@router.post("/green/sface/person/update")
def set_person(caller: CallerDep) -> dict:
    params = caller.params
    person = Key(_id(params, "personId"))
    name = _text(params, "name", MAX_NAME_CHARS)
    note = _text(params, "note", MAX_USER_DATA_CHARS)
    if name is None and note is None:
        raise BusinessError(400, "give name or note")
    membership.change(caller.account, PERSONS, person, name, note)
    return ok({"personId": person.value})


@router.post("/green/sface/person/delete")
def delete_person(caller: CallerDep) -> dict:
    person = Key(_id(caller.params, "personId"))
    membership.delete_entity(caller.account, PERSONS, person)
    return ok({"personId": person.value})


# --- groups -------------------------------------------------------------------------------


@router.post("/green/sface/groups")
def get_groups(caller: CallerDep) -> dict:
    groups = membership.entities(caller.account, GROUPS, None, 0)
    return ok({"groupIds": [handle_of(group) for group in groups]})


@router.post("/green/sface/group/persons")
def get_persons(caller: CallerDep) -> dict:
    group = Key(_id(caller.params, "groupId"))
    _, persons = membership.describe(caller.account, GROUPS, group)
    return ok({"groupId": group.value, "personIds": [person.handle for person in persons]})


def _regroup(caller: Caller, change: Callable[..., tuple[int, list]]) -> dict:
    """person/groups/add and /delete: the person joins or leaves groups; its groups after."""
    params = caller.params
    person = Key(_id(params, "personId"))
    _, groups = change(caller.account, person, _ids(params, "groupIds"))
    return ok({"personId": person.value, "groupIds": [handle_of(group) for group in groups]})


@router.post("/green/sface/person/groups/add")
def add_groups(caller: CallerDep) -> dict:
    return _regroup(caller, enrolment.join_groups)


@router.post("/green/sface/person/groups/delete")
def delete_groups(caller: CallerDep) -> dict:
    return _regroup(caller, enrolment.leave_groups)


# --- faces --------------------------------------------------------------------------------


async def _photo(account: Account, url: str) -> Photo:
    data, analysis = await analysed(account.id, url)
    return Photo(data, enrolment.largest_face(analysis), url)


@router.post("/green/sface/face/add")
async def add_faces(caller: CallerDep) -> dict:
    """Each url's largest face joins the person; a url that gives none is `success: false`."""
    params, account = caller.params, caller.account
    person = Key(_id(params, "personId"))
    urls = params.indexed("urls")
    if not urls or len(urls) > MAX_FACES_PER_PERSON:
        raise BusinessError(400, f"urls: 1 to {MAX_FACES_PER_PERSON} image urls")
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


@router.post("/green/sface/face/delete")
def delete_faces(caller: CallerDep) -> dict:
    account, params = caller.account, caller.params
    person = Key(_id(params, "personId"))
    wanted = _face_ids(params)
    if not wanted:
        raise BusinessError(400, "faceIds is missing or empty")
    with session_scope() as db:
        faces = held_or_usable_faces(db, account.id, _rows_of(wanted))
        public_ids = [face.public_id for face in faces]
    result = membership.remove_members(account, PERSONS, person, public_ids)
    return ok({"personId": person.value, "faceIds": [_face_id(r) for r in result.changed_ids]})


@router.post("/green/sface/faces")
def get_person_faces(caller: CallerDep) -> dict:
    """The seed's getPersonFacesInfo: every face of the person, or the ones asked for, each
    with the url it was added from; a requested face the person lacks is `success: false`."""
    account, params = caller.account, caller.params
    person = Key(_id(params, "personId"))
    _, members = membership.describe(account, PERSONS, person)
    with session_scope() as db:
        urls = face_sources(db, account.id, [member.row_id for member in members])
    wanted = _face_ids(params)
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


@router.post("/green/sface/search")
async def search(caller: CallerDep) -> dict:
    params, account = caller.params, caller.account
    group = Key(_id(params, "groupId"))
    top = params.integer("top", default=SEARCH_TOP, lo=1, hi=20)
    url = params.text("url")
    if not url:
        raise BusinessError(400, "url is missing")
    photo = await _photo(account, url)
    probe = matching.fresh_probe(photo.analysis.faces[0].embedding)
    work = partial(_search, account, probe, group, top)
    return ok(await get_pools().matching.run(account.id, work))
