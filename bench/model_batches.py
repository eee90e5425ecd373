"""What a shared call buys each model: ONNX time per input row at batch 1, 2, 4 and 8.

Each model of the manifest runs on the server's own session options (app.vision.runtime) with
random inputs of its input size (the detector at 224x192, the fine pass of a CelebA photo), best
of several timed loops per batch size. This is the ceiling of what batching across requests
(FACESRV_INFERENCE_BATCH) can save per model; bench/detection.py measures what it saves end to
end over HTTP.

    .venv/bin/python bench/model_batches.py
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import onnxruntime
from host import cpu_model, load_average

from app.config import get_settings
from app.vision.manifest import load_manifest
from app.vision.runtime import create_session

BATCHES = (1, 2, 4, 8)
DETECTOR_INPUT = (3, 224, 192)


def per_row_ms(session, name: str, blob: np.ndarray, seconds: float = 0.5) -> float:  # noqa: ANN001
    session.run(None, {name: blob})  # warm
    best = float("inf")
    for _ in range(3):
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            session.run(None, {name: blob})
            runs += 1
        best = min(best, (time.perf_counter() - started) / runs)
    return best * 1000 / len(blob)


def main() -> None:
    settings = get_settings()
    manifest = load_manifest(settings.model_manifest)
    print(
        f"machine: {cpu_model()} | {os.cpu_count()} cores | onnxruntime {onnxruntime.__version__}"
        f" | Python {platform.python_version()} | load avg {load_average()}"
    )
    header = "  ".join(f"batch {b}" for b in BATCHES)
    print(f"model        input          {header}  saved at 4 (ms per row)")
    for role, spec in manifest.models.items():
        session = create_session(settings.models_dir / spec.file)
        (model_input,) = session.get_inputs()
        shape = DETECTOR_INPUT if role == "detection" else tuple(model_input.shape[1:])
        rng = np.random.default_rng(0)
        times = [
            per_row_ms(
                session,
                model_input.name,
                rng.random((batch, *shape)).astype(np.float32),
            )
            for batch in BATCHES
        ]
        cells = "  ".join(f"{ms:5.2f} ms" for ms in times)
        print(f"{role:12} {'x'.join(map(str, shape)):14} {cells}  {1 - times[2] / times[0]:6.0%}")


if __name__ == "__main__":
    main()
