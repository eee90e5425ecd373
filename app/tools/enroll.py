"""Bulk enrolment: a photo archive (a folder per person, or a table) into SenseTime persons.

Moving to facesrv usually starts with thousands of labelled photos and no wish to script a
thousand API calls. `facesrv enroll` takes them as they are filed and makes one person per name
with one face per photo, optionally putting the persons in a group and the faces in a faceset.

What makes it safe to run on a large archive, and again:

- **Resumable from the store itself.** Each enrolled photo's image carries the photo's SHA-256
  in its `user_data` (`MARK`), written in the same transaction as the face (in-process) or in the
  detection call that made the face (`--url`). A rerun reads back which photos the account's
  persons already hold and skips them, so a kill at any point leaves nothing to clean up: no
  state file that could disagree with the database. In-process, a batch of photos (`BATCH`)
  commits its images, faces, persons, groups and facesets together or not at all: a kill loses
  at most the batch being written, never half a photo.
- **Quotas are checked before anything is written**: the run counts what it would create and
  refuses up front, naming the quota and by how much, instead of failing half way.
- **Per-photo failures never stop the run**: they are listed at the end and written to a TSV.
- **Parallel where it pays**: reading, decoding and inference run in a thread pool (the models
  use every core, `detection.analyse` serialises the inference itself); the writes are made by
  one thread, in order, so persons are created once and the account lock is never contended.

Persons are found again by name: in-process by their key (the id Tencent, Alibaba and Huawei
clients name a person by), which a person made here gets equal to its name, else by the name of
a person without a key (the oldest, when several share it); through `--url`, by name.
"""

from __future__ import annotations

import csv
import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TextIO

from app.errors import ApiError, bad_request

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
MARK = "facesrv-enroll sha256="  # an enrolled photo's image user_data: MARK + hex digest
ERROR_COLUMNS = ("path", "person", "status", "reason")


class PlanError(ValueError):
    """PATH cannot be read as persons' photos: refused before anything is written."""


class QuotaRefused(ValueError):
    """The run would exceed a quota: refused before anything is written."""


@dataclass(frozen=True)
class Entry:
    """One photo to enrol, as the folder or the table gives it."""

    path: Path
    shown: str  # how the summary and the errors file name it: as the source wrote it
    person: str
    group: str | None = None
    faceset: str | None = None


@dataclass(frozen=True)
class Failure:
    shown: str
    person: str
    status: str
    reason: str


def mark(digest: str) -> str:
    return MARK + digest


def marked_digest(user_data: str | None) -> str | None:
    """The SHA-256 an enrolled photo's image carries, or None for any other image."""
    if user_data and user_data.startswith(MARK):
        return user_data[len(MARK) :]
    return None


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def read_plan(source: Path, group: str | None = None, faceset: str | None = None) -> list[Entry]:
    """The photos under `source`: a folder of folders (one per person, named by it) or a TSV/CSV
    table with columns image, person[, group][, faceset] (paths relative to the table).

    A table's group and faceset columns win over `group`/`faceset` where they are not empty.
    """
    if source.is_dir():
        entries = []
        for folder in sorted(p for p in source.iterdir() if p.is_dir()):
            for photo in sorted(p for p in folder.iterdir() if p.is_file()):
                if photo.suffix.lower() in IMAGE_SUFFIXES:
                    shown = str(photo.relative_to(source))
                    entries.append(Entry(photo, shown, folder.name, group, faceset))
        if not entries:
            raise PlanError(f"{source}: no photos in folders (expected PATH/PERSON/PHOTO.jpg)")
        return entries
    if not source.is_file():
        raise PlanError(f"{source}: no such folder or file")
    delimiter = "\t" if source.suffix.lower() in (".tsv", ".tab") else ","
    with source.open(newline="", encoding="utf-8-sig") as table:
        rows = csv.DictReader(table, delimiter=delimiter)
        columns = {name.strip().lower(): name for name in rows.fieldnames or []}
        missing = [name for name in ("image", "person") if name not in columns]
        if missing:
            raise PlanError(
                f"{source}: no column {', '.join(missing)} (expected image, person[, group]"
                f"[, faceset], {'tab' if delimiter == chr(9) else 'comma'}-separated)"
            )
        entries = []
        for number, row in enumerate(rows, start=2):
            image = _blank(row.get(columns["image"]))
            person = _blank(row.get(columns["person"]))
            if image is None or person is None:
                raise PlanError(f"{source}, line {number}: image and person are required")
            own_group = _blank(row.get(columns["group"])) if "group" in columns else None
            own_faceset = _blank(row.get(columns["faceset"])) if "faceset" in columns else None
            entries.append(
                Entry(
                    source.parent / image,
                    image,
                    person,
                    own_group or group,
                    own_faceset or faceset,
                )
            )
    if not entries:
        raise PlanError(f"{source}: the table lists no photos")
    return entries


@dataclass
class Holdings:
    """What the account already has of what the run touches: the quota check's and the
    resume's starting point."""

    quota: dict[str, int]
    persons: int  # the account's totals
    groups: int
    facesets: int
    person_faces: dict[str, int] = field(default_factory=dict)  # person name -> faces
    group_members: dict[str, set[str]] = field(default_factory=dict)  # group -> person names
    faceset_faces: dict[str, set[str]] = field(default_factory=dict)  # faceset -> face ids
    enrolled: dict[str, str] = field(default_factory=dict)  # sha256 -> face id held by a person


@dataclass(frozen=True)
class Detected:
    """A photo reduced to the face to enrol: the analysis in-process, a face id over HTTP."""

    data: bytes
    digest: str
    analysis: Any = None
    face_id: str | None = None


class Target(Protocol):
    """Where persons are enrolled: the local store (`Store`) or a server (`Remote`)."""

    def holdings(self, entries: list[Entry]) -> Holdings: ...

    def detect(self, entry: Entry, data: bytes, digest: str, single_face_only: bool) -> Detected:
        """Thread-safe: runs in the pool."""
        ...

    def write_batch(
        self, ready: list[tuple[Entry, Detected]]
    ) -> tuple[Counter[str], list[ApiError | None]]:
        """One thread only: what the photos created (persons, groups, facesets) and, for each
        photo, None or why it failed."""
        ...

    def join_group(self, person: str, group: str) -> Counter[str]: ...

    def add_to_faceset(self, face_id: str, faceset: str) -> Counter[str]: ...

    def close(self) -> None: ...


def pick_face(areas: list[float], single_face_only: bool) -> int:
    """The index of the face to enrol: the largest, or the only one when asked for one."""
    if not areas:
        raise bad_request("NO_FACE", "no face found in the photo")
    if single_face_only and len(areas) > 1:
        raise bad_request("SEVERAL_FACES", f"{len(areas)} faces in the photo (--single-face-only)")
    return max(range(len(areas)), key=areas.__getitem__)


# Quotas -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    """What a run will do, worked out before it starts."""

    todo: list[Entry]  # photos to enrol, in order
    skipped: int  # already enrolled
    duplicates: int  # the same bytes as an earlier photo of this run
    joins: list[tuple[str, str]]  # (person, group) of enrolled persons not yet in their group
    faceset_adds: list[tuple[str, str]]  # (face id, faceset) of enrolled faces not yet there
    unreadable: list[Failure]


def quota_problems(work: Work, held: Holdings) -> list[str]:
    """Each quota the run would exceed, saying by how much: empty when it fits.

    Counted as if every photo gave a face, so a run that passes cannot fail on quota (unless
    another client fills the account meanwhile)."""
    quota = held.quota
    problems = []

    def check(name: str, would: int, what: str) -> None:
        if would > quota[name]:
            problems.append(
                f"quota '{name}' is {quota[name]}: {what} would have {would} "
                f"({would - quota[name]} over)"
            )

    faces_added = Counter(entry.person for entry in work.todo)
    new_persons = set(faces_added) - set(held.person_faces)
    check("persons", held.persons + len(new_persons), "the account")
    if faces_added:
        person = max(
            faces_added, key=lambda name: held.person_faces.get(name, 0) + faces_added[name]
        )
        check(
            "faces_per_person",
            held.person_faces.get(person, 0) + faces_added[person],
            f"person '{person}'",
        )
    joiners: dict[str, set[str]] = {}
    for entry in work.todo:
        if entry.group:
            joiners.setdefault(entry.group, set()).add(entry.person)
    for person, group in work.joins:
        joiners.setdefault(group, set()).add(person)
    check("groups", held.groups + len(set(joiners) - set(held.group_members)), "the account")
    if joiners:
        sizes = {g: len(held.group_members.get(g, set()) | people) for g, people in joiners.items()}
        group = max(sizes, key=sizes.__getitem__)
        check("persons_per_group", sizes[group], f"group '{group}'")
    into_faceset = Counter(entry.faceset for entry in work.todo if entry.faceset)
    into_faceset.update(faceset for _face, faceset in work.faceset_adds)
    new_facesets = set(into_faceset) - set(held.faceset_faces)
    check("facesets", held.facesets + len(new_facesets), "the account")
    if into_faceset:
        sizes = {f: len(held.faceset_faces.get(f, set())) + n for f, n in into_faceset.items()}
        faceset = max(sizes, key=sizes.__getitem__)
        check("faces_per_faceset", sizes[faceset], f"faceset '{faceset}'")
    return problems


QUOTA_HINT = (
    "Nothing was written. An account's quotas are set when it is made: "
    "`facesrv account create --name NAME --quota faces_per_person=N,...` "
    "(FACESRV_DEFAULT_QUOTA for accounts made without --quota); "
    "or enrol fewer photos (--limit, or a smaller PATH)."
)


# The run ----------------------------------------------------------------------------------------


@dataclass
class Summary:
    planned: int
    enrolled: int = 0
    skipped: int = 0
    duplicates: int = 0
    joined: int = 0
    left: int = 0  # photos not attempted because of --limit
    created: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    errors_path: Path | None = None

    def lines(self) -> list[str]:
        rate = self.enrolled / self.seconds if self.seconds else 0.0
        made = ", ".join(f"{k} {self.created[k]}" for k in ("persons", "groups", "facesets"))
        lines = [
            f"photos: {self.planned} listed, {self.enrolled} enrolled, {self.skipped} already "
            f"enrolled, {self.duplicates} duplicates, {len(self.failures)} failed"
            + (f", {self.left} left for a later run (--limit)" if self.left else ""),
            f"created: {made}" + (f"; {self.joined} memberships repaired" if self.joined else ""),
            f"time: {self.seconds:.1f} s, {rate:.2f} photos/s",
        ]
        if self.failures:
            by_status = Counter(failure.status for failure in self.failures)
            shown = ", ".join(f"{status} {n}" for status, n in by_status.most_common())
            lines.append(f"failed: {shown} (listed in {self.errors_path})")
            lines.extend(
                f"  {f.shown}\t{f.status}\t{f.reason}" for f in self.failures[:FAILURES_SHOWN]
            )
            if len(self.failures) > FAILURES_SHOWN:
                lines.append(f"  ... and {len(self.failures) - FAILURES_SHOWN} more")
        return lines


FAILURES_SHOWN = 20
BATCH = 16  # photos per write transaction: a commit and the lookups are shared by them


def _failure(entry: Entry, error: Exception) -> Failure:
    if isinstance(error, ApiError):
        return Failure(entry.shown, entry.person, error.status, error.reason or error.status)
    if isinstance(error, OSError):
        return Failure(entry.shown, entry.person, "UNREADABLE_FILE", error.strerror or str(error))
    return Failure(entry.shown, entry.person, type(error).__name__, str(error))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plan_work(entries: list[Entry], held: Holdings) -> Work:
    """Hash every photo, drop those the account holds already and repeats within the run, and
    find the memberships an earlier run did not finish (a `--url` run killed between calls, or
    a rerun with a new --group or --faceset)."""
    todo, unreadable = [], []
    seen: set[str] = set()
    skipped = duplicates = 0
    joins: dict[tuple[str, str], None] = {}
    faceset_adds: dict[tuple[str, str], None] = {}
    for entry in entries:
        try:
            digest = _digest(entry.path)
        except OSError as error:
            unreadable.append(_failure(entry, error))
            continue
        if digest in held.enrolled:
            skipped += 1
            if entry.group and entry.person not in held.group_members.get(entry.group, set()):
                joins[(entry.person, entry.group)] = None
            face_id = held.enrolled[digest]
            if entry.faceset and face_id not in held.faceset_faces.get(entry.faceset, set()):
                faceset_adds[(face_id, entry.faceset)] = None
        elif digest in seen:
            duplicates += 1
        else:
            seen.add(digest)
            todo.append(entry)
    return Work(todo, skipped, duplicates, list(joins), list(faceset_adds), unreadable)


class _ErrorsFile:
    """The errors TSV, written as failures happen (a killed run still leaves its list)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: TextIO = path.open("w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file, delimiter="\t", lineterminator="\n")
        self.writer.writerow(ERROR_COLUMNS)
        self.file.flush()

    def add(self, failure: Failure) -> None:
        reason = " ".join(failure.reason.split())  # one line per photo
        self.writer.writerow((failure.shown, failure.person, failure.status, reason))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def enroll(
    entries: list[Entry],
    target: Target,
    *,
    errors_path: Path,
    workers: int | None = None,
    single_face_only: bool = False,
    limit: int | None = None,
    progress: bool = True,
    batch: int = BATCH,
) -> Summary:
    """Enrol `entries` into `target`; QuotaRefused (nothing written) when they would not fit.

    `limit` enrols at most that many new photos this run (the rest on a later one); `batch`
    photos share a write transaction (in-process), detected while the previous batch is written.
    """
    started = time.perf_counter()
    try:
        held = target.holdings(entries)
        work = plan_work(entries, held)
        todo = work.todo if limit is None else work.todo[: max(limit, 0)]
        problems = quota_problems(replace(work, todo=todo), held)  # --limit may make it fit
    except BaseException:
        target.close()
        raise
    if problems:
        target.close()
        raise QuotaRefused("\n".join(["the run would exceed the account's quota:", *problems]))
    summary = Summary(
        planned=len(entries),
        skipped=work.skipped,
        duplicates=work.duplicates,
        left=len(work.todo) - len(todo),
        errors_path=errors_path,
    )
    errors = _ErrorsFile(errors_path)

    def failed(failure: Failure) -> None:
        summary.failures.append(failure)
        errors.add(failure)

    try:
        for failure in work.unreadable:
            failed(failure)
        for person, group in work.joins:
            try:
                summary.created.update(target.join_group(person, group))
                summary.joined += 1
            except ApiError as error:
                failed(Failure(person, person, error.status, f"joining group {group}: {error}"))
        for face_id, faceset in work.faceset_adds:
            try:
                summary.created.update(target.add_to_faceset(face_id, faceset))
                summary.joined += 1
            except ApiError as error:
                failed(Failure(face_id, "", error.status, f"adding to faceset {faceset}: {error}"))
        _run_photos(todo, target, summary, failed, workers, single_face_only, progress, batch)
    finally:
        errors.close()
        target.close()
        summary.seconds = time.perf_counter() - started
    return summary


def _run_photos(
    todo: list[Entry],
    target: Target,
    summary: Summary,
    failed: Callable[[Failure], None],
    workers: int | None,
    single_face_only: bool,
    progress: bool,
    batch_size: int,
) -> None:
    """Detect in the pool, write here: batch k is written (one transaction) while batch k+1 is
    detected, so the writes hide behind the inference and memory stays flat on any archive."""
    from tqdm import tqdm

    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(todo), unit="photo", disable=not progress or not todo, smoothing=0.1)

    def detect(entry: Entry) -> Detected:
        data = entry.path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()  # as read now, should the file have changed
        return target.detect(entry, data, digest, single_face_only)

    size = max(batch_size, 1)
    batches = [todo[start : start + size] for start in range(0, len(todo), size)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="enroll") as pool:
        submitted: list[list[Future[Detected]]] = []
        try:
            if batches:
                submitted.append([pool.submit(detect, entry) for entry in batches[0]])
            for index, batch in enumerate(batches):
                if index + 1 < len(batches):
                    submitted.append([pool.submit(detect, entry) for entry in batches[index + 1]])
                ready: list[tuple[Entry, Detected]] = []
                for entry, future in zip(batch, submitted[index], strict=True):
                    try:
                        ready.append((entry, future.result()))
                    except (ApiError, OSError) as error:
                        failed(_failure(entry, error))
                made, outcomes = target.write_batch(ready) if ready else (Counter(), [])
                summary.created.update(made)
                for (entry, _found), error in zip(ready, outcomes, strict=True):
                    if error is None:
                        summary.enrolled += 1
                    else:
                        failed(_failure(entry, error))
                bar.update(len(batch))
        except BaseException:
            for futures in submitted:
                for future in futures:
                    future.cancel()
            raise
        finally:
            bar.close()


def _one_by_one(
    write: Callable[[Entry, Detected], Counter[str]], ready: list[tuple[Entry, Detected]]
) -> tuple[Counter[str], list[ApiError | None]]:
    """Each photo in its own transaction (or calls): a refusal is that photo's alone."""
    made: Counter[str] = Counter()
    outcomes: list[ApiError | None] = []
    for entry, found in ready:
        try:
            made.update(write(entry, found))
            outcomes.append(None)
        except ApiError as error:
            outcomes.append(error)
    return made, outcomes


# In-process: the store and the models ------------------------------------------------------------


class Store:
    """The local store (FACESRV_DATABASE_URL) and the model pack, through the services."""

    def __init__(self, api_id: str, *, attributes: bool = False) -> None:
        from app.db.session import session_scope
        from app.services.accounts import find_account

        with session_scope() as db:
            account = find_account(db, api_id)
            if account is None:
                raise LookupError(f"no account {api_id}")
        self.account = account
        self.attributes = attributes

    @staticmethod
    def _find(db: Any, model: Any, name: str) -> Any:
        """The entity keyed by `name`, else the oldest without a key named so, else None."""
        from sqlalchemy import select

        from app.db.models import MAX_KEY_CHARS
        from app.services.owned import Key, find_owned

        if len(name) <= MAX_KEY_CHARS:
            try:
                return find_owned(db, model, db.info["account_id"], Key(name), "NOT_FOUND")
            except ApiError:
                pass
        query = (
            select(model)
            .where(
                model.account_id == db.info["account_id"],
                model.key.is_(None),
                model.name == name,
            )
            .order_by(model.id)
            .limit(1)
        )
        return db.scalar(query)

    @staticmethod
    def _key(name: str) -> str | None:
        from app.db.models import MAX_KEY_CHARS

        return name if len(name) <= MAX_KEY_CHARS else None

    def _session(self) -> Any:
        from app.db.session import session_scope

        return session_scope()

    def holdings(self, entries: list[Entry]) -> Holdings:
        from sqlalchemy import func, select

        from app.db.models import Face, Faceset, FacesetFace, Group, GroupMember, Image, Person
        from app.services.accounts import quota_of, usage_of

        account_id = self.account.id
        with self._session() as db:
            db.info["account_id"] = account_id
            usage = usage_of(db, account_id)
            held = Holdings(
                quota_of(self.account), usage["persons"], usage["groups"], usage["facesets"]
            )
            for name in dict.fromkeys(entry.person for entry in entries):
                person = self._find(db, Person, name)
                if person is not None:
                    count = select(func.count()).where(Face.person_id == person.id)
                    held.person_faces[name] = db.scalar(count) or 0
            for name in dict.fromkeys(entry.group for entry in entries if entry.group):
                group = self._find(db, Group, name)
                if group is not None:
                    members = select(Person.name).join(
                        GroupMember, GroupMember.person_id == Person.id
                    )
                    held.group_members[name] = set(
                        db.scalars(members.where(GroupMember.group_id == group.id))
                    )
            for name in dict.fromkeys(entry.faceset for entry in entries if entry.faceset):
                faceset = self._find(db, Faceset, name)
                if faceset is not None:
                    faces = select(Face.public_id).join(FacesetFace, FacesetFace.face_id == Face.id)
                    held.faceset_faces[name] = set(
                        db.scalars(faces.where(FacesetFace.faceset_id == faceset.id))
                    )
            query = (
                select(Image.user_data, Face.public_id)
                .join(Face, Face.image_id == Image.id)
                .where(
                    Face.account_id == account_id,
                    Face.person_id.is_not(None),
                    Image.user_data.startswith(MARK),
                )
            )
            for user_data, face_id in db.execute(query):
                digest = marked_digest(user_data)
                if digest:
                    held.enrolled[digest] = face_id
        return held

    def detect(self, entry: Entry, data: bytes, digest: str, single_face_only: bool) -> Detected:
        from app.services import detection

        analysis = detection.analyse(
            data, attributes=self.attributes, emotions=False, auto_rotate=False
        )
        areas = [float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])) for f in analysis.faces]
        chosen = pick_face(areas, single_face_only)
        return Detected(data, digest, analysis=analysis.only_face(chosen))

    def _person_ref(self, db: Any, name: str, face_ids: list[str], made: Counter[str]) -> str:
        """The person's public id, the faces joining it; made (with them) if missing."""
        from app.db.models import Person
        from app.services import membership

        person = self._find(db, Person, name)
        if person is None:
            person, _ = membership.create(
                self.account, membership.PERSONS, name, None, face_ids, key=self._key(name)
            )
            made["persons"] += 1
        elif face_ids:
            membership.add_members(self.account, membership.PERSONS, person.public_id, face_ids)
        return person.public_id

    def _holder(self, db: Any, spec: Any, name: str, made: Counter[str]) -> str:
        from app.services import membership

        entity = self._find(db, spec.model, name)
        if entity is None:
            entity, _ = membership.create(self.account, spec, name, None, [], key=self._key(name))
            made[spec.quota] += 1  # "groups" or "facesets"
        return entity.public_id

    def _write(self, work: Callable[[Any, Counter[str]], None]) -> Counter[str]:
        from app.services.accounts import account_write

        made: Counter[str] = Counter()
        with account_write(self.account.id) as db:
            db.info["account_id"] = self.account.id
            work(db, made)
        return made  # only once committed: a refused step rolls the whole batch back

    def _enrol(self, ready: list[tuple[Entry, Detected]]) -> Counter[str]:
        """Photos' images and faces, their persons, groups and facesets in one transaction;
        each person, group and faceset is looked up and joined once for the whole batch."""
        from app.services import detection, membership

        def work(db: Any, made: Counter[str]) -> None:
            persons: dict[str, list[str]] = {}  # name -> new face ids
            groups: dict[str, list[str]] = {}  # group -> person names
            facesets: dict[str, list[str]] = {}  # faceset -> new face ids
            for entry, found in ready:
                stored = detection.store(
                    db,
                    self.account,
                    found.analysis,
                    found.data,
                    mark(found.digest),
                    entry.path.resolve().as_uri(),
                )
                (face,) = stored.faces
                persons.setdefault(entry.person, []).append(face.public_id)
                if entry.group:
                    groups.setdefault(entry.group, []).append(entry.person)
                if entry.faceset:
                    facesets.setdefault(entry.faceset, []).append(face.public_id)
            person_ids = {
                name: self._person_ref(db, name, faces, made) for name, faces in persons.items()
            }
            for group, names in groups.items():
                group_id = self._holder(db, membership.GROUPS, group, made)
                members = list(dict.fromkeys(person_ids[name] for name in names))
                membership.add_members(self.account, membership.GROUPS, group_id, members)
            for faceset, faces in facesets.items():
                faceset_id = self._holder(db, membership.FACESETS, faceset, made)
                membership.add_members(self.account, membership.FACESETS, faceset_id, faces)

        return self._write(work)

    def write_batch(
        self, ready: list[tuple[Entry, Detected]]
    ) -> tuple[Counter[str], list[ApiError | None]]:
        if len(ready) > 1:
            try:
                return self._enrol(ready), [None] * len(ready)
            except ApiError:
                pass  # a refused photo (a quota filled meanwhile): photo by photo, to name it
        return _one_by_one(lambda entry, found: self._enrol([(entry, found)]), ready)

    def join_group(self, person: str, group: str) -> Counter[str]:
        from app.services import membership

        def work(db: Any, made: Counter[str]) -> None:
            person_id = self._person_ref(db, person, [], made)
            group_id = self._holder(db, membership.GROUPS, group, made)
            membership.add_members(self.account, membership.GROUPS, group_id, [person_id])

        return self._write(work)

    def add_to_faceset(self, face_id: str, faceset: str) -> Counter[str]:
        from app.services import membership

        def work(db: Any, made: Counter[str]) -> None:
            faceset_id = self._holder(db, membership.FACESETS, faceset, made)
            membership.add_members(self.account, membership.FACESETS, faceset_id, [face_id])

        return self._write(work)

    def close(self) -> None:
        pass


# Over HTTP: a running server's SenseTime API -----------------------------------------------------


RATE_LIMIT_RETRIES = 30


class Remote:
    """A running facesrv (or any SenseTime v1 server) through /face/detection, /person/*,
    /group/*, /faceset/* and /info/*. Each step is its own call, so a kill between two of a
    photo's calls can leave its person out of a group or its face out of a faceset; the next
    run finds and repairs that (`plan_work`)."""

    def __init__(self, url: str, api_id: str, api_secret: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.auth = {"api_id": api_id, "api_secret": api_secret}
        self.timeout = timeout
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self.ids: dict[str, dict[str, str]] = {"person": {}, "group": {}, "faceset": {}}

    def _client(self) -> Any:
        import httpx

        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(base_url=self.url, timeout=self.timeout)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def call(self, path: str, files: dict | None = None, **params: Any) -> dict:
        """One API call; waits out RATE_LIMIT_EXCEEDED (Retry-After) and raises ApiError for
        any other refusal."""
        import httpx

        for _attempt in range(RATE_LIMIT_RETRIES):
            try:
                if files is not None:
                    response = self._client().post(path, params=self.auth, files=files, data=params)
                else:
                    response = self._client().post(path, params=self.auth, json=params)
            except httpx.HTTPError as error:
                raise ApiError(0, "CONNECTION_FAILED", f"{self.url}{path}: {error}") from error
            try:
                body = response.json()
            except ValueError:
                body = {"status": f"HTTP_{response.status_code}", "reason": response.text[:200]}
            if body.get("status") == "RATE_LIMIT_EXCEEDED":
                time.sleep(float(response.headers.get("Retry-After") or 1))
                continue
            if response.status_code != 200 or body.get("status") != "OK":
                raise ApiError(
                    response.status_code, str(body.get("status")), body.get("reason") or path
                )
            return body
        raise ApiError(403, "RATE_LIMIT_EXCEEDED", f"{path}: still rate limited, gave up")

    def _listing(self, kind: str) -> dict[str, str]:
        """Name -> id of the account's entities of a kind, the oldest of each name."""
        by_name: dict[str, str] = {}
        for row in self.call(f"/info/list_{kind}s")[f"{kind}s"]:
            by_name.setdefault(row["name"], row[f"{kind}_id"])
        return by_name

    def holdings(self, entries: list[Entry]) -> Holdings:
        info = self.call("/info/api")
        usage = info["usage"]
        held = Holdings(info["quota"], usage["persons"], usage["groups"], usage["facesets"])
        for kind, names in (
            ("person", {e.person for e in entries}),
            ("group", {e.group for e in entries if e.group}),
            ("faceset", {e.faceset for e in entries if e.faceset}),
        ):
            self.ids[kind] = {n: i for n, i in self._listing(kind).items() if n in names}
        for name, person_id in self.ids["person"].items():
            face_ids = self.call("/info/person", person_id=person_id)["face_ids"]
            held.person_faces[name] = len(face_ids)
            for face_id in face_ids:
                try:
                    face = self.call("/info/face", face_id=face_id, with_image=1)
                except ApiError as error:
                    if error.status == "INVALID_FACE":  # past its 5 days: not shown any more
                        continue
                    raise
                digest = marked_digest(face.get("image", {}).get("user_data"))
                if digest:
                    held.enrolled[digest] = face_id
        for name, group_id in self.ids["group"].items():
            persons = self.call("/info/group", group_id=group_id)["persons"]
            held.group_members[name] = {person["name"] for person in persons}
        for name, faceset_id in self.ids["faceset"].items():
            faces = self.call("/info/faceset", faceset_id=faceset_id)["face_ids"]
            held.faceset_faces[name] = set(faces)
        return held

    def detect(self, entry: Entry, data: bytes, digest: str, single_face_only: bool) -> Detected:
        files = {"file": (entry.path.name, data)}
        faces = self.call("/face/detection", files=files, user_data=mark(digest))["faces"]
        areas = [
            float(
                (f["rect"]["right"] - f["rect"]["left"]) * (f["rect"]["bottom"] - f["rect"]["top"])
            )
            for f in faces
        ]
        chosen = pick_face(areas, single_face_only)
        return Detected(b"", digest, face_id=faces[chosen]["face_id"])

    def _holder(self, kind: str, name: str, members: list[str], made: Counter[str]) -> str:
        """The group or faceset's id, made with `members` if missing; else they join it."""
        member_key = "person_id" if kind == "group" else "face_id"
        known = self.ids[kind].get(name)
        if known is None:
            created = self.call(f"/{kind}/create", name=name, **{member_key: members})
            self.ids[kind][name] = created[f"{kind}_id"]
            made[f"{kind}s"] += 1
            return created[f"{kind}_id"]
        path = "/group/add_person" if kind == "group" else "/faceset/add_face"
        self.call(path, **{f"{kind}_id": known, member_key: members})
        return known

    def _person(self, name: str, face_ids: list[str], made: Counter[str]) -> str:
        known = self.ids["person"].get(name)
        if known is None:
            created = self.call("/person/create", name=name, face_id=face_ids)
            self.ids["person"][name] = created["person_id"]
            made["persons"] += 1
            return created["person_id"]
        if face_ids:
            self.call("/person/add_face", person_id=known, face_id=face_ids)
        return known

    def write_batch(
        self, ready: list[tuple[Entry, Detected]]
    ) -> tuple[Counter[str], list[ApiError | None]]:
        return _one_by_one(self.write, ready)

    def write(self, entry: Entry, found: Detected) -> Counter[str]:
        made: Counter[str] = Counter()
        assert found.face_id is not None
        person_id = self._person(entry.person, [found.face_id], made)
        if entry.group:
            self._holder("group", entry.group, [person_id], made)
        if entry.faceset:
            self._holder("faceset", entry.faceset, [found.face_id], made)
        return made

    def join_group(self, person: str, group: str) -> Counter[str]:
        made: Counter[str] = Counter()
        self._holder("group", group, [self._person(person, [], made)], made)
        return made

    def add_to_faceset(self, face_id: str, faceset: str) -> Counter[str]:
        made: Counter[str] = Counter()
        self._holder("faceset", faceset, [face_id], made)
        return made

    def close(self) -> None:
        for client in self._clients:
            client.close()


def open_target(
    account: str | None, url: str | None, api_id: str | None, api_secret: str | None
) -> Target:
    """`Store` on the local store for `--account`, `Remote` for `--url` with credentials."""
    if url:
        if not (api_id and api_secret):
            raise PlanError("--url needs --api-id and --api-secret")
        return Remote(url, api_id, api_secret)
    if not account:
        raise PlanError("name the account: --account API_ID (or --url with --api-id/--api-secret)")
    from app.config import get_settings
    from app.db.migrate import upgrade
    from app.vision.install import check_models

    settings = get_settings()
    problems = check_models(settings.model_manifest, settings.models_dir)
    if problems:  # one line now, not a traceback from the first photo
        raise PlanError(
            f"the model pack in {settings.models_dir} is not ready ({'; '.join(problems)}): "
            "run `facesrv models install` (or set FACESRV_MODELS_DIR)"
        )
    upgrade(settings.database_url)
    return Store(account)
