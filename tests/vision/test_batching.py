"""Batching across requests on the real models: the same answers as runs alone, each caller gets
its own rows back, a caller alone goes at once, and a call refused fails its own caller only."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.vision.batching import BatchingSession
from app.vision.manifest import load_manifest
from app.vision.runtime import TimedSession, create_session


def _session(manifest_path: Path, models_dir: Path, role: str) -> TimedSession:
    return create_session(models_dir / load_manifest(manifest_path).models[role].file)


def _concurrently(calls: list[Callable[[], object]]) -> list[object]:
    """Every call on its own thread, released together; their results in order."""
    start = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def work(index: int) -> None:
        start.wait()
        try:
            results[index] = calls[index]()
        except BaseException as error:  # noqa: BLE001 - returned to the test
            results[index] = error

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


class _Counted:
    """A real session that counts its calls and the rows of each."""

    def __init__(self, session: TimedSession) -> None:
        self.session = session
        self.rows: list[int] = []
        self._lock = threading.Lock()

    def run(self, names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        (blob,) = feed.values()
        with self._lock:
            self.rows.append(len(blob))
        return self.session.run(names, feed)

    def __getattr__(self, name: str) -> object:
        return getattr(self.session, name)


def test_shared_calls_answer_each_caller_with_its_own_rows(
    manifest_path: Path, models_dir: Path
) -> None:
    """12 callers with 1-3 crops each, at once: fewer calls than callers, every caller's
    embeddings those of its crops run alone (float tolerance)."""
    counted = _Counted(_session(manifest_path, models_dir, "recognition"))
    batching = BatchingSession(counted, max_batch=8)  # type: ignore[arg-type]
    name = counted.get_inputs()[0].name
    rng = np.random.default_rng(7)
    blobs = [rng.standard_normal((1 + i % 3, 3, 112, 112)).astype(np.float32) for i in range(12)]
    alone = [counted.session.run(None, {name: blob})[0] for blob in blobs]
    counted.rows.clear()

    together = _concurrently(
        [lambda blob=blob: batching.run(None, {name: blob})[0] for blob in blobs]
    )
    for mine, expected in zip(together, alone, strict=True):
        assert isinstance(mine, np.ndarray) and mine.shape == expected.shape
        np.testing.assert_allclose(mine, expected, rtol=1e-4, atol=1e-4)
    assert sum(counted.rows) == sum(len(blob) for blob in blobs)
    assert len(counted.rows) < len(blobs), "some calls were shared"
    assert max(counted.rows) <= 8


def test_a_run_alone_goes_at_once_and_other_shapes_never_mix(
    manifest_path: Path, models_dir: Path
) -> None:
    counted = _Counted(_session(manifest_path, models_dir, "recognition"))
    batching = BatchingSession(counted, max_batch=8)  # type: ignore[arg-type]
    name = counted.get_inputs()[0].name
    one = np.zeros((1, 3, 112, 112), np.float32)
    batching.run(None, {name: one})
    assert counted.rows == [1]
    wrong = np.zeros((1, 3, 100, 100), np.float32)  # refused by the graph: its caller only
    results = _concurrently(
        [lambda: batching.run(None, {name: wrong})]
        + [lambda: batching.run(None, {name: one})[0] for _ in range(5)]
    )
    assert isinstance(results[0], Exception)
    assert all(isinstance(r, np.ndarray) and r.shape == (1, 512) for r in results[1:])


def test_the_detector_shares_calls_with_the_answers_of_runs_alone(
    manifest_path: Path, models_dir: Path
) -> None:
    """SCRFD's outputs are (N, anchors, ...): same-sized images share a call, each gets its own
    anchors back."""
    counted = _Counted(_session(manifest_path, models_dir, "detection"))
    batching = BatchingSession(counted, max_batch=8)  # type: ignore[arg-type]
    name = counted.get_inputs()[0].name
    rng = np.random.default_rng(3)
    blobs = [rng.standard_normal((1, 3, 224, 192)).astype(np.float32) for _ in range(6)]
    alone = [counted.session.run(None, {name: blob}) for blob in blobs]
    counted.rows.clear()
    results = _concurrently([lambda blob=blob: batching.run(None, {name: blob}) for blob in blobs])
    for mine, expected in zip(results, alone, strict=True):
        assert isinstance(mine, list) and len(mine) == len(expected)
        for got, want in zip(mine, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert len(counted.rows) < len(blobs)
