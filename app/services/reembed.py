"""`facesrv reembed`: every face's embedding recomputed by a new recognition model, no downtime.

Why it works this way:
- **Searches keep answering.** The new embeddings go into each face's side slot
  (`alt_embedding`, tagged `alt_embedding_model`), written in short batches that touch nothing a
  search reads. Servers keep comparing the old `embedding` until an account is complete; then
  one transaction under the account lock swaps the two slots for all its faces and logs an `add`
  of every swapped member of every faceset and group, so each worker's index re-reads them
  (`app.index.registry`). After the swap the old model's embeddings sit in the side slot, so
  a server still running the old manifest keeps answering, and a server restarted on the new
  one compares the new embeddings (each server reads the embedding of its own model:
  `app.services.embeddings`).
- **Resumable.** What is done is in the rows: a face whose side slot already holds the target
  model's embedding is not computed again, and a swap is one transaction. A killed run loses at
  most the batch it was in.
- **Faces whose image was not kept** (FACESRV_KEEP_IMAGES was off when they were detected)
  cannot be recomputed. They keep their old embedding and model tag, are reported one by one,
  and do not hold up their account's switch: servers on the new model leave them out of every
  index and comparison (another model's cosines mean nothing), servers on the old model still
  use them. Detecting their photo again makes a face the new model knows.
- **Nothing is refitted.** The confidence map stays the manifest's calibration; the run says
  which model that calibration was fitted on, and says loudly when it is not the new model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import and_, func, or_, select, true, update
from sqlalchemy.orm import Session

from app.db.models import Account, Face, FacesetFace, GroupMember, Image
from app.db.session import session_scope
from app.domain import ChangeOp, Kind
from app.errors import ApiError
from app.index import changelog
from app.index.changelog import CollectionKey
from app.media.decode import decode_image
from app.services.accounts import account_write
from app.vision.manifest import Manifest, load_manifest
from app.vision.pipeline import FaceAnalyzer

NOT_KEPT = "image not kept"
NOT_DECODED = "kept image could not be decoded"
NOT_FOUND = "face not found again in its kept image"
# A stored face and a face detected again in its image are the same when their boxes overlap
# this much (the same detector gives the same box; another detector a close one).
MIN_IOU = 0.5
# Catch-up rounds before a switch: faces detected while the account was being re-embedded.
SWITCH_ROUNDS = 3


@dataclass(frozen=True)
class Stale:
    """A face left on its old model, and why."""

    face_id: str
    account: str  # the account's api_id
    model: str  # the model its embedding still comes from
    reason: str


@dataclass(frozen=True)
class Progress:
    done: int  # faces computed so far in this run
    total: int  # faces this run found to compute (it may find more as it goes)


@dataclass
class Report:
    target: str  # the new model's identity
    calibration: str  # which knots the server will map cosines with, and whether they fit
    calibration_fits: bool
    computed: int = 0  # faces whose new embedding this run computed
    switched: int = 0  # faces whose account switched to the new embeddings in this run
    accounts_switched: list[str] = field(default_factory=list)
    already: int = 0  # faces already on the target model before the run
    stale: list[Stale] = field(default_factory=list)

    @property
    def did_nothing(self) -> bool:
        return self.computed == 0 and self.switched == 0


def calibration_note(manifest: Manifest) -> tuple[str, bool]:
    """What the run says about the calibration it leaves in place, and whether it fits."""
    spec = manifest.models["recognition"]
    fitted = manifest.calibration.fitted_for or {}
    fits = manifest.calibration.fitted_on(spec)
    if fits:
        return (
            f"calibration: the manifest's knots, fitted for {fitted.get('file', '?')} "
            f"(sha256 {spec.sha256[:16]}...), the same weights as the new model "
            f"{spec.identity}: confidences keep their meaning",
            True,
        )
    if fits is None:
        said = "the manifest does not say which model its calibration was fitted for"
    else:
        said = (
            f"the manifest's calibration was fitted for {fitted.get('file', '?')} (sha256 "
            f"{fitted.get('sha256', '?')[:16]}...), NOT for the new model {spec.identity}"
        )
    return (
        f"WARNING: {said}. Confidence thresholds (0.6 = 1e-3 false accepts, ...) will NOT mean "
        "what they promise with the new embeddings. Nothing was refitted: fit the knots for the "
        "new model (bench/calibrate.py --write on labelled photos, then set calibration."
        "fitted_for) before relying on scores",
        False,
    )


def _needs_new(target: str):  # noqa: ANN202 - a SQLAlchemy condition
    """Faces whose embedding by `target` is neither in use nor prepared."""
    return and_(
        Face.embedding_model != target,
        or_(Face.alt_embedding_model.is_(None), Face.alt_embedding_model != target),
    )


def _boxes_iou(rect: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    left = np.maximum(rect[0], boxes[:, 0])
    top = np.maximum(rect[1], boxes[:, 1])
    right = np.minimum(rect[2], boxes[:, 2])
    bottom = np.minimum(rect[3], boxes[:, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area = (rect[2] - rect[0]) * (rect[3] - rect[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _rotations(rgb: np.ndarray, width: int, height: int) -> list[int]:
    """Clockwise turns that give the stored image's sides (detection may have auto-rotated
    it), the untouched image first."""
    h, w = rgb.shape[:2]
    upright = [0, 180] if (w, h) == (width, height) else []
    turned = [90, 270] if (h, w) == (width, height) else []
    return [*upright, *turned] or [0]


def embed_image_faces(
    analyzer: FaceAnalyzer, data: bytes, width: int, height: int, rects: list[np.ndarray]
) -> list[np.ndarray | None]:
    """The new embedding of each stored face (rect in the stored upright frame) of one kept
    image, found again by detection with the new manifest; None for a face not found.

    Re-detecting (rather than aligning from the stored landmarks) gives exactly what detecting
    the photo anew gives, so old faces and new detections of one photo compare as equals.
    """
    decoded = decode_image(data)
    found: list[np.ndarray | None] = [None] * len(rects)
    for rotation in _rotations(decoded.rgb, width, height):
        rgb = np.ascontiguousarray(np.rot90(decoded.rgb, k=-(rotation // 90)))
        detections = analyzer.detect(rgb)
        if len(detections) == 0:
            continue
        picks: dict[int, int] = {}
        for i, rect in enumerate(rects):
            if found[i] is not None:
                continue
            overlap = _boxes_iou(rect, detections.boxes)
            best = int(np.argmax(overlap))
            if overlap[best] >= MIN_IOU:
                picks[i] = best
        if picks:
            crops = analyzer.align(rgb, detections.kps[list(picks.values())])
            for i, vector in zip(picks, analyzer.embed_aligned(crops), strict=True):
                found[i] = vector.astype(np.float32)
        if all(vector is not None for vector in found):
            break
    return found


class Reembedder:
    """One run: the target model, its analyser, what was done and what could not be."""

    def __init__(
        self,
        manifest_path: Path,
        models_dir: Path,
        *,
        batch_size: int = 32,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.manifest = load_manifest(manifest_path)
        self.target = self.manifest.models["recognition"].identity
        note, fits = calibration_note(self.manifest)
        self.report = Report(self.target, note, fits)
        self.batch_size = max(1, batch_size)
        self.progress = progress
        self._analyzer_args = (manifest_path, models_dir)
        self._analyzer: FaceAnalyzer | None = None
        # Face rows this run could not re-embed from their kept image, and why (reported).
        self._unfindable: set[int] = set()
        self._unfindable_reason: dict[int, str] = {}
        self._total = 0

    @property
    def analyzer(self) -> FaceAnalyzer:
        """Loaded on first need (verifying every file's sha256): a run with nothing to compute
        needs no models."""
        if self._analyzer is None:
            self._analyzer = FaceAnalyzer.load(*self._analyzer_args)
        return self._analyzer

    def run(self, api_id: str | None = None) -> Report:
        with session_scope() as db:
            query = select(Account.id, Account.api_id).order_by(Account.id)
            if api_id is not None:
                query = query.where(Account.api_id == api_id)
            accounts = db.execute(query).all()
            if api_id is not None and not accounts:
                raise LookupError(f"no account {api_id}")
            ids = [account_id for account_id, _ in accounts]
            self.report.already = db.scalar(
                select(func.count())
                .select_from(Face)
                .where(Face.account_id.in_(ids), Face.embedding_model == self.target)
            )
            self._total = db.scalar(
                select(func.count())
                .select_from(Face)
                .join(Image, Image.id == Face.image_id)
                .where(Face.account_id.in_(ids), _needs_new(self.target), Image.data.is_not(None))
            )
        for account_id, handle in accounts:
            self._account(account_id, handle)
        return self.report

    def _account(self, account_id: int, handle: str) -> None:
        for _ in range(SWITCH_ROUNDS):
            self._compute(account_id, handle)
            if self._switch(account_id, handle):
                break
        self._report_stale(account_id, handle)

    def _pending_images(self, db: Session, account_id: int, after: int) -> list[int]:
        rows = db.scalars(
            select(Image.id)
            .join(Face, Face.image_id == Image.id)
            .where(
                Face.account_id == account_id,
                _needs_new(self.target),
                Image.data.is_not(None),
                Image.id > after,
            )
            .group_by(Image.id)
            .order_by(Image.id)
            .limit(self.batch_size)
        )
        return list(rows)

    def _compute(self, account_id: int, handle: str) -> None:
        """New embeddings into the side slot, a batch of images per short transaction."""
        after = 0
        while True:
            with session_scope() as db:
                image_ids = self._pending_images(db, account_id, after)
                if not image_ids:
                    return
                after = image_ids[-1]
                images = db.execute(
                    select(Image.id, Image.data, Image.width, Image.height).where(
                        Image.id.in_(image_ids)
                    )
                ).all()
                faces = db.execute(
                    select(
                        Face.id,
                        Face.image_id,
                        Face.rect_left,
                        Face.rect_top,
                        Face.rect_right,
                        Face.rect_bottom,
                    )
                    .where(Face.image_id.in_(image_ids), _needs_new(self.target))
                    .order_by(Face.id)
                ).all()
            vectors = self._embed(images, faces)  # the slow part, outside any transaction
            if vectors:
                with session_scope() as db:
                    for face_id, vector in vectors.items():
                        # Only if still needed: a concurrent run may have got there first.
                        db.execute(
                            update(Face)
                            .where(Face.id == face_id, _needs_new(self.target))
                            .values(alt_embedding=vector.tobytes(), alt_embedding_model=self.target)
                        )
            self.report.computed += len(vectors)
            self._total = max(self._total, self.report.computed)
            if self.progress is not None:
                self.progress(Progress(self.report.computed, self._total))

    def _embed(self, images: list, faces: list) -> dict[int, np.ndarray]:
        by_image: dict[int, list] = {}
        for face in faces:
            by_image.setdefault(face.image_id, []).append(face)
        vectors: dict[int, np.ndarray] = {}
        for image_id, data, width, height in images:
            wanted = [
                face for face in by_image.get(image_id, []) if face.id not in self._unfindable
            ]
            if not wanted:
                continue
            rects = [
                np.array([f.rect_left, f.rect_top, f.rect_right, f.rect_bottom], np.float64)
                for f in wanted
            ]
            try:
                found = embed_image_faces(self.analyzer, data, width, height, rects)
            except ApiError:  # the seed's 400 for an undecodable file
                found = [None] * len(wanted)
                reason = NOT_DECODED
            else:
                reason = NOT_FOUND
            for face, vector in zip(wanted, found, strict=True):
                if vector is None:
                    self._unfindable.add(face.id)
                    self._unfindable_reason[face.id] = reason
                else:
                    vectors[face.id] = vector
        return vectors

    def _switch(self, account_id: int, handle: str) -> bool:
        """Swap the account's two slots in one transaction, logging an index `add` of every
        swapped face in each collection it is in. False (nothing swapped) while faces that can
        be computed remain, e.g. detected meanwhile by a server still on the old model."""
        ready = and_(
            Face.account_id == account_id,
            Face.alt_embedding_model == self.target,
            Face.embedding_model != self.target,
        )
        with account_write(account_id) as db:
            remaining = db.scalar(
                select(func.count())
                .select_from(Face)
                .join(Image, Image.id == Face.image_id)
                .where(
                    Face.account_id == account_id,
                    _needs_new(self.target),
                    Image.data.is_not(None),
                    Face.id.not_in(self._unfindable) if self._unfindable else true(),
                )
            )
            if remaining:
                return False
            in_facesets = db.execute(
                select(FacesetFace.faceset_id, FacesetFace.face_id)
                .join(Face, Face.id == FacesetFace.face_id)
                .where(ready)
                .order_by(FacesetFace.faceset_id, FacesetFace.face_id)
            ).all()
            in_groups = db.execute(
                select(GroupMember.group_id, Face.id)
                .join(Face, Face.person_id == GroupMember.person_id)
                .where(ready)
                .order_by(GroupMember.group_id, Face.id)
            ).all()
            swapped = db.execute(
                update(Face)
                .where(ready)
                .values(
                    embedding=Face.alt_embedding,
                    embedding_model=Face.alt_embedding_model,
                    alt_embedding=Face.embedding,
                    alt_embedding_model=Face.embedding_model,
                )
                .execution_options(synchronize_session=False)
            ).rowcount
            for kind, rows in ((Kind.FACESET, in_facesets), (Kind.GROUP, in_groups)):
                for collection_id, face_ids in _grouped(rows):
                    key = CollectionKey(kind, collection_id)
                    changelog.record(db, account_id, key, face_ids, ChangeOp.ADD)
        if swapped:
            self.report.switched += swapped
            self.report.accounts_switched.append(handle)
        return True

    def _report_stale(self, account_id: int, handle: str) -> None:
        """Every face of the account still without the target model's embedding, and why."""
        with session_scope() as db:
            rows = db.execute(
                select(Face.id, Face.public_id, Face.embedding_model, Image.data.is_(None))
                .outerjoin(Image, Image.id == Face.image_id)
                .where(Face.account_id == account_id, _needs_new(self.target))
                .order_by(Face.id)
            ).all()
        for face_row, public_id, model, not_kept in rows:
            reason = NOT_KEPT if not_kept else self._unfindable_reason.get(face_row, "not computed")
            self.report.stale.append(Stale(public_id, handle, model, reason))


def _grouped(rows: list) -> Iterator[tuple[int, list[int]]]:
    """(collection id, face id) rows sorted by collection -> each collection's face ids."""
    current: int | None = None
    face_ids: list[int] = []
    for collection_id, face_id in rows:
        if collection_id != current and face_ids:
            yield current, face_ids  # type: ignore[misc] - set with the first row
            face_ids = []
        current = collection_id
        face_ids.append(face_id)
    if face_ids:
        yield current, face_ids  # type: ignore[misc]


def reembed(
    manifest_path: Path,
    models_dir: Path,
    *,
    api_id: str | None = None,
    batch_size: int = 32,
    progress: Callable[[Progress], None] | None = None,
) -> Report:
    """Re-embed every face (or one account's) for the manifest's recognition model."""
    runner = Reembedder(manifest_path, models_dir, batch_size=batch_size, progress=progress)
    return runner.run(api_id)
