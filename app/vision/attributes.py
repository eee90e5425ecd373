"""Hook for the fitted smile / eyeglass / sunglass rules (filled in by the attributes work).

The pipeline calls `fitted_attributes` with everything it has for each face; until rules are
fitted it returns nothing, and the API reports only age and gender (from their own networks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaceEvidence:
    """One face as seen by the recognition model.

    crop: the ArcFace-aligned uint8 RGB crop (112x112x3); eyes and mouth sit at fixed places.
    landmarks106: the 106 points in that crop's pixel frame (so scale and roll are removed).
    embedding: the L2-normalised recognition embedding (512,).
    """

    crop: np.ndarray
    landmarks106: np.ndarray
    embedding: np.ndarray


def fitted_attributes(faces: list[FaceEvidence]) -> list[dict[str, int]]:
    """Integer 0..100 scores per face (e.g. smile, eyeglass, sunglass); none fitted yet."""
    return [{} for _ in faces]
