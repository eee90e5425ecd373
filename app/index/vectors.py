"""In-memory top-k cosine search over face embeddings, one `VectorIndex` per collection.

The store is the source of truth; this index is derived from it and can always be rebuilt, so
it knows nothing but int64 face ids and 512-d float32 L2-normalised vectors.

Every vector is kept in a faiss IndexFlatIP, so scores are always true inner products and a
face matched against itself scores 1.0. Small collections are searched exactly on it. Past
`exact_max` live faces exact search gets too slow (~0.2 ms per 1,000 faces a query: 200 ms at
1M), so the index adds a 64-byte sign code per face (`codes.SignCoder`) and a search becomes:

1. scan the codes for the `rerank` nearest in Hamming distance (faiss IndexBinaryFlat: 64 MB at
   1M faces, ~9 ms on one core), then
2. re-rank those candidates by their exact inner product with the query and keep the top k.

The Hamming distance between two codes estimates the angle between the vectors (each bit
differs with probability angle / pi), so a face's true best match sits far up the code
ranking unless the best matches are all nearly as poor as a random face, and step 2 returns
exact scores for whatever it finds. Unlike a graph index (HNSW, which reached only 0.58-0.87
recall@1 at 1M faces here, and took 24 minutes to build), the codes cost nothing to build
(~1 s per 1M faces, also on every restart), every face is scanned, and removal is a bitmap.

Removal works through tombstones (see `slots.py`); the switch between kinds and the
compaction of tombstones rebuild the index without blocking searches.

Single queries run on one core (faiss parallelises over queries, not within one), so the
OpenMP thread count (faiss default: all cores) matters only to batch adds, rebuilds and batch
searches, which use every core; the module leaves it alone.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from app.index.codes import SHARD_SIZE, CodeShards, dot, one_omp_thread, sign_coder
from app.index.rwlock import RWLock
from app.index.slots import SlotTable

EXACT = "exact"
HAMMING = "hamming"

_MAGIC = b"FSVIDX02"
_TRAILER = struct.Struct("<Q8s")


class VectorIndex:
    """Upsert/remove by id and top-k inner-product search, safe across threads.

    Any number of threads may search at once while others apply changes: searches share a
    read lock (faiss releases the GIL), changes take the write lock. A change that triggers a
    rebuild returns once the rebuild is done (about a second per 1M faces).
    """

    def __init__(
        self,
        dim: int = 512,
        *,
        exact_max: int = 50_000,
        rerank: int = 256,
        max_tombstone_fraction: float = 0.25,
        code_shard_size: int = SHARD_SIZE,
    ) -> None:
        self.dim = dim
        self.exact_max = exact_max
        # Candidates re-ranked exactly per query of a HAMMING index (at least k). Read at each
        # search, so it can be tuned on a live index: higher finds more of the true top-k of
        # weak queries, at ~1 us a candidate.
        self.rerank = rerank
        self.max_tombstone_fraction = max_tombstone_fraction
        self.code_shard_size = code_shard_size
        self._lock = RWLock()
        self._rebuilding = threading.Lock()
        self._gpus = faiss.get_num_gpus()
        self._coder = sign_coder(dim)
        self._flat = faiss.IndexFlatIP(dim)
        self._codes: CodeShards | None = None  # present iff kind is HAMMING
        self._slots = SlotTable()
        self._device_index: faiss.Index | None = None

    def __len__(self) -> int:
        """Live faces."""
        return len(self._slots)

    @property
    def kind(self) -> str:
        """Either EXACT ("exact") or HAMMING ("hamming": code scan plus exact re-rank)."""
        return EXACT if self._codes is None else HAMMING

    @property
    def device(self) -> str:
        """Where searches run: "gpu" for exact search when faiss sees a GPU, else "cpu"."""
        return "gpu" if self.kind == EXACT and self._gpus > 0 else "cpu"

    @property
    def tombstones(self) -> int:
        """Removed faces still occupying the faiss indexes until the next compaction."""
        return self._slots.dead

    @property
    def memory_bytes(self) -> int:
        """What the vectors and codes occupy (slots included, tombstones too): the bulk of the
        index's memory, not Python's bookkeeping around it."""
        flat = self._flat.ntotal * self.dim * 4
        codes = self._codes.ntotal * self._codes.code_size if self._codes is not None else 0
        return flat + codes + self._flat.ntotal * 8  # + the slot's id

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace faces; in a batch with repeated ids the last one wins."""
        ids, vectors = _check_batch(ids, vectors, self.dim)
        with self._lock.write():
            self._slots.kill(ids)
            self._flat.add(vectors)
            if self._codes is not None:
                self._codes.add(self._coder.encode(vectors))
            self._slots.append(ids)
            rebuild = self._after_change()
        if rebuild:
            self._rebuild(rebuild)

    def remove(self, ids: np.ndarray) -> None:
        """Remove faces; ids not in the index are ignored."""
        ids = _check_ids(ids)
        with self._lock.write():
            self._slots.kill(ids)
            rebuild = self._after_change()
        if rebuild:
            self._rebuild(rebuild)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row, best first; id -1 and score -inf pad short rows."""
        queries = _check_queries(queries, self.dim, k)
        with self._lock.read():
            if self._codes is None:
                index = self._flat if self._device_index is None else self._device_index
                with _few_queries_on_one_thread(queries):
                    scores, slots = index.search(queries, k, params=self._filter())
            else:
                scores, slots = self._search_codes(queries, k)
            ids = self._slots.to_ids(slots)
        scores[ids < 0] = -np.inf
        return scores, ids

    def search_exact(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force top-k over the live faces, whatever `kind` is: the reference for recall."""
        queries = _check_queries(queries, self.dim, k)
        with self._lock.read(), _few_queries_on_one_thread(queries):
            scores, slots = self._flat.search(queries, k, params=self._filter())
            ids = self._slots.to_ids(slots)
        scores[ids < 0] = -np.inf
        return scores, ids

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        """Snapshot to one file, atomically: a crash leaves the previous snapshot intact.

        `meta` (JSON-able; e.g. the last applied change sequence number) comes back from
        `load`. Layout: the flat index as written by `faiss.write_index` (so `read_index`
        reads it straight from the file), then the slot labels (tombstones are -1), the JSON
        header, the header length and a magic tag. Codes are not saved: `load` recomputes them
        faster than it could read them.
        """
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            with self._lock.read():
                faiss.write_index(self._flat, tmp)
                header = json.dumps(
                    {"count": len(self._slots.labels), "meta": meta} | self._params()
                ).encode()
                with open(tmp, "ab") as f:
                    f.write(self._slots.labels.tobytes())
                    f.write(header)
                    f.write(_TRAILER.pack(len(header), _MAGIC))
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, **overrides: Any) -> tuple[VectorIndex, dict[str, Any]]:
        """Read a `save` snapshot; returns the index and the caller's meta.

        `overrides` replace the saved constructor parameters (an operator may have changed
        `exact_max` since the snapshot was written). Raises ValueError for anything that is
        not a complete snapshot of this format.
        """
        path = Path(path)
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size < _TRAILER.size:
                raise ValueError(f"{path} is not a vector index snapshot")
            f.seek(size - _TRAILER.size)
            header_len, magic = _TRAILER.unpack(f.read(_TRAILER.size))
            if magic != _MAGIC:
                raise ValueError(f"{path} is not a vector index snapshot")
            f.seek(size - _TRAILER.size - header_len)
            header = json.loads(f.read(header_len))
            count = header.pop("count")
            f.seek(size - _TRAILER.size - header_len - 8 * count)
            labels = np.fromfile(f, np.int64, count)
        meta = header.pop("meta")
        index = cls(**(header | overrides))
        flat = faiss.read_index(str(path))
        if not isinstance(flat, faiss.IndexFlatIP) or flat.ntotal != count or flat.d != index.dim:
            raise ValueError(f"{path}: faiss index does not match its slot table")
        index._flat = flat
        index._slots = SlotTable(labels)
        if len(index._slots) > index.exact_max:
            index._codes = index._encode_all(flat)
        index._refresh_device()
        return index, meta

    def _params(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "exact_max": self.exact_max,
            "rerank": self.rerank,
            "max_tombstone_fraction": self.max_tombstone_fraction,
            "code_shard_size": self.code_shard_size,
        }

    def _filter(self) -> faiss.SearchParameters | None:
        """The live-slot filter when there are tombstones, else None (faster).

        None keeps the plain call that GPU indexes accept (they get no tombstones, see
        `_refresh_device`).
        """
        selector = self._slots.selector()
        if selector is None:
            return None
        params = faiss.SearchParameters()
        params.sel = selector
        return params

    def _search_codes(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Hamming top-`rerank` per query, re-ranked by exact inner product (read lock held)."""
        depth = max(self.rerank, k)
        codes = self._coder.encode(queries)
        _, candidates = self._codes.search(codes, depth, self._slots.live_bits)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        slots = np.full((len(queries), k), -1, np.int64)
        for row, query in enumerate(queries):
            found = candidates[row][candidates[row] >= 0]
            exact = dot(self._flat.reconstruct_batch(found), query[:, None])[:, 0]
            best = np.argsort(-exact, kind="stable")[:k]
            scores[row, : len(best)] = exact[best]
            slots[row, : len(best)] = found[best]
        return scores, slots

    def _encode_all(self, flat: faiss.IndexFlatIP) -> CodeShards:
        """Codes for every slot of `flat`, read in place from its storage (no 2 KB/face copy)."""
        vectors = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * self.dim)
        codes = CodeShards(self._coder.code_size, self.code_shard_size)
        if flat.ntotal:
            codes.add(self._coder.encode(vectors.reshape(flat.ntotal, self.dim)))
        return codes

    def _after_change(self) -> str | None:
        """The kind to rebuild as, if the change calls for a rebuild; refreshes the GPU copy.

        Rebuild when grown past `exact_max` (to HAMMING) or when tombstones pile up
        (compaction, which picks the kind afresh, so a collection that shrank goes back to
        exact). On GPU, exact search compacts at the first tombstone, because the GPU copy
        takes no selector.
        """
        wanted = EXACT if len(self._slots) <= self.exact_max else HAMMING
        fraction = 0.0 if self.device == "gpu" else self.max_tombstone_fraction
        self._refresh_device()
        if self._slots.dead > fraction * len(self._slots.labels):
            return wanted
        return HAMMING if self.kind == EXACT and wanted == HAMMING else None

    def _rebuild(self, kind: str) -> None:
        """Replace the indexes by fresh ones of `kind` holding only the live faces.

        Copying 1M vectors and coding them takes a few seconds, so it runs outside the write
        lock: copy the live vectors under the read lock, build with no lock (searches and
        changes go on against the old index), then catch up under the write lock with what
        changed meanwhile: faces removed since the copy become tombstones, faces added are
        added. One rebuild at a time; a change arriving during one is caught up by it.
        """
        if not self._rebuilding.acquire(blocking=False):
            return
        try:
            with self._lock.read():
                live = self._slots.live_slots()
                ids = self._slots.labels[live]
                vectors = self._flat.reconstruct_batch(live) if len(live) else None
                seen = len(self._slots.labels)
            flat = faiss.IndexFlatIP(self.dim)
            if vectors is not None:
                flat.add(vectors)
            del vectors
            codes = self._encode_all(flat) if kind == HAMMING else None
            slots = SlotTable(ids)
            with self._lock.write():
                slots.kill(ids[self._slots.labels[live] < 0])
                fresh = seen + np.flatnonzero(self._slots.labels[seen:] >= 0)
                if len(fresh):
                    added = self._flat.reconstruct_batch(fresh)
                    flat.add(added)
                    if codes is not None:
                        codes.add(self._coder.encode(added))
                    slots.append(self._slots.labels[fresh])
                self._flat, self._codes, self._slots = flat, codes, slots
                self._refresh_device()
        finally:
            self._rebuilding.release()

    def _refresh_device(self) -> None:
        """Mirror the exact index to the GPU(s) when there are any; HAMMING stays on CPU.

        Not while there are tombstones: the GPU copy cannot filter them, so until compaction
        searches fall back to the CPU index and its selector.
        """
        gpu = self.device == "gpu" and not self._slots.dead
        self._device_index = faiss.index_cpu_to_all_gpus(self._flat) if gpu else None


@contextmanager
def _few_queries_on_one_thread(queries: np.ndarray) -> Iterator[None]:
    """A search of a few queries runs on the calling thread alone (see `one_omp_thread`)."""
    if len(queries) > 8:
        yield
        return
    with one_omp_thread():
        yield


def recall_at_1(index: VectorIndex, queries: np.ndarray) -> float:
    """Share of queries whose top hit matches brute-force search over the same live faces.

    A different id with the same score (a tie) counts as a hit.
    """
    approx_scores, approx_ids = index.search(queries, 1)
    exact_scores, exact_ids = index.search_exact(queries, 1)
    hits = (approx_ids[:, 0] == exact_ids[:, 0]) | (
        approx_scores[:, 0] >= exact_scores[:, 0] - 1e-6
    )
    return float(hits.mean())


def _check_ids(ids: np.ndarray) -> np.ndarray:
    ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    if (ids < 0).any():
        raise ValueError("face ids must be >= 0 (-1 means 'no result')")
    return ids


def _check_batch(ids: np.ndarray, vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids = _check_ids(ids)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (len(ids), dim):
        raise ValueError(f"expected vectors of shape ({len(ids)}, {dim}), got {vectors.shape}")
    unique, last_in_reversed = np.unique(ids[::-1], return_index=True)
    if len(unique) < len(ids):
        keep = np.sort(len(ids) - 1 - last_in_reversed)
        ids, vectors = ids[keep], vectors[keep]
    return ids, vectors


def _check_queries(queries: np.ndarray, dim: int, k: int) -> np.ndarray:
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ValueError(f"expected queries of shape (n, {dim}), got {queries.shape}")
    if k < 1:
        raise ValueError("k must be >= 1")
    return queries
