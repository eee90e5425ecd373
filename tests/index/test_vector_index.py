"""Behaviour of `VectorIndex`: exact and code-scan search, removal, snapshots, threads, device."""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from app.index.codes import SignCoder
from app.index.vectors import EXACT, HAMMING, VectorIndex, recall_at_1

DIM = 512
EXACT_MAX = 2_000


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    faiss.normalize_L2(x)
    return x


def genuine(rng: np.random.Generator, base: np.ndarray, n: int) -> np.ndarray:
    """Second 'photos' of base faces: cosine ~0.7 to their true match."""
    q = base[rng.choice(len(base), n, replace=False)]
    q += rng.standard_normal(q.shape, dtype=np.float32) * 0.045
    faiss.normalize_L2(q)
    return q


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def base(rng: np.random.Generator) -> np.ndarray:
    return unit(rng, 3_000)


@pytest.fixture
def hamming(base: np.ndarray) -> VectorIndex:
    index = VectorIndex(DIM, exact_max=EXACT_MAX)
    index.add(np.arange(len(base)), base)
    assert index.kind == HAMMING
    return index


def test_add_search_remove_readd_exact(base: np.ndarray) -> None:
    index = VectorIndex(DIM, exact_max=EXACT_MAX)
    index.add(np.arange(100, 200), base[:100])
    assert (index.kind, len(index)) == (EXACT, 100)

    scores, ids = index.search(base[[5, 6]], 3)
    assert ids[:, 0].tolist() == [105, 106]
    assert np.all(np.diff(scores, axis=1) <= 0), "best first"

    index.remove(np.array([105, 999]))
    assert len(index) == 99
    _, ids = index.search(base[[5]], 10)
    assert 105 not in ids

    index.add(np.array([105]), base[[50]])
    scores, ids = index.search(base[[50]], 2)
    assert sorted(ids[0].tolist()) == [105, 150]
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    _, ids = index.search(base[[5]], 10)
    assert 105 not in ids, "the re-added id carries its new vector only"


def test_upsert_replaces_and_last_duplicate_wins(base: np.ndarray) -> None:
    index = VectorIndex(DIM)
    index.add(np.array([1, 2]), base[:2])
    index.add(np.array([1, 1]), base[[3, 4]])
    assert len(index) == 2
    assert index.search(base[[4]], 1)[1][0, 0] == 1
    assert index.search(base[[0]], 2)[1][0].tolist() != [1, 2]
    assert index.search(base[[0]], 1)[0][0, 0] < 0.5


@pytest.mark.parametrize("n", [50, 2_500])
def test_self_match_scores_one(base: np.ndarray, n: int) -> None:
    index = VectorIndex(DIM, exact_max=EXACT_MAX)
    index.add(np.arange(n), base[:n])
    scores, ids = index.search(base[:20], 1)
    assert ids[:, 0].tolist() == list(range(20))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_pads_with_minus_one_when_fewer_than_k(base: np.ndarray) -> None:
    index = VectorIndex(DIM)
    scores, ids = index.search(base[:2], 5)
    assert (ids == -1).all() and np.isneginf(scores).all()

    index.add(np.arange(3), base[:3])
    index.remove(np.array([0]))
    scores, ids = index.search(base[:1], 5)
    assert sorted(ids[0, :2].tolist()) == [1, 2]
    assert ids[0, 2:].tolist() == [-1, -1, -1]
    assert np.isneginf(scores[0, 2:]).all() and np.isfinite(scores[0, :2]).all()


def test_crossing_exact_max_switches_to_hamming_and_keeps_recall(
    rng: np.random.Generator, base: np.ndarray
) -> None:
    index = VectorIndex(DIM, exact_max=EXACT_MAX)
    index.add(np.arange(EXACT_MAX), base[:EXACT_MAX])
    assert index.kind == EXACT
    index.add(np.arange(EXACT_MAX, len(base)), base[EXACT_MAX:])
    assert (index.kind, len(index)) == (HAMMING, len(base))
    assert recall_at_1(index, genuine(rng, base, 200)) >= 0.99


def test_hamming_never_returns_removed_ids_and_readds(
    rng: np.random.Generator, base: np.ndarray, hamming: VectorIndex
) -> None:
    removed = np.arange(0, 600, 2)
    hamming.remove(removed)
    assert hamming.tombstones == len(removed) and len(hamming) == len(base) - len(removed)

    _, ids = hamming.search(base[:600], 10)
    assert not np.isin(ids, removed).any()
    _, ids = hamming.search_exact(base[:600], 10)
    assert not np.isin(ids, removed).any()
    # Second photos of faces still there (a removed face's photo is a stranger's, see below).
    assert recall_at_1(hamming, genuine(rng, base[600:], 200)) == 1.0

    hamming.add(np.array([0]), base[[1]])
    _, ids = hamming.search(base[[0]], 10)
    assert 0 not in ids, "the old vector of a re-added id stays dead"
    _, ids = hamming.search(base[[1]], 2)
    assert sorted(ids[0].tolist()) == [0, 1]


def test_compaction_drops_tombstones_and_picks_kind_afresh(
    base: np.ndarray, hamming: VectorIndex
) -> None:
    hamming.remove(np.arange(400))
    assert hamming.tombstones == 400 and hamming.kind == HAMMING
    hamming.remove(np.arange(400, 1_500))  # past 25 % dead: rebuilt, 1,500 live <= exact_max
    assert (hamming.tombstones, hamming.kind, len(hamming)) == (0, EXACT, 1_500)
    scores, ids = hamming.search(base[1_500:1_510], 1)
    assert ids[:, 0].tolist() == list(range(1_500, 1_510))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


@pytest.mark.parametrize("n", [300, 3_000])
def test_save_load_round_trip(tmp_path: Path, base: np.ndarray, n: int) -> None:
    index = VectorIndex(DIM, exact_max=EXACT_MAX, rerank=200)
    index.add(np.arange(n), base[:n])
    index.remove(np.arange(0, 60, 3))
    path = tmp_path / "faceset.fvi"
    index.save(path, {"seq": 42, "collection": "fs-1"})

    loaded, meta = VectorIndex.load(path)
    assert meta == {"seq": 42, "collection": "fs-1"}
    assert (loaded.kind, len(loaded), loaded.tombstones) == (index.kind, len(index), 20)
    assert (loaded.exact_max, loaded.rerank) == (EXACT_MAX, 200)
    for got, want in zip(loaded.search(base[:100], 5), index.search(base[:100], 5), strict=True):
        np.testing.assert_array_equal(got, want)
    assert list(tmp_path.iterdir()) == [path], "no temporary file left behind"

    loaded.add(np.array([0]), base[[0]])
    assert loaded.search(base[[0]], 1)[1][0, 0] == 0


def test_load_overrides_saved_parameters(tmp_path: Path, base: np.ndarray) -> None:
    index = VectorIndex(DIM, exact_max=EXACT_MAX)
    index.add(np.arange(len(base)), base)
    path = tmp_path / "faceset.fvi"
    index.save(path, {"seq": 1})
    assert VectorIndex.load(path)[0].kind == HAMMING
    loaded, _ = VectorIndex.load(path, exact_max=len(base))
    assert (loaded.kind, loaded.exact_max) == (EXACT, len(base))


def test_sign_codes_estimate_the_angle(rng: np.random.Generator, base: np.ndarray) -> None:
    """Each bit differs with probability angle / pi, the property the re-ranking relies on."""
    coder = SignCoder(DIM)
    np.testing.assert_allclose(coder.rotation @ coder.rotation.T, np.eye(DIM), atol=1e-5)
    near = base[:1_000] + rng.standard_normal((1_000, DIM), dtype=np.float32) * 0.045
    faiss.normalize_L2(near)
    cosines = np.einsum("ij,ij->i", base[:1_000], near)
    differing = np.unpackbits(coder.encode(base[:1_000]) ^ coder.encode(near), axis=1).sum(1)
    expected = DIM * np.arccos(np.clip(cosines, -1, 1)) / np.pi
    assert abs((differing - expected).mean()) < 1.0
    assert coder.encode(base[:5]).shape == (5, DIM // 8)


def test_rerank_depth_bounds_what_a_weak_query_can_find(
    rng: np.random.Generator, hamming: VectorIndex
) -> None:
    """Strangers have no clear best match: a shallow re-rank may miss the exact top 1, a
    re-rank of every face cannot; results are exact scores, best first, even for k > rerank."""
    strangers = unit(rng, 50)
    hamming.rerank = len(hamming)
    assert recall_at_1(hamming, strangers) == 1.0
    hamming.rerank = 8
    assert recall_at_1(hamming, strangers) < 1.0
    scores, ids = hamming.search(strangers[:3], 20)
    exact_scores, exact_ids = hamming.search_exact(strangers[:3], 20)
    assert (ids >= 0).all() and np.all(np.diff(scores, axis=1) <= 0)
    assert scores.max() <= exact_scores[:, :1].max() + 1e-6


def test_code_scan_over_several_shards(rng: np.random.Generator, base: np.ndarray) -> None:
    index = VectorIndex(DIM, exact_max=EXACT_MAX, code_shard_size=1_000)
    index.add(np.arange(len(base)), base)
    assert index.kind == HAMMING and index._codes.ntotal == len(base)
    removed = np.arange(900, 1_200)  # tombstones on both sides of a shard boundary
    index.remove(removed)
    assert recall_at_1(index, genuine(rng, base[1_200:], 200)) == 1.0
    _, ids = index.search(base[900:1_200], 5)
    assert not np.isin(ids, removed).any()
    index.rerank = len(base)
    assert recall_at_1(index, unit(rng, 20)) == 1.0


def test_load_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"x" * 64)
    with pytest.raises(ValueError, match="not a vector index snapshot"):
        VectorIndex.load(path)


def test_concurrent_searches_while_adding(rng: np.random.Generator, base: np.ndarray) -> None:
    index = VectorIndex(DIM, exact_max=EXACT_MAX)
    stable = 500
    index.add(np.arange(stable), base[:stable])
    errors: list[BaseException] = []
    done = threading.Event()

    def searcher() -> None:
        try:
            while not done.is_set():
                scores, ids = index.search(base[:stable:25], 3)
                assert ids[:, 0].tolist() == list(range(0, stable, 25))
                assert (scores[:, 0] > 0.999).all()
                assert ((ids >= 0) & (ids < len(base))).all()
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(stable, len(base), 250):  # crosses exact_max while searching
        index.add(np.arange(start, start + 250), base[start : start + 250])
        index.remove(np.arange(start, start + 10))
    done.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert index.kind == HAMMING and len(index) == len(base) - 10 * 10


def test_changes_during_a_rebuild_are_caught_up(base: np.ndarray) -> None:
    """Whatever the interleaving, the rebuilt index holds exactly the faces live at the end."""
    index = VectorIndex(DIM, exact_max=EXACT_MAX)
    index.add(np.arange(1_900), base[:1_900])
    grow = threading.Thread(target=index.add, args=(np.arange(1_900, 2_400), base[1_900:2_400]))
    grow.start()  # crosses exact_max: codes the index outside the write lock
    for start in range(0, 300, 10):
        index.remove(np.arange(start, start + 5))
        index.add(np.arange(start + 5, start + 6), base[[2_500 + start]])  # replaced vector
    index.add(np.arange(2_400, 2_500), base[2_400:2_500])
    grow.join()

    live = np.setdiff1d(np.arange(2_500), [s + i for s in range(0, 300, 10) for i in range(5)])
    assert (index.kind, len(index)) == (HAMMING, len(live))
    moved = np.arange(5, 300, 10)
    _, ids = index.search_exact(base[2_500 + moved - 5], 1)
    assert ids[:, 0].tolist() == moved.tolist()
    kept = np.setdiff1d(live, moved)
    scores, ids = index.search_exact(base[kept], 1)
    assert ids[:, 0].tolist() == kept.tolist()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_gpu_only_for_exact_and_cpu_fallback(base: np.ndarray) -> None:
    index = VectorIndex(DIM, exact_max=10)
    expected = "gpu" if faiss.get_num_gpus() > 0 else "cpu"
    assert index.device == expected
    index.add(np.arange(5), base[:5])
    assert index.search(base[:1], 1)[1][0, 0] == 0
    index.add(np.arange(5, 20), base[5:20])
    assert (index.kind, index.device) == (HAMMING, "cpu")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ix, x: ix.add(np.array([-1]), x[:1]), "ids must be >= 0"),
        (lambda ix, x: ix.add(np.arange(2), x[:3]), "shape"),
        (lambda ix, x: ix.search(x[:1, :10], 1), "shape"),
        (lambda ix, x: ix.search(x[:1], 0), "k must be"),
    ],
)
def test_rejects_bad_input(base: np.ndarray, call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(VectorIndex(DIM), base)
