"""InsightFace 2d106det: 106 facial landmarks from a box-centred 192x192 crop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.vision.geometry import apply_affine, invert_affine, scale_translate, warp_affine
from app.vision.runtime import Session, create_session


class Landmark106:
    """Crops around each detection box (1.5x its long side), predicts, maps back to the image.

    The crop depends on the box, not on keypoints: that is how the model was trained.
    """

    def __init__(self, session: Session, options: dict[str, Any]) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.mean = np.asarray(options.get("mean", [0.0] * 3), np.float32)
        self.std = np.asarray(options.get("std", [1.0] * 3), np.float32)
        self.bgr = options.get("colour_order", "RGB").upper() == "BGR"
        self.input_size = int(options.get("input_size", 192))
        self.box_scale = float(options.get("box_scale", 1.5))
        self.points = int(options.get("points", 106))
        self.batch_size = int(options.get("batch_size", 8))

    @classmethod
    def load(
        cls, path: Path, options: dict[str, Any], threads: int | None = None, batch: int = 1
    ) -> Landmark106:
        return cls(create_session(path, threads, batch), options)

    def crop_transform(self, box: np.ndarray) -> np.ndarray:
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        side = max(box[2] - box[0], box[3] - box[1]) * self.box_scale
        return scale_translate(self.input_size / max(side, 1e-6), centre, self.input_size)

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        pixels = crops.astype(np.float32)
        if self.bgr:
            pixels = pixels[..., ::-1]
        return np.ascontiguousarray(((pixels - self.mean) / self.std).transpose(0, 3, 1, 2))

    def predict(self, image: Image.Image, boxes: np.ndarray) -> np.ndarray:
        """Landmarks (N, points, 2) in image pixels for boxes (N, 4)."""
        if len(boxes) == 0:
            return np.zeros((0, self.points, 2), np.float32)
        transforms = [self.crop_transform(box) for box in boxes]
        crops = np.stack([warp_affine(image, m, self.input_size) for m in transforms])
        raw = np.concatenate(
            [
                self.session.run(
                    None, {self.input_name: self.preprocess(crops[i : i + self.batch_size])}
                )[0]
                for i in range(0, len(crops), self.batch_size)
            ]
        )
        half = self.input_size / 2
        in_crop = (raw.reshape(len(boxes), -1, 2)[:, : self.points] + 1.0) * half
        return np.stack(
            [apply_affine(p, invert_affine(m)) for p, m in zip(in_crop, transforms, strict=True)]
        ).astype(np.float32)
