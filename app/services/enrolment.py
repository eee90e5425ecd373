"""Persons enrolled from photos, by the client's own ids: what Tencent-style doors do in one call.

SenseTime clients build a person from face ids they detected first; Tencent's (and Alibaba's)
send a photo with the person's and its groups' ids and expect one step. Each use case below is
one `account_write` transaction over `membership` (which keeps quotas and the change log), so
a refused step leaves nothing behind: no person without its groups, no stray face.

The photo's largest face is the one enrolled, as those vendors do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.embeddings import served_column
from app.db.models import Account, Face, Group, Person
from app.errors import ApiError, bad_request
from app.index.registry import get_registry
from app.services import detection, membership
from app.services.accounts import account_write
from app.services.detection import Analysis
from app.services.matching import similarity
from app.services.membership import GROUPS, PERSONS
from app.services.owned import Key, Ref, find_owned


def largest_face(analysis: Analysis) -> Analysis:
    """The analysis reduced to its largest face; NO_FACE when it has none."""
    if not analysis.faces:
        raise bad_request("NO_FACE", "no face found in the image")

    def area(index: int) -> float:
        left, top, right, bottom = (float(v) for v in analysis.faces[index].box)
        return (right - left) * (bottom - top)

    biggest = max(range(len(analysis.faces)), key=area)
    return analysis.only_face(biggest)


@dataclass(frozen=True)
class Photo:
    """One photo to enrol: its bytes and their analysis, reduced to the face to enrol, and the
    url it was fetched from, if it was."""

    data: bytes
    analysis: Analysis
    source_url: str | None = None


def _store_face(db: Session, account: Account, photo: Photo, note: str | None) -> Face:
    stored = detection.store(db, account, photo.analysis, photo.data, note, photo.source_url)
    (face,) = stored.faces
    return face


def ensure_groups(db: Session, account: Account, keys: list[str]) -> list[Group]:
    """The groups with these keys (or, for groups without one, public ids), made if missing."""
    groups = []
    for key in dict.fromkeys(keys):
        try:
            groups.append(find_owned(db, Group, account.id, Key(key), GROUPS.invalid_status))
        except ApiError:
            group, _ = membership.create(account, GROUPS, key, None, [], key=key)
            groups.append(group)
    return groups


def create_person(
    account: Account,
    key: str,
    name: str,
    user_data: str | None,
    photo: Photo | None,
    group_keys: list[str],
) -> tuple[Person, Face | None, list[Group]]:
    """A person named `key` with the photo's face (when a photo is given), in the groups named
    (made when missing)."""
    with account_write(account.id) as db:
        face = _store_face(db, account, photo, None) if photo is not None else None
        faces = [face.public_id] if face is not None else []
        person, _ = membership.create(account, PERSONS, name, user_data, faces, key=key)
        groups = ensure_groups(db, account, group_keys)
        for group in groups:
            membership.add_members(account, GROUPS, group.public_id, [person.public_id])
        return person, face, groups


@dataclass(frozen=True)
class Added:
    """One photo of an add-faces call: the face it gave, or why it gave none."""

    face: Face | None
    error: ApiError | None


def add_faces(
    account: Account,
    person: Ref,
    photos: list[Photo | ApiError],
    note: str | None,
    refuse_similar_from: float,
) -> list[Added]:
    """Each usable photo's face joins the person, in order, until its face quota is full.

    A photo whose face is at least `refuse_similar_from` confident to be one the person
    already has (or one added earlier in the call) is refused with SIMILAR_FACE: the same
    picture twice adds nothing to recognition. Photos that failed before (decode, no face)
    come in as their error and keep it.
    """
    with account_write(account.id) as db:
        found = find_owned(db, Person, account.id, person, PERSONS.invalid_status)
        # The person's faces of this server's model (another model's cosines mean nothing).
        served = served_column(get_registry().model)
        rows = db.scalars(select(served).where(Face.person_id == found.id)).all()
        known = [np.frombuffer(row, dtype=np.float32) for row in rows if row is not None]
        room = account.quota_faces_per_person - len(rows)
        results = []
        for photo in photos:
            if isinstance(photo, ApiError):
                results.append(Added(None, photo))
                continue
            vector = np.asarray(photo.analysis.faces[0].embedding, dtype=np.float32)
            if any(similarity(vector, other) >= refuse_similar_from for other in known):
                error = bad_request("SIMILAR_FACE", "the person already has this face")
                results.append(Added(None, error))
                continue
            if room <= 0:
                limit = account.quota_faces_per_person
                results.append(Added(None, membership.QuotaExceeded("faces_per_person", limit)))
                continue
            face = _store_face(db, account, photo, note)
            membership.add_members(account, PERSONS, found.public_id, [face.public_id])
            known.append(vector)
            room -= 1
            results.append(Added(face, None))
        return results


def join_groups(account: Account, person: Ref, group_keys: list[str]) -> tuple[int, list[Group]]:
    """The person joins the groups named (made when missing); returns how many it joined and
    the groups it is in after."""
    with account_write(account.id) as db:
        found = find_owned(db, Person, account.id, person, PERSONS.invalid_status)
        joined = 0
        for group in ensure_groups(db, account, group_keys):
            result = membership.add_members(account, GROUPS, group.public_id, [found.public_id])
            joined += result.changed
    return joined, membership.groups_of(account, person)


def leave_groups(account: Account, person: Ref, group_keys: list[str]) -> tuple[int, list[Group]]:
    """The person leaves the groups named; unknown groups are INVALID_GROUP, all or nothing."""
    with account_write(account.id) as db:
        found = find_owned(db, Person, account.id, person, PERSONS.invalid_status)
        groups = [
            find_owned(db, Group, account.id, Key(key), GROUPS.invalid_status)
            for key in dict.fromkeys(group_keys)
        ]
        left = 0
        for group in groups:
            result = membership.remove_members(account, GROUPS, group.public_id, [found.public_id])
            left += result.changed
    return left, membership.groups_of(account, person)
