"""In-process benchmark of `app.index.vectors.VectorIndex` on synthetic faces.

The base is N random unit vectors (ids 0..N-1). "Genuine" queries are a base face plus gaussian
noise, renormalised, so each has one true match at a chosen cosine (0.3 to 0.7) like a second
photo of the same person; "stranger" queries are pure random vectors. Recall@1 is measured
against brute-force search over the same faces. The index is built once, snapshotted, and all
later figures are taken on the index loaded back from the snapshot, as a restarted server would
see it.

    .venv/bin/python bench/index_search.py --n 200000      # quick
    .venv/bin/python bench/index_search.py                 # 1M faces, several minutes
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from host import cpu_model, load_average

from app.index.vectors import VectorIndex, recall_at_1

DIM = 512
# Genuine queries: a base face plus gaussian noise of this per-dimension sigma, renormalised, so
# that their cosine to the true match is c = 1 / sqrt(1 + 512 sigma^2). Real second photos of a
# person score 0.25-0.8 with the default model (mean ~0.5 on celeba-dev), so every band is shown.
COSINE_BANDS = (0.3, 0.4, 0.5, 0.7)


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    faiss.normalize_L2(x)
    return x


def genuine_queries(
    rng: np.random.Generator, base: np.ndarray, n: int, cosine: float
) -> np.ndarray:
    sigma = np.sqrt((1 / cosine**2 - 1) / DIM)
    q = base[rng.choice(len(base), n, replace=False)]
    q += rng.standard_normal(q.shape, dtype=np.float32) * sigma
    faiss.normalize_L2(q)
    return q


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def latencies_ms(index: VectorIndex, queries: np.ndarray, k: int) -> np.ndarray:
    out = np.empty(len(queries))
    for i in range(len(queries)):
        t = time.perf_counter()
        index.search(queries[i : i + 1], k)
        out[i] = (time.perf_counter() - t) * 1e3
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="faces in the index")
    ap.add_argument("--rerank", default="64,256,1024", help="re-rank depths to sweep")
    ap.add_argument("--queries", type=int, default=1000, help="single queries timed per setting")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="snapshot dir")
    args = ap.parse_args()

    print(f"machine: {platform.platform()} | {cpu_model()} | {os.cpu_count()} cores")
    print(
        f"faiss {faiss.__version__}, omp threads {faiss.omp_get_max_threads()}, "
        f"gpus {faiss.get_num_gpus()}, numpy {np.__version__}, load avg {load_average()}"
    )
    rng = np.random.default_rng(0)
    base = unit_vectors(rng, args.n)
    ids = np.arange(args.n, dtype=np.int64)

    index = VectorIndex(DIM)
    t = time.perf_counter()
    for start in range(0, args.n, 100_000):
        index.add(ids[start : start + 100_000], base[start : start + 100_000])
    print(
        f"build: {time.perf_counter() - t:.1f} s for {args.n:,} faces "
        f"(kind={index.kind}, load avg {load_average()})"
    )

    snapshot = args.dir / f"index_search_{args.n}.fvi"
    t = time.perf_counter()
    index.save(snapshot, {"seq": args.n})
    size = snapshot.stat().st_size
    print(
        f"snapshot write: {time.perf_counter() - t:.1f} s, {size / 2**20:.0f} MiB "
        f"({size / args.n:.0f} B/face)"
    )
    del index
    gc.collect()

    rss0 = rss_bytes()
    t = time.perf_counter()
    index, meta = VectorIndex.load(snapshot)
    load_s = time.perf_counter() - t
    rss1 = rss_bytes()
    print(
        f"snapshot load: {load_s:.1f} s (meta {meta}); memory: "
        f"{(rss1 - rss0) / args.n:.0f} B/face RSS delta ({(rss1 - rss0) / 2**20:.0f} MiB)"
    )

    extra = unit_vectors(rng, 10_000)
    t = time.perf_counter()
    index.add(np.arange(args.n, args.n + 10_000), extra)
    index.remove(np.arange(args.n, args.n + 10_000))
    print(
        f"replay: add 10k + remove 10k in {time.perf_counter() - t:.1f} s "
        f"(tombstones {index.tombstones}, kind {index.kind})"
    )

    bands = {c: genuine_queries(rng, base, 500, c) for c in COSINE_BANDS}
    strangers = unit_vectors(rng, 200)
    timed = genuine_queries(rng, base, args.queries, 0.5)
    t = time.perf_counter()
    index.search_exact(strangers[:20], 1)
    print(f"exact search for reference: {(time.perf_counter() - t) / 20 * 1e3:.0f} ms a query")
    print(
        "recall@1 against exact search, genuine queries by cosine to their true match "
        f"({len(timed)} of them timed one at a time, k=10), and strangers:"
    )
    for depth in (int(v) for v in args.rerank.split(",")):
        index.rerank = depth
        lat = latencies_ms(index, timed, 10)
        recalls = ", ".join(f"{c:.1f}: {recall_at_1(index, q):.3f}" for c, q in bands.items())
        print(
            f"rerank {depth:5d}: genuine {recalls} (500 each); strangers "
            f"{recall_at_1(index, strangers):.3f} (200); latency p50 "
            f"{np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms "
            f"(load avg {load_average()})"
        )
    snapshot.unlink()


if __name__ == "__main__":
    main()
