"""`CodeShards`: slots across shard boundaries, the live bitmap, the merge of shard results."""

from __future__ import annotations

import numpy as np
import pytest

from app.index.codes import CodeShards


@pytest.fixture
def codes() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (2_500, 64), dtype=np.uint8)


def test_slots_run_across_shards_in_insertion_order(codes: np.ndarray) -> None:
    shards = CodeShards(64, shard_size=1_000)
    for batch in np.array_split(codes, 7):  # uneven batches straddle the shard boundaries
        shards.add(batch)
    assert shards.ntotal == len(codes)
    probes = np.array([0, 999, 1_000, 1_001, 2_499])
    distances, slots = shards.search(codes[probes], 3, live=None)
    assert slots[:, 0].tolist() == probes.tolist()
    assert (distances[:, 0] == 0).all() and (np.diff(distances, axis=1) >= 0).all()


def test_merge_equals_one_shard_and_honours_the_live_bitmap(codes: np.ndarray) -> None:
    one, three = CodeShards(64, shard_size=8_000), CodeShards(64, shard_size=1_000)
    one.add(codes)
    three.add(codes)
    live = np.ones(len(codes), bool)
    live[[10, 1_000, 1_500, 2_400]] = False
    bits = np.packbits(live, bitorder="little")
    queries = codes[[10, 1_000, 1_500, 2_400, 7]]
    d1, s1 = one.search(queries, 50, bits)
    d3, s3 = three.search(queries, 50, bits)
    np.testing.assert_array_equal(d1, d3)  # slots may differ only between equal distances
    assert not np.isin(s3, [10, 1_000, 1_500, 2_400]).any()
    assert s3[4, 0] == 7


def test_pads_short_results(codes: np.ndarray) -> None:
    assert CodeShards(64).search(codes[:2], 4, None)[1].tolist() == [[-1] * 4] * 2
    shards = CodeShards(64, shard_size=8)
    shards.add(codes[:10])
    distances, slots = shards.search(codes[:1], 12, None)
    assert sorted(slots[0, :10].tolist()) == list(range(10)) and slots[0, 10:].tolist() == [-1, -1]
    assert (distances[0, 10:] == np.iinfo(np.int32).max).all()
    with pytest.raises(ValueError, match="multiple of 8"):
        CodeShards(64, shard_size=12)
