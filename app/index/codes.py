"""Sign codes of face embeddings and their parallel Hamming scan: the coarse stage of search.

A code keeps one bit per dimension (64 bytes for 512-d), 32 times less than the vector, so
scanning every code of a million faces reads 64 MB instead of 2 GB. `VectorIndex` re-ranks
what the scan finds with the exact vectors; this module never sees a float score.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache

import faiss
import numpy as np

# Codes per shard: a multiple of 8 so that each shard's slice of the live bitmap starts on a
# byte. 512k codes (32 MB) take ~4.5 ms to scan on one core here; 1M faces are two shards,
# scanned by two threads at once.
SHARD_SIZE = 1 << 19
_ENCODE_CHUNK = 65_536


class SignCoder:
    """One bit per dimension: the signs of the vector after a fixed random rotation.

    Without the rotation the bits would be the signs of the raw coordinates, which carry
    unequal information in real embeddings (some coordinates are mostly positive); a random
    rotation makes every bit a random hyperplane, so the Hamming distance of two codes is
    dim x angle / pi in expectation whatever the embedding model (SimHash). The seed is fixed
    so that codes are reproducible, but they are never stored: snapshots hold the vectors.
    """

    def __init__(self, dim: int, seed: int = 20261121) -> None:
        gaussian = np.random.default_rng(seed).standard_normal((dim, dim))
        q, r = np.linalg.qr(gaussian)
        self.rotation = np.ascontiguousarray(q * np.sign(np.diag(r)), dtype=np.float32)
        self.code_size = dim // 8

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """(n, dim) float32 -> (n, dim / 8) uint8, in chunks to bound the temporary memory."""
        codes = np.empty((len(vectors), self.code_size), np.uint8)
        for start in range(0, len(vectors), _ENCODE_CHUNK):
            chunk = vectors[start : start + _ENCODE_CHUNK]
            rotated = chunk @ self.rotation if len(chunk) > 64 else dot(chunk, self.rotation)
            codes[start : start + len(rotated)] = np.packbits(rotated > 0, axis=1)
        return codes


@lru_cache(maxsize=4)
def sign_coder(dim: int) -> SignCoder:
    """The process's coder for `dim`: its rotation (a 512 x 512 QR, ~90 ms) is made once."""
    return SignCoder(dim)


class CodeShards:
    """Codes by slot (insertion order) in fixed-size faiss IndexBinaryFlat shards.

    Not thread-safe by itself: `VectorIndex` calls `add` under its write lock and `search`
    under its read lock.
    """

    def __init__(self, code_size: int, shard_size: int = SHARD_SIZE) -> None:
        if shard_size % 8:
            raise ValueError("shard_size must be a multiple of 8")
        self.code_size = code_size
        self.shard_size = shard_size
        self._shards: list[faiss.IndexBinaryFlat] = []

    @property
    def ntotal(self) -> int:
        return sum(shard.ntotal for shard in self._shards)

    def add(self, codes: np.ndarray) -> None:
        """Append codes as the next slots."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        while len(codes):
            if not self._shards or self._shards[-1].ntotal == self.shard_size:
                self._shards.append(faiss.IndexBinaryFlat(self.code_size * 8))
            room = self.shard_size - self._shards[-1].ntotal
            self._shards[-1].add(codes[:room])
            codes = codes[room:]

    def search(
        self, codes: np.ndarray, depth: int, live: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `depth` nearest slots per query code in Hamming distance, nearest first.

        `live` is the little-endian bitmap of live slots (None: all live). Returns (distances,
        slots), padded with slot -1. Shards are scanned in parallel, one core each.
        """
        codes = np.ascontiguousarray(codes, dtype=np.uint8)

        def scan(number: int) -> tuple[np.ndarray, np.ndarray]:
            shard, offset = self._shards[number], number * self.shard_size
            params = None
            if live is not None:
                # The selector points into this slice, which lives until `scan` returns.
                bits = live[offset // 8 : (offset + shard.ntotal + 7) // 8]
                params = faiss.SearchParameters()
                params.sel = faiss.IDSelectorBitmap(shard.ntotal, faiss.swig_ptr(bits))
            distances, local = shard.search(codes, depth, params=params)
            return distances, np.where(local >= 0, local + offset, -1)

        if not self._shards:
            empty = np.full((len(codes), depth), -1, np.int64)
            return np.full(empty.shape, np.iinfo(np.int32).max, np.int32), empty
        # This thread scans the first shard while the pool scans the others.
        others = [_scan_pool().submit(scan, number) for number in range(1, len(self._shards))]
        with one_omp_thread():
            parts = [scan(0)]
        parts += [future.result() for future in others]
        distances = np.concatenate([d for d, _ in parts], axis=1)
        slots = np.concatenate([s for _, s in parts], axis=1)
        distances[slots < 0] = np.iinfo(np.int32).max
        nearest = np.argsort(distances, axis=1, kind="stable")[:, :depth]
        return np.take_along_axis(distances, nearest, 1), np.take_along_axis(slots, nearest, 1)


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b without BLAS, for the few rows of a search.

    numpy's OpenBLAS wakes a pool of threads that keep spinning after the call; on a small
    machine they steal the cores faiss is scanning with, and a 2 ms search took 18-25 ms.
    einsum's own loops stay on the calling thread.
    """
    return np.einsum("ij,jk->ik", a, b)


@contextmanager
def one_omp_thread() -> Iterator[None]:
    """Run the faiss calls of this thread on one OpenMP thread, then restore the setting.

    faiss parallelises over queries: for a single query the other OpenMP threads only spin at
    the end-of-loop barrier, burning a core another request could use. The setting is per
    calling thread, so other threads' batch work keeps every core.
    """
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@lru_cache(maxsize=1)
def _scan_pool() -> ThreadPoolExecutor:
    """Threads for shard scans, one per core, each running faiss on one OpenMP thread."""
    return ThreadPoolExecutor(
        max_workers=os.cpu_count() or 1,
        thread_name_prefix="code-scan",
        initializer=faiss.omp_set_num_threads,
        initargs=(1,),
    )
