"""FaceAnalyzer: the whole vision pipeline behind one call, from RGB pixels to described faces."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from app.vision.agegender import AgeEstimator, GenderClassifier
from app.vision.arcface import ArcFace
from app.vision.attributes import FaceEvidence, coefficients, describe, face_geometry
from app.vision.emotion import ExpressionClassifier, emotion_scores
from app.vision.geometry import apply_affine
from app.vision.install import ModelsNotInstalled, check_models
from app.vision.landmark106 import Landmark106
from app.vision.landmarks21 import LEFT_PUPIL, RIGHT_PUPIL, landmarks21_from_106
from app.vision.manifest import Manifest, load_manifest
from app.vision.scrfd import SCRFD, Detections

ROTATIONS = (0, 90, 180, 270)


@dataclass(frozen=True)
class ChipOutputs:
    """What the small chip networks say of each face (None for what was not asked)."""

    ages: np.ndarray | None
    males: np.ndarray | None
    expressions: list[dict[str, float]] | None


@dataclass
class DetectedFace:
    """One face in image pixel coordinates, with its recognition embedding."""

    box: np.ndarray  # (4,) x1, y1, x2, y2
    score: float
    kps: np.ndarray  # (5, 2) eyes, nose tip, mouth corners
    landmarks106: np.ndarray  # (106, 2)
    embedding: np.ndarray  # (512,) float32, unit length
    attributes: dict[str, int] = field(default_factory=dict)
    emotions: dict[str, int] = field(default_factory=dict)

    @property
    def landmarks21(self) -> np.ndarray:
        return landmarks21_from_106(self.landmarks106)

    @property
    def eye_dist(self) -> int:
        """Pupil distance in pixels: the usual measure of how large (usable) a face is."""
        pupils = self.landmarks106[[LEFT_PUPIL, RIGHT_PUPIL]]
        return round(float(np.linalg.norm(pupils[0] - pupils[1])))


class FaceAnalyzer:
    """Detection, landmarks, embedding, optional attributes and emotions; a session per model.

    `attractive=False` (FACESRV_ATTRACTIVE=0) leaves that subjective score out of `attributes`.

    Safe to share between threads: ONNX Runtime sessions allow concurrent runs, and the only
    mutable state is the detector's cache of anchor grids (idempotent writes).

    The age, gender and expression networks need only the detector's keypoints, and they are
    too small to keep two cores busy; they run on one side thread while the landmark and
    recognition models run, which hides most of their cost (bench/detection.py, analysis cost).
    """

    def __init__(
        self,
        manifest: Manifest,
        detector: SCRFD,
        recognizer: ArcFace,
        landmarker: Landmark106,
        age: AgeEstimator,
        gender: GenderClassifier,
        expression: ExpressionClassifier,
        *,
        attractive: bool = True,
        shares_calls: bool = False,
    ) -> None:
        self.manifest = manifest
        # Its sessions batch across requests (app.vision.batching): each model then runs one
        # call at a time itself, and concurrent analyses must be let in to meet at the models.
        self.shares_calls = shares_calls
        self.detector = detector
        self.recognizer = recognizer
        self.landmarker = landmarker
        self.age = age
        self.gender = gender
        self.expression = expression
        self.attractive = attractive
        self._side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facesrv-chips")
        self.rotation_input_size = int(
            manifest.models["detection"].options.get("rotation_input_size", 256)
        )

    @classmethod
    def load(
        cls,
        manifest_path: Path,
        models_dir: Path,
        *,
        threads: int | None = None,
        batch: int = 1,
        attractive: bool = True,
    ) -> FaceAnalyzer:
        """Verify the installed files against the manifest, then open one session per model
        (with `batch` > 1, one whose concurrent runs share calls: app.vision.batching)."""
        problems = check_models(manifest_path, models_dir)
        if problems:
            raise ModelsNotInstalled(Path(models_dir), problems)
        manifest = load_manifest(manifest_path)
        specs = manifest.models

        def path(role: str) -> Path:
            return Path(models_dir) / specs[role].file

        return cls(
            manifest,
            SCRFD.load(path("detection"), specs["detection"].options, threads, batch),
            ArcFace.load(path("recognition"), specs["recognition"].options, threads, batch),
            Landmark106.load(path("landmarks106"), specs["landmarks106"].options, threads, batch),
            AgeEstimator.load(path("age"), specs["age"].options, threads, batch),
            GenderClassifier.load(path("gender"), specs["gender"].options, threads, batch),
            ExpressionClassifier.load(path("emotion"), specs["emotion"].options, threads, batch),
            attractive=attractive,
            shares_calls=batch > 1,
        )

    def detect(self, rgb: np.ndarray) -> Detections:
        """Boxes, scores and 5 keypoints only, sorted by box area, largest first."""
        return self._detect(_as_image(rgb))

    def _detect(self, image: Image.Image) -> Detections:
        """`detect` on an image already wrapped, so `analyze` copies the pixels into PIL once."""
        found = self.detector.detect(image)
        areas = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
        return found.take(np.argsort(-areas, kind="stable"))

    def analyze(
        self, rgb: np.ndarray, *, attributes: bool = False, emotions: bool = False
    ) -> list[DetectedFace]:
        """Every face in a uint8 HxWx3 RGB image, largest first.

        Landmarks and embeddings are always computed; attributes (age and gender networks plus
        the fitted rules) and emotions (the expression network plus rules) only when asked,
        since they cost extra model runs.
        """
        image = _as_image(rgb)
        found = self._detect(image)
        if len(found) == 0:
            return []
        chips = None
        if attributes or emotions:
            chips = self._side.submit(self._chip_models, image, found.kps, attributes, emotions)
        landmarks = self.landmarker.predict(image, found.boxes)
        crops = self.recognizer.align(image, found.kps)
        embeddings = self.recognizer.embed_aligned(crops)
        faces = [
            DetectedFace(
                box=found.boxes[i].astype(np.float32),
                score=float(found.scores[i]),
                kps=found.kps[i].astype(np.float32),
                landmarks106=landmarks[i],
                embedding=embeddings[i],
            )
            for i in range(len(found))
        ]
        if chips is not None:
            self._describe(faces, crops, chips.result())
        return faces

    def _chip_models(
        self, image: Image.Image, kps: np.ndarray, attributes: bool, emotions: bool
    ) -> ChipOutputs:
        return ChipOutputs(
            ages=self.age.predict(image, kps) if attributes else None,
            males=self.gender.predict(image, kps) if attributes else None,
            expressions=self.expression.predict(image, kps) if emotions else None,
        )

    def _describe(self, faces: list[DetectedFace], crops: np.ndarray, chips: ChipOutputs) -> None:
        evidence = [
            FaceEvidence(
                crop=crop,
                landmarks106=apply_affine(face.landmarks106, self.recognizer.alignment(face.kps)),
                embedding=face.embedding,
            )
            for face, crop in zip(faces, crops, strict=True)
        ]
        geometry = face_geometry(np.stack([e.landmarks106 for e in evidence]))
        if chips.ages is not None and chips.males is not None:
            described = describe(
                evidence, chips.ages, chips.males, geometry, attractive=self.attractive
            )
            for face, values in zip(faces, described, strict=True):
                face.attributes = values
        if chips.expressions is not None:
            rules = coefficients()
            for face, probabilities, row in zip(faces, chips.expressions, geometry, strict=True):
                face.emotions = emotion_scores(probabilities, row, rules)

    def embed_aligned(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings of ArcFace-aligned crops (N, 112, 112, 3), batched (calibration scripts)."""
        return self.recognizer.embed_aligned(crops)

    def align(self, rgb: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """ArcFace-aligned crops (N, 112, 112, 3) for keypoints (N, 5, 2) found in `rgb`."""
        return self.recognizer.align(_as_image(rgb), kps)

    def upright_rotation(self, rgb: np.ndarray) -> int:
        """Clockwise degrees (0, 90, 180, 270) to turn `rgb` so that its faces stand upright.

        Runs the cheap low-resolution detection pass on the four rotations and keeps the one
        where the detector is most confident; 0 when no rotation shows a face.
        """
        best_rotation, best_score = 0, 0.0
        for rotation in ROTATIONS:
            turned = np.ascontiguousarray(np.rot90(rgb, k=-rotation // 90))
            found = self.detector.detect_pass(_as_image(turned), self.rotation_input_size)
            score = float(found.scores.max()) if len(found) else 0.0
            if score > best_score:
                best_rotation, best_score = rotation, score
        return best_rotation


def _as_image(rgb: np.ndarray) -> Image.Image:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 HxWx3 RGB, got {rgb.dtype} {rgb.shape}")
    return Image.fromarray(rgb, "RGB")
