"""The pipeline on real photos: detection, landmarks, embeddings, attributes, rotation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from app.vision.attributes import ATTRIBUTE_KEYS
from app.vision.pipeline import FaceAnalyzer

Photo = Callable[[str], np.ndarray]

# Two photos each of three CelebA dev identities (identities.tsv): 7201, 7205 (male), 7209.
CELEBA_PAIRS = {
    "7201": ("001085.jpg", "007710.jpg"),
    "7205": ("018774.jpg", "020711.jpg"),
    "7209": ("002993.jpg", "005840.jpg"),
}


@pytest.mark.parametrize(("name", "low", "high"), [("players.jpg", 20, 30), ("gdp.jpg", 4, 8)])
def test_team_photos_have_many_faces(
    analyzer: FaceAnalyzer, photo: Photo, name: str, low: int, high: int
) -> None:
    faces = analyzer.analyze(photo(name))
    assert low <= len(faces) <= high
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas == sorted(areas, reverse=True)


def test_one_face_photo(analyzer: FaceAnalyzer, photo: Photo) -> None:
    (face,) = analyzer.analyze(photo("yaoming.jpg"))
    assert face.score > 0.7
    assert face.embedding.shape == (512,) and face.embedding.dtype == np.float32
    assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-4)
    assert face.landmarks106.shape == (106, 2) and face.kps.shape == (5, 2)
    assert face.attributes == {}
    eyes = float(np.linalg.norm(face.kps[0] - face.kps[1]))
    assert abs(face.eye_dist - eyes) < 0.2 * eyes


def test_landmarks21_lie_in_the_box(analyzer: FaceAnalyzer, photo: Photo) -> None:
    (face,) = analyzer.analyze(photo("yaoming.jpg"))
    points = face.landmarks21
    assert points.shape == (21, 2)
    x1, y1, x2, y2 = face.box
    margin = 0.1 * (x2 - x1)
    assert (points[:, 0] > x1 - margin).all() and (points[:, 0] < x2 + margin).all()
    assert (points[:, 1] > y1 - margin).all() and (points[:, 1] < y2 + margin).all()
    # Upright face: brows above pupils above nose tip above mouth above chin.
    assert points[1, 1] < points[7, 1] < points[13, 1] < points[16, 1] < points[20, 1]
    assert points[7, 0] < points[10, 0]


def tight_face_crop(analyzer: FaceAnalyzer, rgb: np.ndarray, size: int) -> np.ndarray:
    """The photo's one face cropped to a square around its box, resized to `size`."""
    (face,) = analyzer.analyze(rgb)
    x1, y1, x2, y2 = face.box
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    box = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
    return np.asarray(Image.fromarray(rgb).crop(box).resize((size, size)))


def test_frame_filling_face_is_found(analyzer: FaceAnalyzer, photo: Photo) -> None:
    rgb = photo("yaoming.jpg")
    (face,) = analyzer.analyze(rgb)
    (small,) = analyzer.analyze(tight_face_crop(analyzer, rgb, 112))
    assert float(small.embedding @ face.embedding) > 0.5


def test_coarse_pass_only_where_the_fine_pass_misses_big_faces(analyzer: FaceAnalyzer) -> None:
    """A typical 400 px photo costs one pass; a larger one may hold a face too big for it."""
    detector = analyzer.detector
    assert detector.pass_sizes(267, 400) == (416,)
    assert detector.pass_sizes(500, 665) == (640, 256)


@pytest.mark.parametrize("size", [416, 640])
def test_face_filling_a_large_frame_is_found(
    analyzer: FaceAnalyzer, photo: Photo, size: int
) -> None:
    """416 px is the largest frame left to the fine pass alone; at 640 the coarse pass runs."""
    rgb = photo("yaoming.jpg")
    (face,) = analyzer.analyze(rgb)
    (big,) = analyzer.analyze(tight_face_crop(analyzer, rgb, size))
    assert float(big.embedding @ face.embedding) > 0.5


def test_same_person_is_closer_than_different(analyzer: FaceAnalyzer, celeba: Photo) -> None:
    embeddings = {
        (identity, name): analyzer.analyze(celeba(name))[0].embedding
        for identity, names in CELEBA_PAIRS.items()
        for name in names
    }
    same, different = [], []
    keys = list(embeddings)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            cosine = float(embeddings[a] @ embeddings[b])
            (same if a[0] == b[0] else different).append(cosine)
    assert min(same) > 0.35 > max(different)


def test_batched_embedding_matches_single(analyzer: FaceAnalyzer, photo: Photo) -> None:
    rgb = photo("gdp.jpg")
    found = analyzer.detect(rgb)
    crops = analyzer.align(rgb, found.kps)
    batched = analyzer.embed_aligned(crops)
    single = np.concatenate([analyzer.embed_aligned(crops[i : i + 1]) for i in range(len(crops))])
    assert np.allclose(batched, single, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "male"), [("018774.jpg", True), ("001085.jpg", False), ("002993.jpg", False)]
)
def test_age_and_gender_are_sane(
    analyzer: FaceAnalyzer, celeba: Photo, name: str, male: bool
) -> None:
    (face,) = analyzer.analyze(celeba(name), attributes=True)
    assert tuple(face.attributes) == ATTRIBUTE_KEYS
    assert all(isinstance(v, int) and 0 <= v <= 100 for v in face.attributes.values())
    assert 15 <= face.attributes["age"] <= 60
    assert (face.attributes["gender"] >= 50) == male


@pytest.mark.parametrize("clockwise", [90, 180, 270])
def test_upright_rotation_recovers_turn(
    analyzer: FaceAnalyzer, photo: Photo, clockwise: int
) -> None:
    rgb = photo("yaoming.jpg")
    assert analyzer.upright_rotation(rgb) == 0
    turned = np.rot90(rgb, k=-clockwise // 90)  # the photo turned `clockwise` degrees clockwise
    assert analyzer.upright_rotation(turned) == (360 - clockwise) % 360
