"""Attribute scores beyond age and gender: small rules fitted on MTFL and CelebA, not networks.

No openly licensed smile, glasses or openness network ships with the models we install, so each
attribute is a measured rule over evidence the pipeline already has (the ArcFace-aligned crop,
the 106 landmarks in that crop's frame, the recognition embedding). The coefficients live in
`attribute_coefficients.json`, produced by `bench/fit_attributes.py`, which also prints the
held-out accuracy and AUC; docs/attributes.md has the figures and the method.

- smile (1..100, degree of smile): logistic model on mouth geometry from the 106 points, every
  length divided by the inter-pupil distance: mouth width, corner lift (against the upper-lip
  centre and against the nose tip), the inner and outer lip opening and the 20 lip points about
  their centroid; stacked with the logit of a 512-d logistic classifier on the embedding.
- eyeglass (0..100, >= 50 means glasses, sunglasses included since MTFL labels both as glasses):
  logistic model over (a) edge measures of the aligned crop where frames sit (the bridge between
  the eyes, the lower rims, the temples), each relative to the face's overall edge energy so that
  blur and contrast cancel, and (b) the logit of a 512-d logistic classifier on the embedding.
- sunglass (0..100, >= 50 means sunglasses): no data set we have labels sunglasses, so this is a
  rule, not a fit: the eyeglass probability times a logistic ramp on the eye-band darkness (mean
  luminance of the two eye boxes over that of nose and cheeks). Known weakness: anything that
  darkens the eye band but not the cheeks reads as dark lenses: a cap or hat brim shadow, deep
  eye sockets under top light, very dim or back-lit faces, heavy eye make-up; the glasses factor
  suppresses most of these (it needs frame evidence), but a shadowed face in clear glasses can
  still score as sunglasses. Dark skin does not by itself trigger it (the measure is a ratio to
  the cheeks), but on dark, dim faces the ratio is noisier.

- attractive (0..100): logistic model fitted on CelebA's crowd-sourced Attractive label over what
  the other attributes measure (age, P(male), the smile logit, eye, mouth and brow geometry);
  the identity embedding was tried and overfits 288 photos. A subjective label, learnt mostly
  from gender, youth and smiling: the biases are measured in docs/attributes.md, and
  FACESRV_ATTRACTIVE=0 leaves it out.
- eye_open, mouth_open (0..100): one-feature logistic ramps on the 106-point eye aspect ratio
  and inner-lip gap, fitted on CelebA's Narrow_Eyes (inverted) and Mouth_Slightly_Open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

COEFFICIENTS = Path(__file__).with_name("attribute_coefficients.json")

# 106-point indices (InsightFace 2d106det), "left" = image left.
MOUTH_LEFT, MOUTH_RIGHT = 52, 61
UPPER_LIP_OUTER, LOWER_LIP_OUTER = 71, 53
UPPER_LIP_INNER, LOWER_LIP_INNER = 62, 60
LEFT_PUPIL, RIGHT_PUPIL = 38, 88
NOSE_TIP = 86
# Eyes as (outer corner, inner corner, upper-lid points, lower-lid points facing them) and brows
# by their lower contour; the layout is in docs/landmarks21.md.
EYES_106 = ((35, 39, (41, 40, 42), (36, 33, 37)), (93, 89, (95, 94, 96), (90, 87, 91)))
BROWS_LOWER = ((44, 45, 47, 46), (97, 98, 99, 100))
GEOMETRY = ("eye_ratio", "mouth_gap", "brow_height")
ATTRACTIVE_FEATURES = ("age", "male", "smile_logit", *GEOMETRY)
# The wire order of `attributes`: the seed's six, then the live service's extras.
ATTRIBUTE_KEYS = (
    "age",
    "gender",
    "attractive",
    "eyeglass",
    "sunglass",
    "smile",
    "eye_open",
    "mouth_open",
)

MOUTH = tuple(range(52, 72))  # the 20 lip contour points
SMILE_FEATURES = (
    "width",
    "lift_lip",
    "lift_nose",
    "open_inner",
    "open_outer",
    *(f"mouth{i}_{axis}" for i in MOUTH for axis in "xy"),
)
EDGE_FEATURES = ("bridge", "bridge_mean", "rim_left", "rim_right", "temple_left", "temple_right")

# Regions of the 112x112 ArcFace crop as (top, bottom, left, right); the template puts the eyes
# at (38, 52) and (74, 52), the nose tip at (56, 72), so these are fixed places on every face.
BRIDGE = (40, 60, 51, 62)  # between the inner eye corners: a frame's bridge crosses it
RIM_LEFT, RIM_RIGHT = (57, 70, 26, 50), (57, 70, 62, 86)  # lower rims under each eye
TEMPLE_LEFT, TEMPLE_RIGHT = (42, 62, 14, 26), (42, 62, 86, 98)  # the frame's outer sides
FACE = (30, 100, 20, 92)  # reference edge energy of the whole face
EYES = ((45, 58, 29, 48), (45, 58, 64, 83))  # the two eye boxes (what dark lenses cover)
SKIN = ((60, 78, 49, 63), (66, 82, 26, 44), (66, 82, 68, 86))  # nose, left and right cheek


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


def smile_features(landmarks106: np.ndarray) -> np.ndarray:
    """(N, 45) mouth geometry in inter-pupil distances, columns as SMILE_FEATURES.

    Five named measures (lift is positive when the corners sit above the reference; image y
    grows downwards), then the 20 lip points relative to their centroid, which carry the shape
    of the lips (the named measures alone reach AUC 0.89 held out, with the points 0.91).
    """
    p = np.asarray(landmarks106, np.float64)
    ipd = np.linalg.norm(p[:, LEFT_PUPIL] - p[:, RIGHT_PUPIL], axis=1).clip(1e-6)
    corners_y = (p[:, MOUTH_LEFT, 1] + p[:, MOUTH_RIGHT, 1]) / 2
    columns = (
        np.linalg.norm(p[:, MOUTH_LEFT] - p[:, MOUTH_RIGHT], axis=1),
        p[:, UPPER_LIP_OUTER, 1] - corners_y,
        p[:, NOSE_TIP, 1] - corners_y,
        np.linalg.norm(p[:, UPPER_LIP_INNER] - p[:, LOWER_LIP_INNER], axis=1),
        np.linalg.norm(p[:, UPPER_LIP_OUTER] - p[:, LOWER_LIP_OUTER], axis=1),
    )
    lips = p[:, MOUTH] - p[:, MOUTH].mean(axis=1, keepdims=True)
    return np.column_stack([np.stack(columns, axis=1), lips.reshape(len(p), -1)]) / ipd[:, None]


def face_geometry(landmarks106: np.ndarray) -> np.ndarray:
    """(N, 3) openness measures, columns as GEOMETRY, from points in the aligned (upright) frame.

    eye_ratio: lid gap over eye width (the eye aspect ratio of blink detectors), both eyes
    averaged; mouth_gap: inner-lip gap over mouth width; brow_height: how far the lower brow
    contour sits above the pupils, in inter-pupil distances (low = brows drawn down).
    """
    p = np.asarray(landmarks106, np.float64)
    ratios = []
    for outer, inner, upper, lower in EYES_106:
        width = np.linalg.norm(p[:, outer] - p[:, inner], axis=1).clip(1e-6)
        gap = np.linalg.norm(p[:, list(upper)] - p[:, list(lower)], axis=2).mean(axis=1)
        ratios.append(gap / width)
    mouth_width = np.linalg.norm(p[:, MOUTH_LEFT] - p[:, MOUTH_RIGHT], axis=1).clip(1e-6)
    mouth_gap = np.linalg.norm(p[:, UPPER_LIP_INNER] - p[:, LOWER_LIP_INNER], axis=1) / mouth_width
    ipd = np.linalg.norm(p[:, LEFT_PUPIL] - p[:, RIGHT_PUPIL], axis=1).clip(1e-6)
    pupils_y = (p[:, LEFT_PUPIL, 1] + p[:, RIGHT_PUPIL, 1]) / 2
    brows_y = np.mean([p[:, list(brow), 1].mean(axis=1) for brow in BROWS_LOWER], axis=0)
    return np.column_stack([np.mean(ratios, axis=0), mouth_gap, (pupils_y - brows_y) / ipd])


def attractive_features(
    ages: np.ndarray, males: np.ndarray, smile_logit: np.ndarray, geometry: np.ndarray
) -> np.ndarray:
    """(N, 6) inputs of the attractive model, columns as ATTRACTIVE_FEATURES."""
    return np.column_stack([ages, males, smile_logit, geometry]).astype(np.float64)


def ramp(values: np.ndarray, rule: dict[str, Any]) -> np.ndarray:
    """A one-feature logistic rule {half, width}: 1/2 at `half`, steeper for a smaller width."""
    return sigmoid((np.asarray(values, np.float64) - float(rule["half"])) / float(rule["width"]))


def _luminance(crops: np.ndarray) -> np.ndarray:
    return np.asarray(crops, np.float64) @ np.array([0.299, 0.587, 0.114])


def _region(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = box
    return image[:, top:bottom, left:right]


def edge_features(crops: np.ndarray) -> np.ndarray:
    """(N, 6) log edge strengths where glasses frames sit, columns as EDGE_FEATURES.

    A frame is a thin dark line: across the bridge and under the eyes it is horizontal, so the
    strongest row of vertical gradient is taken; at the temples it is vertical, so the strongest
    column of horizontal gradient. Each is divided by the face's mean gradient magnitude, which
    cancels the blur and contrast differences between photos.
    """
    lum = _luminance(crops)
    gy = np.zeros_like(lum)
    gx = np.zeros_like(lum)
    gy[:, 1:-1] = np.abs(lum[:, 2:] - lum[:, :-2]) / 2
    gx[:, :, 1:-1] = np.abs(lum[:, :, 2:] - lum[:, :, :-2]) / 2
    reference = np.hypot(_region(gx, FACE), _region(gy, FACE)).mean(axis=(1, 2)) + 1.0
    bridge = _region(gy, BRIDGE)
    columns = (
        bridge.mean(axis=2).max(axis=1),
        bridge.mean(axis=(1, 2)),
        _region(gy, RIM_LEFT).mean(axis=2).max(axis=1),
        _region(gy, RIM_RIGHT).mean(axis=2).max(axis=1),
        _region(gx, TEMPLE_LEFT).mean(axis=1).max(axis=1),
        _region(gx, TEMPLE_RIGHT).mean(axis=1).max(axis=1),
    )
    return np.log((np.stack(columns, axis=1) + 1.0) / reference[:, None])


def eye_band_darkness(crops: np.ndarray) -> np.ndarray:
    """(N,) mean luminance of the eye boxes over that of nose and cheeks (low = dark lenses)."""
    lum = _luminance(crops)
    eyes = np.mean([_region(lum, box).mean(axis=(1, 2)) for box in EYES], axis=0)
    skin = np.median([_region(lum, box).mean(axis=(1, 2)) for box in SKIN], axis=0)
    return eyes / np.maximum(skin, 1.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def linear(features: np.ndarray, model: dict[str, Any]) -> np.ndarray:
    """Logit of a standardised logistic model stored as {mean, scale, weights, bias}."""
    z = (features - np.asarray(model["mean"])) / np.asarray(model["scale"])
    return z @ np.asarray(model["weights"]) + float(model["bias"])


@cache
def coefficients() -> dict[str, Any]:
    """The fitted numbers, read once (a few KB)."""
    return json.loads(COEFFICIENTS.read_text())


def stacked_logit(
    features: np.ndarray, embeddings: np.ndarray, model: dict[str, Any]
) -> np.ndarray:
    """Logit of the combined model over hand-made features plus the embedding classifier's logit.

    The embedding carries identity-level cues (frames worn in most photos, a smiling face's
    cheeks) that the local measures miss; stacking its logit as one more feature keeps the
    combination small and lets the fit weigh the two.
    """
    embedding_logit = linear(np.asarray(embeddings, np.float64), model["embedding"])
    return linear(np.column_stack([features, embedding_logit]), model["combined"])


def sunglass_probability(
    eyeglass: np.ndarray, darkness: np.ndarray, rule: dict[str, Any]
) -> np.ndarray:
    """P(glasses) times a ramp that is 1/2 at `darkness_half` and steepens with `darkness_width`."""
    ramp = sigmoid((float(rule["darkness_half"]) - darkness) / float(rule["darkness_width"]))
    return eyeglass * ramp


def percent(probability: float, low: int = 0) -> int:
    """A probability as the wire's bare integer, `low`..100."""
    return int(np.clip(round(100 * float(probability)), low, 100))


def describe(
    faces: list[FaceEvidence],
    ages: np.ndarray,
    males: np.ndarray,
    geometry: np.ndarray,
    *,
    attractive: bool = True,
) -> list[dict[str, int]]:
    """Every attribute as an integer, keys in ATTRIBUTE_KEYS order (attractive left out if off).

    ages and males are the networks' outputs (years, P(male)); geometry is `face_geometry` of
    the faces' aligned landmarks.
    """
    if not faces:
        return []
    model = coefficients()
    crops = np.stack([face.crop for face in faces])
    landmarks = np.stack([face.landmarks106 for face in faces])
    embeddings = np.stack([face.embedding for face in faces])
    smile_logit = stacked_logit(smile_features(landmarks), embeddings, model["smile"])
    smile = sigmoid(smile_logit)
    eyeglass = sigmoid(stacked_logit(edge_features(crops), embeddings, model["eyeglass"]))
    sunglass = sunglass_probability(eyeglass, eye_band_darkness(crops), model["sunglass"])
    features = attractive_features(ages, males, smile_logit, geometry)
    beauty = sigmoid(linear(features, model["attractive"]))
    eye_open = ramp(geometry[:, 0], model["eye_open"])
    mouth_open = ramp(geometry[:, 1], model["mouth_open"])
    described = []
    for i in range(len(faces)):
        values = {
            "age": int(np.clip(round(float(ages[i])), 0, 100)),
            "gender": percent(males[i]),
            "attractive": percent(beauty[i]),
            "eyeglass": percent(eyeglass[i]),
            "sunglass": percent(sunglass[i]),
            "smile": percent(smile[i], low=1),
            "eye_open": percent(eye_open[i]),
            "mouth_open": percent(mouth_open[i]),
        }
        if not attractive:
            del values["attractive"]
        described.append(values)
    return described
