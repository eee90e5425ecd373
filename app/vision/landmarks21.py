"""The SenseTime 21-point landmark scheme, derived from InsightFace's 106 points.

Each of the 21 points is one 106 point or the mean of two (a brow "middle" or inner end sits
between the upper and lower brow contours). "Left" means image left (the subject's right).
The index map was read off a plot of 2d106det's output; see docs/landmarks21.md.
"""

from __future__ import annotations

import numpy as np

LANDMARKS21: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("left_eyebrow_outer_end", (43,)),
    ("left_eyebrow_middle", (45, 49)),
    ("left_eyebrow_inner_end", (46, 50)),
    ("right_eyebrow_inner_end", (97, 102)),
    ("right_eyebrow_middle", (99, 104)),
    ("right_eyebrow_outer_end", (101,)),
    ("left_eye_outer_corner", (35,)),
    ("left_pupil", (38,)),
    ("left_eye_inner_corner", (39,)),
    ("right_eye_inner_corner", (89,)),
    ("right_pupil", (88,)),
    ("right_eye_outer_corner", (93,)),
    ("nose_left_wing", (77,)),
    ("nose_tip", (86,)),
    ("nose_right_wing", (83,)),
    ("mouth_left_corner", (52,)),
    ("upper_lip_middle", (71,)),
    ("lower_lip_middle", (53,)),
    ("mouth_right_corner", (61,)),
    ("nose_bridge_top", (72,)),
    ("chin", (0,)),
)

LEFT_PUPIL = 38
RIGHT_PUPIL = 88


def _averaging_matrix() -> np.ndarray:
    """(21, 106) weights so that `matrix @ points106` gives the 21 points in one product."""
    matrix = np.zeros((len(LANDMARKS21), 106), np.float32)
    for row, (_, indices) in enumerate(LANDMARKS21):
        matrix[row, list(indices)] = 1.0 / len(indices)
    return matrix


_WEIGHTS = _averaging_matrix()


def landmarks21_from_106(points106: np.ndarray) -> np.ndarray:
    """(21, 2) SenseTime points from (106, 2) InsightFace points."""
    return _WEIGHTS @ np.asarray(points106, np.float32)
