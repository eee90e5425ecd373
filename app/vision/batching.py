"""Batching across requests: concurrent runs of one model share one ONNX call.

Each request runs its own few faces through each model; on a GPU (and, less, on CPU) a call's
fixed cost dominates a batch of one. So the runs that wait for the same model are gathered into
one call and their outputs scattered back.

No request waits for company: the first run of an idle model goes at once. Runs that arrive
while the model is busy queue; when the call in flight ends, the first of them leads the next
call, taking every queued run of the same input shape, up to `max_batch` rows, in arrival order
(the fair pools upstream already decide whose work gets this far, and arrival order keeps one
account's flood from holding back a run that queued first). A run that cannot share a call (an
input of another shape) leads a later one. The model thus runs one call at a time, as the
process-wide inference lock made it before.

Every model of the manifest takes part: each one's outputs carry the batch as their first axis
(SCRFD's too: (N, anchors, ...)), which is what lets a shared call's outputs be split back per
run. A model whose outputs do not fails its shared calls with an error that says so.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class _Runs(Protocol):
    def run(
        self, output_names: list[str] | None, feed: dict[str, np.ndarray]
    ) -> list[np.ndarray]: ...


@dataclass(eq=False)
class _Run:
    """One caller's input and, once its call is done, its outputs or the error."""

    blob: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    outputs: list[np.ndarray] | None = None
    error: BaseException | None = None
    leads: bool = False  # woken to lead the next call rather than with a result

    @property
    def shape(self) -> tuple[tuple[int, ...], np.dtype]:
        return self.blob.shape[1:], self.blob.dtype

    def result(self) -> list[np.ndarray]:
        if self.error is not None:
            raise self.error
        assert self.outputs is not None
        return self.outputs


class BatchingSession:
    """A session whose concurrent `run`s are gathered into shared calls (see the module)."""

    def __init__(self, session: _Runs, max_batch: int) -> None:
        self._session = session
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: deque[_Run] = deque()
        self._busy = False

    def __getattr__(self, name: str) -> Any:  # get_inputs(), get_providers(), ...
        return getattr(self._session, name)

    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        ((input_name, blob),) = feed.items()
        run = _Run(np.ascontiguousarray(blob))
        with self._lock:
            self._queue.append(run)
            leads = not self._busy
            self._busy = True
        if not leads:
            run.done.wait()
            if not run.leads:
                return run.result()
        self._lead(run, input_name, output_names)
        return run.result()

    def _lead(self, own: _Run, input_name: str, output_names: list[str] | None) -> None:
        """Run one call holding `own` and the queued runs that fit with it, then hand the model
        to the next queued run (or leave it idle)."""
        with self._lock:
            batch = self._take(own)
        try:
            self._call(batch, input_name, output_names)
        except BaseException as error:  # noqa: BLE001 - each caller re-raises it
            for run in batch:
                run.error = error
        with self._lock:
            following = self._queue[0] if self._queue else None
            if following is None:
                self._busy = False
            else:
                following.leads = True
        for run in batch:
            if run is not own:
                run.done.set()
        if following is not None:
            following.done.set()

    def _take(self, own: _Run) -> list[_Run]:
        """`own` and the queued runs of its shape, in arrival order, up to `max_batch` rows."""
        self._queue.remove(own)
        batch, rows = [own], len(own.blob)
        for run in list(self._queue):
            if run.shape == own.shape and rows + len(run.blob) <= self.max_batch:
                self._queue.remove(run)
                batch.append(run)
                rows += len(run.blob)
        return batch

    def _call(self, batch: list[_Run], input_name: str, output_names: list[str] | None) -> None:
        if len(batch) == 1:
            batch[0].outputs = self._session.run(output_names, {input_name: batch[0].blob})
            return
        rows = [len(run.blob) for run in batch]
        outputs = self._session.run(
            output_names, {input_name: np.concatenate([run.blob for run in batch])}
        )
        if any(len(output) != sum(rows) for output in outputs):
            raise RuntimeError(
                "a model's outputs are not per input row, so calls cannot be shared: "
                "set FACESRV_INFERENCE_BATCH=1"
            )
        ends = np.cumsum(rows)[:-1]
        per_run = [np.split(output, ends) for output in outputs]
        for index, run in enumerate(batch):
            run.outputs = [parts[index] for parts in per_run]
