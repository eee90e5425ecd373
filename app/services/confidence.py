"""Cosine similarity to the seed's calibrated confidence.

The seed promises that thresholds 0.4 ... 0.9 mean false-accept rates 1e-1 ... 1e-6. The map is
piecewise linear through the knots fitted for the recognition model (cosine at each FAR, kept in
the model manifest and refitted by bench/calibrate.py), anchored at (-1, 0) and (1, 1), so it is
monotone and a face against itself scores exactly 1.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from app.config import get_settings
from app.vision.manifest import Calibration, load_manifest

SAME_PERSON_CONFIDENCE = 0.6
# Float noise keeps a face's cosine with itself a hair under 1; the seed wants exactly 1 there.
SELF_MATCH_COSINE = 0.9999


class ConfidenceMap:
    def __init__(self, calibration: Calibration) -> None:
        knots = sorted(calibration.knots, key=lambda knot: knot.cosine)
        self.cosines = np.array([-1.0, *(k.cosine for k in knots), 1.0])
        self.confidences = np.array([0.0, *(k.confidence for k in knots), 1.0])
        if np.any(np.diff(self.cosines) <= 0) or np.any(np.diff(self.confidences) <= 0):
            raise ValueError("calibration knots must increase in both cosine and confidence")

    def __call__(self, cosine: float) -> float:
        if cosine >= SELF_MATCH_COSINE:
            return 1.0
        return round(float(np.interp(cosine, self.cosines, self.confidences)), 6)

    def cosine_at(self, confidence: float) -> float:
        """The cosine where the map reaches `confidence`: a pre-filter for index searches."""
        return float(np.interp(confidence, self.confidences, self.cosines))


@lru_cache(maxsize=1)
def get_confidence_map() -> ConfidenceMap:
    return ConfidenceMap(load_manifest(get_settings().model_manifest).calibration)
