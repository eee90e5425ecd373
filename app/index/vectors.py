"""In-memory top-k cosine search over face embeddings, one `VectorIndex` per collection.

The store is the source of truth; this index is derived from it and can always be rebuilt, so
it knows nothing but int64 face ids and 512-d float32 L2-normalised vectors.

Small collections use exact search (faiss IndexFlatIP, the true inner product, so a face
matched against itself scores 1.0). Past `exact_max` live faces the index rebuilds itself as
HNSW, because flat search costs ~0.2 ms per 1,000 faces a query (200 ms at 1M). HNSW keeps its
vectors uncompressed (IndexHNSWFlat): scores stay exact inner products and recall stays high,
at ~2.3 KB a face. Removal works through tombstones (see `slots.py`); the switch to HNSW and
the compaction of tombstones rebuild the faiss index without blocking searches.

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
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from app.index.rwlock import RWLock
from app.index.slots import SlotTable

EXACT = "exact"
HNSW = "hnsw"

_MAGIC = b"FSVIDX01"
_TRAILER = struct.Struct("<Q8s")


class VectorIndex:
    """Upsert/remove by id and top-k inner-product search, safe across threads.

    Any number of threads may search at once while others apply changes: searches share a
    read lock (faiss releases the GIL), changes take the write lock. A change that triggers a
    rebuild returns once the rebuild is done (seconds at 50k faces, minutes at 1M).
    """

    def __init__(
        self,
        dim: int = 512,
        *,
        exact_max: int = 50_000,
        hnsw_m: int = 32,
        ef_construction: int = 64,
        ef_search: int = 384,
        max_tombstone_fraction: float = 0.25,
    ) -> None:
        self.dim = dim
        self.exact_max = exact_max
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        # Read at each HNSW search, so it can be tuned on a live index (higher: better recall,
        # slower). Ignored by exact search.
        self.ef_search = ef_search
        self.max_tombstone_fraction = max_tombstone_fraction
        self._lock = RWLock()
        self._rebuilding = threading.Lock()
        self._gpus = faiss.get_num_gpus()
        self._kind = EXACT
        self._index = self._new_faiss(EXACT)
        self._slots = SlotTable()
        self._device_index: faiss.Index | None = None

    def __len__(self) -> int:
        """Live faces."""
        return len(self._slots)

    @property
    def kind(self) -> str:
        """Either EXACT ("exact") or HNSW ("hnsw")."""
        return self._kind

    @property
    def device(self) -> str:
        """Where searches run: "gpu" for exact search when faiss sees a GPU, else "cpu".

        faiss has no GPU HNSW, and a GPU flat index only pays off for exact search.
        """
        return "gpu" if self._kind == EXACT and self._gpus > 0 else "cpu"

    @property
    def tombstones(self) -> int:
        """Removed faces still occupying the faiss index until the next compaction."""
        return self._slots.dead

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace faces; in a batch with repeated ids the last one wins."""
        ids, vectors = _check_batch(ids, vectors, self.dim)
        with self._lock.write():
            self._slots.kill(ids)
            self._index.add(vectors)
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
            index = self._index if self._device_index is None else self._device_index
            scores, slots = index.search(queries, k, params=self._search_params(k))
            ids = self._slots.to_ids(slots)
        scores[ids < 0] = -np.inf
        return scores, ids

    def search_exact(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force top-k over the live faces, whatever `kind` is: the reference for recall.

        HNSW keeps its vectors in a flat index (`storage`) with the same slots, so this needs
        no second copy of the data.
        """
        queries = _check_queries(queries, self.dim, k)
        with self._lock.read():
            flat = self._index
            if self._kind == HNSW:
                flat = faiss.downcast_index(self._index.storage)
            params = faiss.SearchParameters()
            params.sel = self._slots.selector()
            scores, slots = flat.search(queries, k, params=params)
            ids = self._slots.to_ids(slots)
        scores[ids < 0] = -np.inf
        return scores, ids

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        """Snapshot to one file, atomically: a crash leaves the previous snapshot intact.

        `meta` (JSON-able; e.g. the last applied change sequence number) comes back from
        `load`. Layout: the faiss index as written by `faiss.write_index` (so `read_index`
        reads it straight from the file), then the slot labels (tombstones are -1), the JSON
        header, the header length and a magic tag.
        """
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            with self._lock.read():
                faiss.write_index(self._index, tmp)
                header = json.dumps(
                    {"kind": self._kind, "count": len(self._slots.labels), "meta": meta}
                    | self._params()
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
    def load(cls, path: Path) -> tuple[VectorIndex, dict[str, Any]]:
        """Read a `save` snapshot; returns the index and the caller's meta."""
        path = Path(path)
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(size - _TRAILER.size)
            header_len, magic = _TRAILER.unpack(f.read(_TRAILER.size))
            if magic != _MAGIC:
                raise ValueError(f"{path} is not a vector index snapshot")
            f.seek(size - _TRAILER.size - header_len)
            header = json.loads(f.read(header_len))
            count = header.pop("count")
            f.seek(size - _TRAILER.size - header_len - 8 * count)
            labels = np.fromfile(f, np.int64, count)
        kind, meta = header.pop("kind"), header.pop("meta")
        index = cls(**header)
        index._index = faiss.read_index(str(path))
        if index._index.ntotal != count or index._index.d != index.dim:
            raise ValueError(f"{path}: faiss index does not match its slot table")
        index._kind = kind
        index._slots = SlotTable(labels)
        index._refresh_device()
        return index, meta

    def _params(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "exact_max": self.exact_max,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "max_tombstone_fraction": self.max_tombstone_fraction,
        }

    def _search_params(self, k: int) -> faiss.SearchParameters | None:
        """efSearch for HNSW, the live-slot filter when there are tombstones, else None.

        None keeps the plain call that GPU indexes accept (they get no tombstones, see
        `_refresh_device`).
        """
        selector = self._slots.selector()
        if self._kind == HNSW:
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.ef_search, k)
        elif selector is not None:
            params = faiss.SearchParameters()
        else:
            return None
        params.sel = selector
        return params

    def _after_change(self) -> str | None:
        """The kind to rebuild as, if the change calls for a rebuild; refreshes the GPU copy.

        Rebuild when grown past `exact_max` (to HNSW) or when tombstones pile up (compaction,
        which picks the kind afresh, so a collection that shrank goes back to exact). On GPU,
        exact search compacts at the first tombstone, because the GPU copy takes no selector.
        """
        wanted = EXACT if len(self._slots) <= self.exact_max else HNSW
        fraction = 0.0 if self.device == "gpu" else self.max_tombstone_fraction
        self._refresh_device()
        if self._slots.dead > fraction * len(self._slots.labels):
            return wanted
        return HNSW if self._kind == EXACT and wanted == HNSW else None

    def _rebuild(self, kind: str) -> None:
        """Replace the faiss index by a fresh one of `kind` holding only the live vectors.

        Building HNSW takes minutes at 1M faces, so it runs outside the write lock: copy the
        live vectors under the read lock, build with no lock (searches and changes go on
        against the old index), then catch up under the write lock with what changed
        meanwhile: faces removed since the copy become tombstones, faces added are added.
        One rebuild at a time; a change arriving during one is caught up by it.
        """
        if not self._rebuilding.acquire(blocking=False):
            return
        try:
            with self._lock.read():
                live = self._slots.live_slots()
                ids = self._slots.labels[live]
                vectors = self._index.reconstruct_batch(live) if len(live) else None
                seen = len(self._slots.labels)
            index = self._new_faiss(kind)
            if vectors is not None:
                index.add(vectors)
            slots = SlotTable(ids)
            with self._lock.write():
                slots.kill(ids[self._slots.labels[live] < 0])
                fresh = seen + np.flatnonzero(self._slots.labels[seen:] >= 0)
                if len(fresh):
                    index.add(self._index.reconstruct_batch(fresh))
                    slots.append(self._slots.labels[fresh])
                self._index, self._kind, self._slots = index, kind, slots
                self._refresh_device()
        finally:
            self._rebuilding.release()

    def _new_faiss(self, kind: str) -> faiss.Index:
        if kind == EXACT:
            return faiss.IndexFlatIP(self.dim)
        index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        return index

    def _refresh_device(self) -> None:
        """Mirror the exact index to the GPU(s) when there are any; HNSW stays on CPU.

        Not while there are tombstones: the GPU copy cannot filter them, so until compaction
        searches fall back to the CPU index and its selector.
        """
        gpu = self.device == "gpu" and not self._slots.dead
        self._device_index = faiss.index_cpu_to_all_gpus(self._index) if gpu else None


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
