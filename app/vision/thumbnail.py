"""A face's thumbnail: a small square JPEG crop around its box, for the web console's lists.

Small on purpose (THUMBNAIL_SIZE px, JPEG quality THUMBNAIL_QUALITY): measured on the faces of 60
CelebA photos, 3.1 KB median (1.2-4.5 KB), less than the face's own row with its embedding and
landmarks, so keeping one per face costs the store little.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

THUMBNAIL_SIZE = 112
THUMBNAIL_QUALITY = 80
MARGIN = 0.25  # of the box's longer side, on each side: hair, chin and ears in the picture


def face_thumbnail(rgb: np.ndarray, box: np.ndarray) -> bytes:
    """JPEG bytes of a THUMBNAIL_SIZE square centred on `box` (x1, y1, x2, y2, image pixels).

    The square is widened by MARGIN and may run past the image's edges; what lies outside is
    grey, so a face at the border keeps its place in the middle of the thumbnail.
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    side = max(x2 - x1, y2 - y1) * (1 + 2 * MARGIN)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    square = Image.new("RGB", (max(round(side), 1),) * 2, (128, 128, 128))
    picture = Image.fromarray(rgb)
    region = (max(left, 0), max(top, 0), min(left + square.width, picture.width),
              min(top + square.height, picture.height))  # fmt: skip
    if region[2] > region[0] and region[3] > region[1]:
        square.paste(picture.crop(region), (region[0] - left, region[1] - top))
    small = square.resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return out.getvalue()
