"""Small numpy geometry used by the models: similarity fits, affine warps, NMS.

OpenCV is deliberately not a dependency; PIL's AFFINE transform is a fast C warp and numpy does
the rest.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

Affine = np.ndarray  # 2x3 float64, maps source (image) coordinates to destination coordinates


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> Affine:
    """Least-squares rotation + uniform scale + translation taking `src` points onto `dst`.

    Umeyama (1991) without reflection: the same estimate as skimage's SimilarityTransform that
    InsightFace used when the recognition and attribute templates were made.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(covariance) < 0:
        sign[1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    variance = (src_c**2).sum() / len(src)
    scale = (singular * sign).sum() / variance if variance > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def scale_translate(scale: float, centre: tuple[float, float], size: int) -> Affine:
    """Affine that scales about `centre` and puts it at the middle of a `size` square."""
    cx, cy = centre
    return np.array([[scale, 0.0, size / 2 - scale * cx], [0.0, scale, size / 2 - scale * cy]])


def invert_affine(matrix: Affine) -> Affine:
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def apply_affine(points: np.ndarray, matrix: Affine) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def affine_scale(matrix: Affine) -> float:
    """Uniform scale factor of a similarity transform (destination px per source px)."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def warp_affine(
    image: Image.Image, matrix: Affine, size: int, *, antialias: bool = False
) -> np.ndarray:
    """Square `size` crop of `image` under `matrix` (image -> crop), bilinear, black border.

    With `antialias`, strong shrinking warps at a multiple of `size` and box-filters down, the way
    dlib's chip extractor avoids aliasing; recognition and landmark models were trained on plain
    bilinear warps (cv2.warpAffine) and get exactly that.
    """
    factor = 1
    if antialias:
        factor = int(np.clip(np.floor(1.0 / max(affine_scale(matrix), 1e-6)), 1, 4))
    big = size * factor
    scaled = np.vstack([matrix * factor, [0.0, 0.0, 1.0]])[:2] if factor > 1 else matrix
    inverse = invert_affine(scaled)
    # PIL samples the source at inverse(out + 0.5) - 0.5 (pixel-area convention); the matrices
    # here use cv2's pixel-index convention, so move the translation by half a pixel.
    linear = inverse[:, :2]
    offset = inverse[:, 2] + 0.5 - linear @ np.array([0.5, 0.5])
    coeffs = (linear[0, 0], linear[0, 1], offset[0], linear[1, 0], linear[1, 1], offset[1])
    warped = image.transform((big, big), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
    if factor > 1:
        warped = warped.reduce(factor)
    return np.asarray(warped)


def iou_matrix_row(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores)
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[iou_matrix_row(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
