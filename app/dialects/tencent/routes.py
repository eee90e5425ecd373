"""The Tencent legacy face API: the seed's twelve person/group/face endpoints, and identify,
verify, compare and detect, which the same SDK calls.

Every call is a POST. Handlers parse (the SDK's file-style multipart parts, `group_ids[0]`
indexed arrays, JSON), call the services and format the seed's envelope; the route class turns
any error into `{"data": {}, "code", "message"}` with the HTTP status of `errors.http_status`.
Persons and groups are named by the client's ids (their keys; an entity made through SenseTime
is named by its public id), faces by 19-digit ids derived from the face row.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api.analysis import analysed
from app.api.params import MAX_NAME_CHARS, MAX_USER_DATA_CHARS, Params
from app.api.pools import get_pools
from app.api.responses import ApiResponse
from app.api.routing import enveloped
from app.db.models import Account
from app.db.session import session_scope
from app.dialects.tencent.auth import Caller, CallerDep
from app.dialects.tencent.errors import Code, TencentError, from_api_error
from app.dialects.tencent.presenters import face_id, face_item, failure, ok, score
from app.domain import Dialect
from app.errors import ApiError
from app.services import detection, enrolment, matching, membership
from app.services.enrolment import Photo
from app.services.face_ids import face_row_id
from app.services.membership import GROUPS, PERSONS
from app.services.owned import Key, handle_of, held_or_usable_faces

MAX_ID_CHARS = 64  # the longest person or group id the vendor documents
ILLEGAL_ID_RE = re.compile(r"[\s/\\]")  # spaces, slashes, tabs, line breaks (-1313)
SIMILAR_FACE_CONFIDENCE = 0.99  # "a face 99% or more similar to one of the person's" (-1312)
IDENTIFY_TOP = 5
MAX_FACES_PER_PERSON = 20  # the vendor's limit, and so the most photos one addface may send


def _render(error: ApiError | None) -> ApiResponse:
    """Any error in the vendor's envelope, with the HTTP status of `errors.http_status`."""
    if error is None:
        tencent = TencentError(Code.INTERNAL, "internal error")
    else:
        tencent = from_api_error(error)
    return ApiResponse(failure(tencent), status_code=tencent.http_status)


router = APIRouter(route_class=enveloped(_render))


def _checked_id(name: str, value: str | None) -> str:
    if not value:
        raise TencentError(Code.PARAMETER_EMPTY, f"{name} is empty")
    if len(value) > MAX_ID_CHARS:
        raise TencentError(Code.PARAMETER_TOO_LONG, f"{name} is longer than {MAX_ID_CHARS}")
    if ILLEGAL_ID_RE.search(value) or not value.isprintable():
        raise TencentError(Code.PARAMETER_ILLEGAL, f"{name} has a space, slash or control")
    return value


def _id(params: Params, name: str) -> str:
    return _checked_id(name, params.text(name))


def _ids(params: Params, name: str, empty: Code) -> list[str]:
    values = params.indexed(name)
    if values is None:
        raise TencentError(Code.PARAMETER_EMPTY, f"{name} is missing")
    if not values:
        raise TencentError(empty, f"{name} is an empty list")
    return [_checked_id(name, value) for value in values]


def _text(params: Params, name: str, max_chars: int) -> str | None:
    value = params.text(name)
    if value is not None and len(value) > max_chars:
        raise TencentError(Code.PARAMETER_TOO_LONG, f"{name} is longer than {max_chars}")
    return value


def _source(params: Params, url_name: str, image_name: str) -> bytes | str:
    """The url when given (the seed: "if both are given, only the url is used"), else the image."""
    url = params.text(url_name)
    if url:
        return url
    data = params.file(image_name)
    if not data:
        raise TencentError(Code.IMAGE_EMPTY, f"no {image_name} and no {url_name}")
    return data


async def _photo(account: Account, source: bytes | str) -> Photo:
    data, analysis = await analysed(account.id, source, attributes=True)
    url = source if isinstance(source, str) else None
    return Photo(data, enrolment.largest_face(analysis), url)


def _probe(photo: Photo) -> matching.Probe:
    """The photo's face as a probe: compared as it is, never stored."""
    return matching.fresh_probe(photo.analysis.faces[0].embedding)


def _group_handles(account: Account, person: Key) -> list[str]:
    return [handle_of(group) for group in membership.groups_of(account, person)]


# --- persons and their faces ---------------------------------------------------------------


@router.post("/face/newperson")
async def newperson(caller: CallerDep) -> dict:
    params, account = caller.params, caller.account
    person_id = _id(params, "person_id")
    group_ids = _ids(params, "group_ids", Code.GROUP_LIST_EMPTY)
    name = _text(params, "person_name", MAX_NAME_CHARS) or ""
    tag = _text(params, "tag", MAX_USER_DATA_CHARS)
    photo = await _photo(account, _source(params, "url", "image"))
    create = partial(enrolment.create_person, account, person_id, name, tag, photo, group_ids)
    person, face, groups = await run_in_threadpool(create)
    return ok(
        {
            "person_id": person.key,
            "suc_group": len(groups),
            "suc_face": 1,
            "session_id": "",
            "face_id": face_id(face.id) if face else "",
            "group_ids": [handle_of(group) for group in groups],
        }
    )


@router.post("/face/delperson")
def delperson(caller: CallerDep) -> dict:
    person_id = _id(caller.params, "person_id")
    membership.delete_entity(caller.account, PERSONS, Key(person_id))
    return ok({"deleted": 1, "person_id": person_id, "session_id": ""})


@router.post("/face/addface")
async def addface(caller: CallerDep) -> dict:
    params, account = caller.params, caller.account
    person_id = _id(params, "person_id")
    tag = _text(params, "tag", MAX_USER_DATA_CHARS)
    urls = params.indexed("urls")  # the seed: "if both are given, only the urls are used"
    sources: list[bytes | str] = [*urls] if urls else [*params.indexed_files("images")]
    if not any(sources):
        raise TencentError(Code.IMAGE_EMPTY, "no images and no urls")
    if len(sources) > MAX_FACES_PER_PERSON:
        raise TencentError(Code.TOO_MANY_FACES, f"more than {MAX_FACES_PER_PERSON} images")
    await run_in_threadpool(membership.describe, account, PERSONS, Key(person_id))
    photos: list[Photo | ApiError] = []
    for source in sources:
        try:
            if not source:
                raise TencentError(Code.IMAGE_EMPTY, "an image is empty")
            photos.append(await _photo(account, source))
        except ApiError as error:
            photos.append(error)
    add = partial(
        enrolment.add_faces, account, Key(person_id), photos, tag, SIMILAR_FACE_CONFIDENCE
    )
    results = await run_in_threadpool(add)
    errors = [from_api_error(result.error) if result.error else None for result in results]
    added = [face_id(result.face.id) for result in results if result.face is not None]
    codes = [int(error.code) if error else 0 for error in errors]
    data = {"added": len(added), "session_id": "", "face_ids": added, "ret_codes": codes}
    if not added:  # nothing joined: the call fails with the first photo's reason
        first = next(error for error in errors if error is not None)
        raise TencentError(first.code, first.message, data)
    return ok(data)


@router.post("/face/delface")
def delface(caller: CallerDep) -> dict:
    params, account = caller.params, caller.account
    person_id = _id(params, "person_id")
    wanted = _ids(params, "face_ids", Code.PARAMETER_EMPTY)
    rows = [row for row in (face_row_id(Dialect.TENCENT, value) for value in wanted) if row]
    with session_scope() as db:
        public_ids = [face.public_id for face in held_or_usable_faces(db, account.id, rows)]
    result = membership.remove_members(account, PERSONS, Key(person_id), public_ids)
    if not result.changed:
        raise TencentError(Code.FACE_UNKNOWN, "none of these faces is the person's")
    deleted = [face_id(row) for row in result.changed_ids]
    return ok({"deleted": len(deleted), "face_ids": deleted, "session_id": ""})


@router.post("/face/setinfo")
def setinfo(caller: CallerDep) -> dict:
    params, account = caller.params, caller.account
    person_id = _id(params, "person_id")
    name = _text(params, "person_name", MAX_NAME_CHARS)
    tag = _text(params, "tag", MAX_USER_DATA_CHARS)
    if name is None and tag is None:  # nothing to set: still an unknown person is an error
        membership.describe(account, PERSONS, Key(person_id))
    else:
        membership.change(account, PERSONS, Key(person_id), name, tag)
    return ok({"person_id": person_id, "session_id": ""})


@router.post("/face/getinfo")
def getinfo(caller: CallerDep) -> dict:
    account = caller.account
    person = Key(_id(caller.params, "person_id"))
    entity, faces = membership.describe(account, PERSONS, person)
    return ok(
        {
            "person_id": handle_of(entity),
            "person_name": entity.name,
            "face_ids": [face_id(face.row_id) for face in faces],
            "group_ids": _group_handles(account, person),
            "tag": entity.user_data or "",
            "session_id": "",
        }
    )


@router.post("/face/getgroupids")
def getgroupids(caller: CallerDep) -> dict:
    groups = membership.entities(caller.account, GROUPS, None, 0)
    return ok({"group_ids": [handle_of(group) for group in groups]})


@router.post("/face/getpersonids")
def getpersonids(caller: CallerDep) -> dict:
    group = Key(_id(caller.params, "group_id"))
    _, persons = membership.describe(caller.account, GROUPS, group)
    return ok({"person_ids": [person.handle for person in persons]})


@router.post("/face/getfaceids")
def getfaceids(caller: CallerDep) -> dict:
    person = Key(_id(caller.params, "person_id"))
    _, faces = membership.describe(caller.account, PERSONS, person)
    return ok({"face_ids": [face_id(face.row_id) for face in faces]})


@router.post("/face/getfaceinfo")
def getfaceinfo(caller: CallerDep) -> dict:
    wanted = _id(caller.params, "face_id")
    row = face_row_id(Dialect.TENCENT, wanted)
    with session_scope() as db:
        faces = held_or_usable_faces(db, caller.account.id, [row] if row else [])
        if not faces:
            raise TencentError(Code.FACE_UNKNOWN, f"no such face: {wanted}")
        return ok({"face_info": face_item(faces[0])})


def _regroup(
    caller: Caller, change: Callable[[Account, Key, list[str]], tuple[int, list]], count_key: str
) -> dict:
    """addgroupids and delgroupids: the person joins or leaves groups; the groups it is in after."""
    params = caller.params
    person_id = _id(params, "person_id")
    group_ids = _ids(params, "group_ids", Code.GROUP_LIST_EMPTY)
    changed, groups = change(caller.account, Key(person_id), group_ids)
    return ok(
        {
            "person_id": person_id,
            count_key: changed,
            "group_ids": [handle_of(group) for group in groups],
            "session_id": params.text("session_id") or "",
        }
    )


@router.post("/face/addgroupids")
def addgroupids(caller: CallerDep) -> dict:
    return _regroup(caller, enrolment.join_groups, "added")


@router.post("/face/delgroupids")
def delgroupids(caller: CallerDep) -> dict:
    return _regroup(caller, enrolment.leave_groups, "deleted")


# --- matching and detection -------------------------------------------------------------------


def _identify(account: Account, probe: matching.Probe, group: Key) -> dict:
    started = time.perf_counter()
    with session_scope() as db:
        candidates, group_size = matching.identify(db, account, probe, group, IDENTIFY_TOP)
    return {
        "session_id": "",
        "candidates": [
            {
                "person_id": candidate.key or candidate.public_id,
                "face_id": face_id(candidate.face_row or 0),
                "confidence": score(candidate.confidence),
                "tag": candidate.user_data or "",
            }
            for candidate in candidates
        ],
        "group_size": group_size,
        "time_ms": int((time.perf_counter() - started) * 1000),
    }


async def _match(
    caller: Caller, id_name: str, run: Callable[[Account, matching.Probe, Key], dict]
) -> dict:
    """identify and verify: the photo's largest face against the entity named by `id_name`,
    on the fair matching pool."""
    params, account = caller.params, caller.account
    target = Key(_id(params, id_name))
    photo = await _photo(account, _source(params, "url", "image"))
    work = partial(run, account, _probe(photo), target)
    return ok(await get_pools().matching.run(account.id, work))


@router.post("/face/identify")
async def identify(caller: CallerDep) -> dict:
    return await _match(caller, "group_id", _identify)


def _verify(account: Account, probe: matching.Probe, person: Key) -> dict:
    with session_scope() as db:
        result = matching.verify_person(db, account, probe, person)
    return {"session_id": "", "ismatch": result.same_person, "confidence": score(result.confidence)}


@router.post("/face/verify")
async def verify(caller: CallerDep) -> dict:
    return await _match(caller, "person_id", _verify)


@router.post("/face/compare")
async def compare(caller: CallerDep) -> dict:
    """Two photos' largest faces; a failure says which photo (`fail_flag` 1 or 2)."""
    params, account = caller.params, caller.account
    photos = []
    for flag, suffix in ((1, "A"), (2, "B")):
        try:
            photos.append(await _photo(account, _source(params, f"url{suffix}", f"image{suffix}")))
        except ApiError as error:
            tencent = from_api_error(error)
            raise TencentError(tencent.code, tencent.message, {"fail_flag": flag}) from error
    first, second = (_probe(photo).vector for photo in photos)
    return ok({"session_id": "", "similarity": score(matching.similarity(first, second))})


@router.post("/face/detect")
async def detect(caller: CallerDep) -> dict:
    """`mode` 0: every face; 1: the largest only. Faces are kept 5 days, as detections are."""
    params, account = caller.params, caller.account
    largest = params.integer("mode", default=0, lo=0, hi=1) == 1
    data, analysis = await analysed(account.id, _source(params, "url", "image"), attributes=True)
    if largest or not analysis.faces:
        analysis = enrolment.largest_face(analysis)
    stored = await run_in_threadpool(_store, account, analysis, data)
    return ok(
        {
            "session_id": "",
            "image_height": stored.image.height,
            "image_width": stored.image.width,
            "face": [face_item(face, beauty=True) for face in stored.faces],
        }
    )


def _store(account: Account, analysis: detection.Analysis, data: bytes) -> detection.Detection:
    with session_scope() as db:
        return detection.store(db, account, analysis, data, None)
