"""Verification, search, identification and training: embeddings compared under calibration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from app.db.embeddings import served_column
from app.db.models import Account, Face, Faceset, FacesetFace, Group, GroupMember, Person
from app.domain import Kind
from app.errors import ApiError, bad_request
from app.index.changelog import CollectionKey
from app.index.protocol import Searchable
from app.index.registry import get_registry
from app.services.confidence import SAME_PERSON_CONFIDENCE, get_confidence_map
from app.services.embeddings import require_vector, served_vector
from app.services.owned import Ref, find_owned, normalise_id, owned_persons, usable_faces


def _vector(face: Face) -> np.ndarray:
    """The face's embedding by this server's model; INVALID_FACE if another model made it."""
    return require_vector(face, get_registry().model)


def _query_face(db: Session, account_id: int, public_id: str | None) -> Face:
    (face,) = usable_faces(db, account_id, [public_id or ""])
    return face


@dataclass(frozen=True)
class Probe:
    """What a comparison starts from: an embedding, and the stored face it is, if it is one
    (a stored face compared with itself scores exactly 1)."""

    vector: np.ndarray
    face_row: int | None = None
    public_id: str | None = None

    def confidence(self, row_id: int, cosine: float) -> float:
        return 1.0 if row_id == self.face_row else get_confidence_map()(cosine)


def probe_of(face: Face) -> Probe:
    return Probe(_vector(face), face.id, face.public_id)


def stored_probe(db: Session, account_id: int, public_id: str | None) -> Probe:
    """A usable face of the caller's as a probe; INVALID_FACE otherwise."""
    return probe_of(_query_face(db, account_id, public_id))


def fresh_probe(embedding: np.ndarray) -> Probe:
    """A face just analysed, compared as it is and never stored."""
    return Probe(np.asarray(embedding, dtype=np.float32))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The calibrated confidence that two embeddings are of one person."""
    return get_confidence_map()(float(a @ b))


@dataclass(frozen=True)
class Verification:
    same_person: bool
    confidence: float
    face_id: str | None  # the probe's public id, when it is a stored face


def verify_faces(
    db: Session, account: Account, face_id: str | None, face2_id: str | None
) -> Verification:
    face = _query_face(db, account.id, face_id)
    try:
        (other,) = usable_faces(db, account.id, [face2_id or ""])
    except ApiError as error:  # the seed names the second face's failure apart
        raise bad_request("INVALID_FACE2", f"invalid face2_id: {face2_id}") from error
    if face.id == other.id:
        confidence = 1.0
    else:
        vector = _vector(face)
        try:
            other_vector = _vector(other)
        except ApiError as error:  # embedded by another model: the seed's second-face status
            raise bad_request("INVALID_FACE2", error.reason) from error
        confidence = get_confidence_map()(float(vector @ other_vector))
    return Verification(confidence > SAME_PERSON_CONFIDENCE, confidence, face.public_id)


def verify_person(db: Session, account: Account, probe: Probe, person: Ref | None) -> Verification:
    """A person scores as its best-matching face: one good enrolment photo is enough."""
    found = find_owned(db, Person, account.id, person, "INVALID_PERSON")
    served = served_column(get_registry().model)
    rows = db.execute(select(Face.id, served).where(Face.person_id == found.id)).all()
    rows = [row for row in rows if row[1] is not None]  # another model's faces compare to none
    if not rows:
        raise bad_request("EMPTY_PERSON", "the person has no face")
    if any(row[0] == probe.face_row for row in rows):
        confidence = 1.0
    else:
        vectors = np.frombuffer(b"".join(row[1] for row in rows), np.float32).reshape(len(rows), -1)
        confidence = get_confidence_map()(float((vectors @ probe.vector).max()))
    return Verification(confidence > SAME_PERSON_CONFIDENCE, confidence, probe.public_id)


@dataclass(frozen=True)
class Candidate:
    public_id: str
    confidence: float
    name: str | None = None
    key: str | None = None  # a person's client-chosen id
    face_row: int | None = None  # the face that matched (identification: the person's best)
    user_data: str | None = None  # a person's


# Table columns, not ORM attributes: plain rows need no ORM compile state (0.4 -> 0.2 ms).
_faces = Face.__table__
_PUBLIC_IDS = select(_faces.c.id, _faces.c.public_id).where(
    _faces.c.id.in_(bindparam("ids", expanding=True))
)


def _public_ids(db: Session, face_ids: list[int]) -> dict[int, str]:
    return dict(db.execute(_PUBLIC_IDS, {"ids": face_ids}).all())


def _collection_index(
    db: Session, account_id: int, model: type[Faceset] | type[Group], ref: Ref | None
) -> tuple[Faceset | Group, Searchable]:
    """The caller's faceset or group and its index; INVALID_* if unknown, EMPTY_* if empty."""
    kind = Kind.FACESET if model is Faceset else Kind.GROUP
    status = kind.value.upper()
    entity = find_owned(db, model, account_id, ref, f"INVALID_{status}")
    index = get_registry().get(db, account_id, CollectionKey(kind, entity.id))
    if len(index) == 0:
        raise bad_request(f"EMPTY_{status}", f"the {kind.value} has no face")
    return entity, index


def search_faceset(
    db: Session, account: Account, probe: Probe, faceset: Ref, top: int
) -> list[Candidate]:
    _, index = _collection_index(db, account.id, Faceset, faceset)
    scores, ids = index.search(probe.vector[None, :], top)
    hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    names = _public_ids(db, [i for i, _ in hits])
    return [
        Candidate(names[i], probe.confidence(i, score), face_row=i)
        for i, score in hits
        if i in names
    ]


def search_faces(
    db: Session, account: Account, probe: Probe, face_ids: list[str], top: int
) -> list[Candidate]:
    """Search an ad-hoc list: small by nature, so compared exactly without an index."""
    if not face_ids:
        raise bad_request("EMPTY_FACESET", "face_ids is empty")
    model = get_registry().model
    # Faces of another model (not re-embedded: image not kept) are left out, as in an index.
    others = [
        other
        for other in usable_faces(db, account.id, face_ids)
        if served_vector(other, model) is not None
    ]
    if not others:
        raise bad_request("EMPTY_FACESET", "no face in face_ids was embedded by this model")
    vectors = np.stack([_vector(other) for other in others])
    scores = vectors @ probe.vector
    order = np.argsort(-scores, kind="stable")[:top]
    return [
        Candidate(
            others[i].public_id,
            probe.confidence(others[i].id, float(scores[i])),
            face_row=others[i].id,
        )
        for i in order
    ]


def identify(
    db: Session, account: Account, probe: Probe, group: Ref | None, top: int
) -> tuple[list[Candidate], int]:
    """The group's persons most like the probe, each scored by its best face, above 0.6 only;
    and how many faces the group's index holds."""
    found, index = _collection_index(db, account.id, Group, group)
    # Over-fetch faces so that `top` distinct persons survive the per-person grouping.
    faces_per_person = max(1, account.quota_faces_per_person)
    scores, ids = index.search(probe.vector[None, :], min(len(index), top * faces_per_person, 1000))
    threshold = get_confidence_map().cosine_at(SAME_PERSON_CONFIDENCE)
    hits = [
        (int(i), float(s))
        for i, s in zip(ids[0], scores[0], strict=True)
        if i >= 0 and (s > threshold or i == probe.face_row)
    ]
    owner_rows = db.execute(
        select(Face.id, Person.public_id, Person.name, Person.key, Person.user_data)
        .join(Person, Person.id == Face.person_id)
        .join(GroupMember, GroupMember.person_id == Person.id)
        .where(Face.id.in_([i for i, _ in hits]), GroupMember.group_id == found.id)
    ).all()
    owners = {row[0]: row[1:] for row in owner_rows}
    best: dict[str, Candidate] = {}
    for face_row, score in hits:
        if face_row not in owners:
            continue
        person_public_id, name, key, user_data = owners[face_row]
        confidence = probe.confidence(face_row, score)
        if confidence > SAME_PERSON_CONFIDENCE and (
            person_public_id not in best or confidence > best[person_public_id].confidence
        ):
            best[person_public_id] = Candidate(
                person_public_id, confidence, name, key, face_row, user_data
            )
    return sorted(best.values(), key=lambda c: -c.confidence)[:top], len(index)


def train(
    db: Session,
    account: Account,
    face_ids: list[str],
    person_ids: list[str],
    faceset_ids: list[str],
    group_ids: list[str],
) -> None:
    """Check every id, then load and snapshot the named collections' indexes.

    Faces and persons need no preparation (embeddings are computed at detection, person
    verification compares a handful of vectors); facesets and groups get their index built and
    written to disk, so the next search, in any worker or after a restart, starts warm.
    """
    usable_faces(db, account.id, face_ids)
    owned_persons(db, account.id, person_ids)
    facesets = [find_owned(db, Faceset, account.id, i, "INVALID_FACESET") for i in faceset_ids]
    groups = [find_owned(db, Group, account.id, i, "INVALID_GROUP") for i in group_ids]
    registry = get_registry()
    for faceset in facesets:
        registry.save(db, account.id, CollectionKey(Kind.FACESET, faceset.id))
    for group in groups:
        registry.save(db, account.id, CollectionKey(Kind.GROUP, group.id))


def work_size(db: Session, account: Account, faceset_id: str | None, group_id: str | None) -> int:
    """Faces a call will compare: what the operator's async threshold is measured in."""
    if faceset_id:
        return (
            db.scalar(
                select(func.count())
                .select_from(FacesetFace)
                .join(Faceset, Faceset.id == FacesetFace.faceset_id)
                .where(
                    Faceset.public_id == normalise_id(faceset_id), Faceset.account_id == account.id
                )
            )
            or 0
        )
    if group_id:
        return (
            db.scalar(
                select(func.count())
                .select_from(Face)
                .join(GroupMember, GroupMember.person_id == Face.person_id)
                .join(Group, Group.id == GroupMember.group_id)
                .where(Group.public_id == normalise_id(group_id), Group.account_id == account.id)
            )
            or 0
        )
    return 0
