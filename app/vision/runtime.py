"""ONNX Runtime session construction shared by every model class.

One place decides providers and threading so that all five sessions behave alike: CUDA when the
installed onnxruntime offers it, and no spinning idle threads (on a 2-core box, threads of one
session spinning while the next model runs cost more than the models themselves).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Protocol

import onnxruntime as ort

from app import metrics
from app.vision.batching import BatchingSession

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


def default_threads() -> int:
    return os.cpu_count() or 1


def providers() -> list[str]:
    """CUDA first when this onnxruntime build has it (onnxruntime-gpu), CPU always as fallback."""
    return [_CUDA, _CPU] if _CUDA in ort.get_available_providers() else [_CPU]


class Session(Protocol):
    """What the model classes use of a session: a TimedSession, or one that batches it."""

    def run(self, output_names: list[str] | None, feed: dict[str, Any]) -> list[Any]: ...

    def get_inputs(self) -> list[Any]: ...


class TimedSession:
    """An InferenceSession whose every `run` is timed into facesrv_inference_duration_seconds."""

    def __init__(self, session: ort.InferenceSession, model: str) -> None:
        self._session = session
        self._seconds = metrics.INFERENCE_SECONDS.labels(model)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._session.run(*args, **kwargs)
        finally:
            self._seconds.observe(time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:  # get_inputs(), get_providers(), ...
        return getattr(self._session, name)


def create_session(path: Path, threads: int | None = None, batch: int = 1) -> Session:
    """The model's session; with `batch` > 1, concurrent runs share calls of up to that many
    rows (app.vision.batching)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    # The recognition and landmark graphs declare batch 1 yet run any batch; ORT warns on every
    # batched call, so only errors are logged.
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), sess_options=options, providers=providers())
    timed = TimedSession(session, Path(path).stem)
    return BatchingSession(timed, batch) if batch > 1 else timed
