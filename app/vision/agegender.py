"""dlib's age and gender networks (Cydral, CC0), fed dlib-style chips built from SCRFD keypoints.

dlib aligns its chips with a 5-point shape predictor; mapping SCRFD's 5 keypoints onto the same
unit-square template by a similarity transform reproduces those chips without dlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
from PIL import Image

from app.vision.geometry import similarity_transform, warp_affine
from app.vision.runtime import Session, create_session

# SCRFD keypoint order (left eye, right eye, nose, left mouth, right mouth) on dlib's unit square.
DLIB_CHIP_TEMPLATE = [
    [0.3024, 0.2849],
    [0.6765, 0.2831],
    [0.4845, 0.5154],
    [0.3299, 0.6873],
    [0.6548, 0.6854],
]


class ChipClassifier:
    """Shared chip extraction and preprocessing; subclasses turn probabilities into a value."""

    def __init__(self, session: Session, options: dict[str, Any]) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.mean = np.asarray(options.get("mean", [122.782, 117.001, 104.298]), np.float32)
        self.std = np.asarray(options.get("std", [256.0] * 3), np.float32)
        colour_order = options.get("colour_order", "RGB").upper()
        self.bgr = colour_order == "BGR"
        self.grey = colour_order == "GREY"  # one luminance channel (ITU-R 601, as PIL's "L")
        self.input_size = int(options["input_size"])
        padding = float(options.get("chip_padding", 0.2))
        template = np.asarray(options.get("chip_template", DLIB_CHIP_TEMPLATE), np.float64)
        self.template = (template + padding) / (1 + 2 * padding) * self.input_size

    @classmethod
    def load(
        cls, path: Path, options: dict[str, Any], threads: int | None = None, batch: int = 1
    ) -> Self:
        return cls(create_session(path, threads, batch), options)

    def chips(self, image: Image.Image, kps: np.ndarray) -> np.ndarray:
        """uint8 RGB chips (N, size, size, 3); antialiased like dlib's pyramid-downsampled chips."""
        return np.stack(
            [
                warp_affine(
                    image, similarity_transform(k, self.template), self.input_size, antialias=True
                )
                for k in kps
            ]
        )

    def probabilities(self, image: Image.Image, kps: np.ndarray) -> np.ndarray:
        pixels = self.chips(image, kps).astype(np.float32)
        if self.bgr:
            pixels = pixels[..., ::-1]
        elif self.grey:
            pixels = pixels @ np.array([[0.299], [0.587], [0.114]], np.float32)
        blob = np.ascontiguousarray(((pixels - self.mean) / self.std).transpose(0, 3, 1, 2))
        return self.session.run(None, {self.input_name: blob})[0]


class AgeEstimator(ChipClassifier):
    """Age in years as the expectation over the network's 81 age bins."""

    def __init__(self, session: Session, options: dict[str, Any]) -> None:
        super().__init__(session, options)
        self.bins = np.asarray(options.get("bin_values", [0.25, *range(1, 81)]), np.float32)

    def predict(self, image: Image.Image, kps: np.ndarray) -> np.ndarray:
        """Ages (N,) in years, float."""
        if len(kps) == 0:
            return np.zeros(0, np.float32)
        return self.probabilities(image, kps) @ self.bins


class GenderClassifier(ChipClassifier):
    """Probability that the face is male (the graph outputs female, male)."""

    def __init__(self, session: Session, options: dict[str, Any]) -> None:
        super().__init__(session, options)
        self.male_index = list(options.get("labels", ["female", "male"])).index("male")

    def predict(self, image: Image.Image, kps: np.ndarray) -> np.ndarray:
        """P(male) (N,), float."""
        if len(kps) == 0:
            return np.zeros(0, np.float32)
        return self.probabilities(image, kps)[:, self.male_index]
