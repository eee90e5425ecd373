"""The Tencent legacy face API: the seed's twelve person/group/face endpoints, and identify,
verify, compare and detect, which the same SDK calls.

Every call is a POST. Each operation's parameters are a `Form` declared beside its handler (the
parser reads through it, OpenAPI lists it): JSON, or multipart with the SDK's file-style parts
and `group_ids[0]` indexed arrays. Handlers call the services and format the seed's envelope; the
route class turns any error into `{"data": {}, "code", "message"}` with the HTTP status of
`errors.http_status`.
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

from app.api import fields
from app.api.analysis import analysed
from app.api.fields import JSON_OR_MULTIPART, Args, Check, Field, Form
from app.api.params import MAX_NAME_CHARS, MAX_USER_DATA_CHARS
from app.api.pools import get_pools
from app.api.responses import ApiResponse
from app.api.routing import enveloped
from app.db.models import Account
from app.db.session import session_scope
from app.dialects.tencent.auth import Caller, CallerDep, operations
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
operation = operations(router)


# --- the fields' checks: the seed's codes for empty, overlong and illegal values ---------------


def _checked_id(name: str, value: str | None) -> str:
    if not value:
        raise TencentError(Code.PARAMETER_EMPTY, f"{name} is empty")
    if len(value) > MAX_ID_CHARS:
        raise TencentError(Code.PARAMETER_TOO_LONG, f"{name} is longer than {MAX_ID_CHARS}")
    if ILLEGAL_ID_RE.search(value) or not value.isprintable():
        raise TencentError(Code.PARAMETER_ILLEGAL, f"{name} has a space, slash or control")
    return value


def _checked_ids(empty: Code) -> Check:
    """A list of ids: absent is -1301, empty is `empty`, each item as `_checked_id`."""

    def check(name: str, values: list[str] | None) -> list[str]:
        if values is None:
            raise TencentError(Code.PARAMETER_EMPTY, f"{name} is missing")
        if not values:
            raise TencentError(empty, f"{name} is an empty list")
        return [_checked_id(name, value) for value in values]

    return check


def _at_most(max_chars: int) -> Check:
    def check(name: str, value: str | None) -> str | None:
        if value is not None and len(value) > max_chars:
            raise TencentError(Code.PARAMETER_TOO_LONG, f"{name} is longer than {max_chars}")
        return value

    return check


def _id(name: str, description: str) -> Field:
    return fields.text(name, f"{description}: at most {MAX_ID_CHARS} characters, no space, slash "
                       "or control (-1301 missing, -1304 too long, -1313 illegal)", required=True,
                       max_length=MAX_ID_CHARS, check=_checked_id)  # fmt: skip


def _ids(name: str, description: str, empty: Code) -> Field:
    return fields.listing(name, f"{description}: a JSON array, or the multipart keys {name}[0], "
                          f"{name}[1], ... ({int(empty)} when empty)", required=True,
                          check=_checked_ids(empty))  # fmt: skip


def _text(name: str, description: str, max_chars: int) -> Field:
    return fields.text(name, f"{description} (-1304 beyond {max_chars} characters)",
                       max_length=max_chars, check=_at_most(max_chars))  # fmt: skip


def _photo_fields(suffix: str = "", which: str = "the photo") -> list[Field]:
    """`url<suffix>` or the multipart image part `image<suffix>`; `_source` chooses."""
    return [
        fields.text(f"url{suffix}", f"an http(s) address of {which}; used when both are given"),
        fields.image(f"image{suffix}", f"{which} (multipart); or `url{suffix}` (-1300: neither)"),
    ]


# Every call may name the AppId and bucket the signature is for (auth checks them: code 6).
TARGET = Form(
    [
        fields.text("appid", "the project's AppId; when given, the signature's"),
        fields.text("bucket", "the bucket (Python SDK); when given, the signature's"),
    ]
)
PERSON_ID = _id("person_id", "the person (the client's id)")
GROUP_ID = _id("group_id", "the group (the client's id)")
GROUP_IDS = _ids("group_ids", "group ids", Code.GROUP_LIST_EMPTY)
PERSON_NAME = _text("person_name", "the person's name", MAX_NAME_CHARS)
TAG = _text("tag", "free text kept with the person", MAX_USER_DATA_CHARS)


def _form(description: str, *declared: Field) -> Form:
    return Form(declared, JSON_OR_MULTIPART, description) + TARGET


def _source(args: Args, suffix: str = "") -> bytes | str:
    """The url when given (the seed: "if both are given, only the url is used"), else the image."""
    url_name, image_name = f"url{suffix}", f"image{suffix}"
    url = args[url_name]
    if url:
        return url
    data = args[image_name]
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


NEWPERSON = _form(
    "Create a person from a photo's largest face and put it in groups (missing groups are made).",
    PERSON_ID, GROUP_IDS, PERSON_NAME, TAG, *_photo_fields(),
)  # fmt: skip


@operation.post("/face/newperson", NEWPERSON)
async def newperson(caller: CallerDep) -> dict:
    args, account = NEWPERSON.read(caller.params), caller.account
    person_id, group_ids = args["person_id"], args["group_ids"]
    name = args["person_name"] or ""
    tag = args["tag"]
    photo = await _photo(account, _source(args))
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


DELPERSON = _form("Delete a person and its faces.", PERSON_ID)


@operation.post("/face/delperson", DELPERSON)
def delperson(caller: CallerDep) -> dict:
    person_id = DELPERSON.read(caller.params)["person_id"]
    membership.delete_entity(caller.account, PERSONS, Key(person_id))
    return ok({"deleted": 1, "person_id": person_id, "session_id": ""})


ADDFACE = _form(
    "Add each photo's largest face to a person.",
    PERSON_ID,
    TAG,
    fields.listing("urls", f"http(s) addresses of up to {MAX_FACES_PER_PERSON} photos: a JSON "
                   "array or urls[0], urls[1], ...; used when both are given"),
    fields.images("images", f"up to {MAX_FACES_PER_PERSON} photos as the multipart parts "
                  "images[0], images[1], ... (the SDK's spelling); or `urls`"),
)  # fmt: skip


@operation.post("/face/addface", ADDFACE)
async def addface(caller: CallerDep) -> dict:
    args, account = ADDFACE.read(caller.params), caller.account
    person_id, tag, urls = args["person_id"], args["tag"], args["urls"]
    # the seed: "if both are given, only the urls are used"
    sources: list[bytes | str] = [*urls] if urls else [*args["images"]]
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


DELFACE = _form(
    "Remove faces from a person.",
    PERSON_ID,
    _ids("face_ids", "the faces to remove", Code.PARAMETER_EMPTY),
)


@operation.post("/face/delface", DELFACE)
def delface(caller: CallerDep) -> dict:
    args, account = DELFACE.read(caller.params), caller.account
    person_id, wanted = args["person_id"], args["face_ids"]
    rows = [row for row in (face_row_id(Dialect.TENCENT, value) for value in wanted) if row]
    with session_scope() as db:
        public_ids = [face.public_id for face in held_or_usable_faces(db, account.id, rows)]
    result = membership.remove_members(account, PERSONS, Key(person_id), public_ids)
    if not result.changed:
        raise TencentError(Code.FACE_UNKNOWN, "none of these faces is the person's")
    deleted = [face_id(row) for row in result.changed_ids]
    return ok({"deleted": len(deleted), "face_ids": deleted, "session_id": ""})


SETINFO = _form("Change a person's name or tag.", PERSON_ID, PERSON_NAME, TAG)


@operation.post("/face/setinfo", SETINFO)
def setinfo(caller: CallerDep) -> dict:
    args, account = SETINFO.read(caller.params), caller.account
    person_id, name, tag = args["person_id"], args["person_name"], args["tag"]
    if name is None and tag is None:  # nothing to set: still an unknown person is an error
        membership.describe(account, PERSONS, Key(person_id))
    else:
        membership.change(account, PERSONS, Key(person_id), name, tag)
    return ok({"person_id": person_id, "session_id": ""})


GETINFO = _form("A person's name, tag, faces and groups.", PERSON_ID)


@operation.post("/face/getinfo", GETINFO)
def getinfo(caller: CallerDep) -> dict:
    account = caller.account
    person = Key(GETINFO.read(caller.params)["person_id"])
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


GETGROUPIDS = _form("The ids of every group of the account.")


@operation.post("/face/getgroupids", GETGROUPIDS)
def getgroupids(caller: CallerDep) -> dict:
    GETGROUPIDS.read(caller.params)
    groups = membership.entities(caller.account, GROUPS, None, 0)
    return ok({"group_ids": [handle_of(group) for group in groups]})


GETPERSONIDS = _form("The ids of a group's persons.", GROUP_ID)


@operation.post("/face/getpersonids", GETPERSONIDS)
def getpersonids(caller: CallerDep) -> dict:
    group = Key(GETPERSONIDS.read(caller.params)["group_id"])
    _, persons = membership.describe(caller.account, GROUPS, group)
    return ok({"person_ids": [person.handle for person in persons]})


GETFACEIDS = _form("The ids of a person's faces.", PERSON_ID)


@operation.post("/face/getfaceids", GETFACEIDS)
def getfaceids(caller: CallerDep) -> dict:
    person = Key(GETFACEIDS.read(caller.params)["person_id"])
    _, faces = membership.describe(caller.account, PERSONS, person)
    return ok({"face_ids": [face_id(face.row_id) for face in faces]})


GETFACEINFO = _form("One face: its box, attributes and landmarks.",
                    _id("face_id", "the face (an id addface or newperson answered)"))  # fmt: skip


@operation.post("/face/getfaceinfo", GETFACEINFO)
def getfaceinfo(caller: CallerDep) -> dict:
    wanted = GETFACEINFO.read(caller.params)["face_id"]
    row = face_row_id(Dialect.TENCENT, wanted)
    with session_scope() as db:
        faces = held_or_usable_faces(db, caller.account.id, [row] if row else [])
        if not faces:
            raise TencentError(Code.FACE_UNKNOWN, f"no such face: {wanted}")
        return ok({"face_info": face_item(faces[0])})


def _regroup_form(description: str) -> Form:
    session = fields.text("session_id", "echoed in the answer's `session_id`")
    return _form(description, PERSON_ID, GROUP_IDS, session)


ADDGROUPIDS = _regroup_form("Put a person in more groups (missing groups are made).")
DELGROUPIDS = _regroup_form("Take a person out of groups.")


def _regroup(
    caller: Caller,
    form: Form,
    change: Callable[[Account, Key, list[str]], tuple[int, list]],
    count_key: str,
) -> dict:
    """addgroupids and delgroupids: the person joins or leaves groups; the groups it is in after."""
    args = form.read(caller.params)
    person_id = args["person_id"]
    changed, groups = change(caller.account, Key(person_id), args["group_ids"])
    return ok(
        {
            "person_id": person_id,
            count_key: changed,
            "group_ids": [handle_of(group) for group in groups],
            "session_id": args["session_id"] or "",
        }
    )


@operation.post("/face/addgroupids", ADDGROUPIDS)
def addgroupids(caller: CallerDep) -> dict:
    return _regroup(caller, ADDGROUPIDS, enrolment.join_groups, "added")


@operation.post("/face/delgroupids", DELGROUPIDS)
def delgroupids(caller: CallerDep) -> dict:
    return _regroup(caller, DELGROUPIDS, enrolment.leave_groups, "deleted")


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


IDENTIFY = _form(
    f"The {IDENTIFY_TOP} persons of a group most like a photo's largest face.",
    GROUP_ID, *_photo_fields(),
)  # fmt: skip
VERIFY = _form("Whether a photo's largest face is a person's.", PERSON_ID, *_photo_fields())


async def _match(
    caller: Caller, form: Form, run: Callable[[Account, matching.Probe, Key], dict]
) -> dict:
    """identify and verify: the photo's largest face against the entity the form's first field
    names, on the fair matching pool."""
    args, account = form.read(caller.params), caller.account
    target = Key(args[form.fields[0].name])
    photo = await _photo(account, _source(args))
    work = partial(run, account, _probe(photo), target)
    return ok(await get_pools().matching.run(account.id, work))


@operation.post("/face/identify", IDENTIFY)
async def identify(caller: CallerDep) -> dict:
    return await _match(caller, IDENTIFY, _identify)


def _verify(account: Account, probe: matching.Probe, person: Key) -> dict:
    with session_scope() as db:
        result = matching.verify_person(db, account, probe, person)
    return {"session_id": "", "ismatch": result.same_person, "confidence": score(result.confidence)}


@operation.post("/face/verify", VERIFY)
async def verify(caller: CallerDep) -> dict:
    return await _match(caller, VERIFY, _verify)


# Each photo's parameters are read inside its own `fail_flag`, so they are two forms.
PHOTO_A = Form(_photo_fields("A", "the first photo"), JSON_OR_MULTIPART)
PHOTO_B = Form(_photo_fields("B", "the second photo"), JSON_OR_MULTIPART)
COMPARE = _form("How alike two photos' largest faces are.", *PHOTO_A.fields, *PHOTO_B.fields)


@operation.post("/face/compare", COMPARE)
async def compare(caller: CallerDep) -> dict:
    """Two photos' largest faces; a failure says which photo (`fail_flag` 1 or 2)."""
    params, account = caller.params, caller.account
    photos = []
    for flag, suffix, form in ((1, "A", PHOTO_A), (2, "B", PHOTO_B)):
        try:
            photos.append(await _photo(account, _source(form.read(params), suffix)))
        except ApiError as error:
            tencent = from_api_error(error)
            raise TencentError(tencent.code, tencent.message, {"fail_flag": flag}) from error
    first, second = (_probe(photo).vector for photo in photos)
    return ok({"session_id": "", "similarity": score(matching.similarity(first, second))})


DETECT = _form(
    "The faces of a photo with their attributes (kept 5 days, for getfaceinfo).",
    fields.integer("mode", "0: every face; 1: the largest only", default=0, lo=0, hi=1),
    *_photo_fields(),
)


@operation.post("/face/detect", DETECT)
async def detect(caller: CallerDep) -> dict:
    """`mode` 0: every face; 1: the largest only. Faces are kept 5 days, as detections are."""
    args, account = DETECT.read(caller.params), caller.account
    largest = args["mode"] == 1
    data, analysis = await analysed(account.id, _source(args), attributes=True)
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
