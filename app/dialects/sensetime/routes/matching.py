"""/face/verification, /face/search, /face/identification and /face/training.

Each is synchronous unless the caller sends `async=1` or the operator's work-size threshold
(FACESRV_ASYNC_THRESHOLD faces) is crossed: real SDKs treat any 202 as a failure, so 202 is
opt-in only. The asynchronous path runs the very same function and stores its body as `result`.

The endpoints are async: they parse on the event loop, then wait for a slot of the fair matching
pool (app.api.pools) without holding a thread, so a cold load of a large faceset by one account
never queues another account's cheap calls.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from fastapi import APIRouter

from app.api import fields
from app.api.fields import Args, Form
from app.api.pools import get_pools
from app.api.responses import ApiResponse
from app.config import get_settings
from app.db.models import Account
from app.db.session import session_scope
from app.dialects.sensetime.auth import Caller, CallerDep, operations
from app.domain import TaskStatus
from app.errors import invalid_argument
from app.services import matching, tasks
from app.services.matching import Candidate, Verification

router = APIRouter()
operation = operations(router)

# Every matching call may run as a task (answered 202 with a task_id for /info/task).
ASYNC = Form([fields.flag("async", "1: answer 202 with a task_id at once, the result later")])
VERIFICATION = (
    Form(
        [
            fields.text("face_id", "the face to verify", required=True),
            fields.text("face2_id", "compare with this face; or `person_id`"),
            fields.text("person_id", "compare with this person's faces; or `face2_id`"),
        ],
        description="Whether a face is of the same person as another face, or as a person.",
    )
    + ASYNC
)
SEARCH = (
    Form(
        [
            fields.text("face_id", "the face to look for", required=True),
            fields.text("faceset_id", "search this faceset; or `face_ids`"),
            fields.ids("face_ids", "search these faces; or `faceset_id`"),
            fields.integer("top", "how many candidates", default=3, lo=1, hi=10),
        ],
        description="The faces of a faceset (or of a list) most like a face.",
    )
    + ASYNC
)
IDENTIFICATION = (
    Form(
        [
            fields.text("face_id", "the face to identify", required=True),
            fields.text("group_id", "among this group's persons", required=True),
            fields.integer("top", "how many candidates", default=2, lo=1, hi=5),
        ],
        description="The persons of a group most like a face.",
    )
    + ASYNC
)
TRAINING = (
    Form(
        [
            fields.ids(name, f"{name.removesuffix('_id')} ids to prepare for matching")
            for name in ("face_id", "person_id", "faceset_id", "group_id")
        ],
        description="Build and save faceset and group indexes: their next search starts warm.",
    )
    + ASYNC
)


def _number(confidence: float) -> float | int:
    """The seed prints an exact match as `1`."""
    return 1 if confidence == 1.0 else confidence


async def _respond(
    caller: Caller,
    endpoint: str,
    args: Args,
    run: Callable[[Account, dict], dict],
    collections: tuple[list[str], list[str]] = ([], []),
) -> dict | ApiResponse:
    work = partial(_respond_now, caller, endpoint, args, run, collections)
    return await get_pools().matching.run(caller.account.id, work)


def _respond_now(
    caller: Caller,
    endpoint: str,
    args: Args,
    run: Callable[[Account, dict], dict],
    collections: tuple[list[str], list[str]] = ([], []),
) -> dict | ApiResponse:
    """Run now, or as a task when asked to or when the named facesets and groups are too big.

    `collections` (faceset ids, group ids) are only counted when the operator set a threshold:
    counting a million-face faceset on every search would cost more than the search.
    """
    threshold = get_settings().async_threshold
    asked = args.pop("async")
    if asked or (threshold and _work_size(caller, *collections) > threshold):
        account = caller.account
        task = tasks.submit(account.id, endpoint, args, lambda: run(account, args))
        body = {"status": "OK", "task_id": task.public_id, "task_status": TaskStatus.PENDING.value}
        return ApiResponse(body, status_code=202)
    return run(caller.account, args)


def _work_size(caller: Caller, faceset_ids: list[str], group_ids: list[str]) -> int:
    with session_scope() as db:
        return sum(
            matching.work_size(db, caller.account, faceset_id, None) for faceset_id in faceset_ids
        ) + sum(matching.work_size(db, caller.account, None, group_id) for group_id in group_ids)


def _verification_body(result: Verification, other_key: str, other_id: str) -> dict:
    return {
        "same_person": result.same_person,
        "confidence": _number(result.confidence),
        "face_id": result.face_id,
        other_key: other_id,
        "status": "OK",
    }


def run_verification(account: Account, args: dict) -> dict:
    with session_scope() as db:
        if args.get("face2_id") is not None:
            result = matching.verify_faces(db, account, args["face_id"], args["face2_id"])
            return _verification_body(result, "face2_id", args["face2_id"].strip().lower())
        probe = matching.stored_probe(db, account.id, args["face_id"])
        result = matching.verify_person(db, account, probe, args["person_id"])
        return _verification_body(result, "person_id", args["person_id"].strip().lower())


@operation.post("/face/verification", VERIFICATION)
async def face_verification(caller: CallerDep) -> dict | ApiResponse:
    args = VERIFICATION.read(caller.params)
    if args["face2_id"] is None and args["person_id"] is None:
        raise invalid_argument("must specify 'face2_id' or 'person_id' argument")
    return await _respond(caller, "/face/verification", args, run_verification)


def _search_candidates(candidates: list[Candidate]) -> list[dict]:
    return [{"face_id": c.public_id, "confidence": _number(c.confidence)} for c in candidates]


def run_search(account: Account, args: dict) -> dict:
    with session_scope() as db:
        probe = matching.stored_probe(db, account.id, args["face_id"])
        if args["faceset_id"] is not None:
            candidates = matching.search_faceset(
                db, account, probe, args["faceset_id"], args["top"]
            )
        else:
            candidates = matching.search_faces(db, account, probe, args["face_ids"], args["top"])
        query_id = args["face_id"].strip().lower()
    return {"candidates": _search_candidates(candidates), "face_id": query_id, "status": "OK"}


@operation.post("/face/search", SEARCH)
async def face_search(caller: CallerDep) -> dict | ApiResponse:
    args = SEARCH.read(caller.params)
    if args["faceset_id"] is None and args["face_ids"] is None:
        raise invalid_argument("must specify 'face_ids' or 'faceset_id' argument")
    facesets = [args["faceset_id"]] if args["faceset_id"] else []
    return await _respond(caller, "/face/search", args, run_search, (facesets, []))


def run_identification(account: Account, args: dict) -> dict:
    with session_scope() as db:
        probe = matching.stored_probe(db, account.id, args["face_id"])
        candidates, _ = matching.identify(db, account, probe, args["group_id"], args["top"])
    return {
        "candidates": [
            {"person_id": c.public_id, "name": c.name, "confidence": _number(c.confidence)}
            for c in candidates
        ],
        "face_id": args["face_id"].strip().lower(),
        "group_id": args["group_id"].strip().lower(),
        "status": "OK",
    }


@operation.post("/face/identification", IDENTIFICATION)
async def face_identification(caller: CallerDep) -> dict | ApiResponse:
    args = IDENTIFICATION.read(caller.params)
    return await _respond(
        caller, "/face/identification", args, run_identification, ([], [args["group_id"]])
    )


def run_training(account: Account, args: dict) -> dict:
    with session_scope() as db:
        matching.train(
            db, account, args["face_id"], args["person_id"], args["faceset_id"], args["group_id"]
        )
    return {"status": "OK"}


@operation.post("/face/training", TRAINING)
async def face_training(caller: CallerDep) -> dict | ApiResponse:
    read = TRAINING.read(caller.params)
    args = Args({name: value or [] for name, value in read.items()})
    if not any(args[name] for name in ("face_id", "person_id", "faceset_id", "group_id")):
        raise invalid_argument(
            "must specify at least one of 'face_id', 'person_id', "
            "'faceset_id' or 'group_id' argument"
        )
    collections = (args["faceset_id"], args["group_id"])
    return await _respond(caller, "/face/training", args, run_training, collections)
