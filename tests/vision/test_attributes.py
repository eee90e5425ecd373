"""The fitted attribute rules on held-out MTFL faces, through the real pipeline.

The faces are taken from the part of MTFL that bench/fit_attributes.py holds out (same split,
same preparation), a fixed handful per label, so the AUC here is an honest if noisy check that
the rules rank faces the right way; the full held-out figures come from the bench script.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pytest

from app.vision import attributes
from app.vision.attributes import ATTRIBUTE_KEYS, describe
from app.vision.pipeline import FaceAnalyzer
from bench.fit_attributes import MTFL, Label, auc, load_face_image, read_labels
from tests.conftest import require_research_photos

PER_CLASS = 40  # 20 a class is too noisy: the first 20+20 smile faces alone give AUC 0.77


@pytest.fixture(scope="module")
def held_out() -> list[Label]:
    """Held-out MTFL faces in a fixed pseudo-random order (SHA-1 of the path)."""
    require_research_photos("mtfl-train", "labels.txt")
    faces = [label for label in read_labels() if label.held_out]
    return sorted(faces, key=lambda label: hashlib.sha1(label.path.encode()).hexdigest())


def pick(faces: list[Label], has: Callable[[Label], bool]) -> list[Label]:
    """The first PER_CLASS faces with and PER_CLASS faces without the label."""
    return [f for f in faces if has(f)][:PER_CLASS] + [f for f in faces if not has(f)][:PER_CLASS]


def held_out_auc(analyzer: FaceAnalyzer, faces: list[Label], attribute: str, label: str) -> float:
    """AUC of the attribute as the API reports it against the MTFL label, over detected faces."""
    values, truth = [], []
    for face in faces:
        found = analyzer.analyze(load_face_image(MTFL / face.path), attributes=True)
        if found:
            values.append(found[0].attributes[attribute])
            truth.append(getattr(face, label))
    assert len(values) >= 0.9 * len(faces)
    return auc(np.asarray(values, np.float64), np.asarray(truth, np.float64))


def test_coefficients_load() -> None:
    model = attributes.coefficients()
    assert model["smile"]["features"] == list(attributes.SMILE_FEATURES)
    assert len(model["smile"]["combined"]["weights"]) == len(attributes.SMILE_FEATURES) + 1
    assert len(model["eyeglass"]["embedding"]["weights"]) == 512
    assert model["attractive"]["features"] == list(attributes.ATTRACTIVE_FEATURES)
    assert len(model["attractive"]["weights"]) == len(attributes.ATTRACTIVE_FEATURES)
    for ramp in ("eye_open", "mouth_open", "screaming", "confused"):
        assert set(model[ramp]) == {"half", "width"} and model[ramp]["width"] > 0


def test_no_faces() -> None:
    empty = np.zeros(0)
    assert describe([], empty, empty, np.zeros((0, 3))) == []


@pytest.mark.slow
@pytest.mark.parametrize(("attribute", "label"), [("smile", "smile"), ("eyeglass", "glasses")])
def test_rules_rank_held_out_faces(
    analyzer: FaceAnalyzer, held_out: list[Label], attribute: str, label: str
) -> None:
    faces = pick(held_out, lambda face: getattr(face, label))
    assert held_out_auc(analyzer, faces, attribute, label) > 0.8


def test_values_are_bounded_integers(analyzer: FaceAnalyzer, held_out: list[Label]) -> None:
    faces = pick(held_out, lambda face: face.glasses)[:: PER_CLASS // 4]
    for label in faces:
        (face, *_) = analyzer.analyze(load_face_image(MTFL / label.path), attributes=True)
        assert tuple(face.attributes) == ATTRIBUTE_KEYS
        for value in face.attributes.values():
            assert type(value) is int and 0 <= value <= 100
        assert face.attributes["smile"] >= 1
        assert face.attributes["sunglass"] <= face.attributes["eyeglass"] + 1
