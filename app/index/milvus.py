"""Face vectors in Milvus (milvus-lite or a Milvus server): one collection per faceset or group.

Like `vectors.VectorIndex`, this module knows nothing but int64 face ids and 512-d float32
L2-normalised vectors; what they belong to and when they change is `app.index.milvus_registry`'s.

Layout, and why:
- one Milvus collection per faceset and per group, per store and per recognition model: two
  deployments may share one Milvus and must never open each other's collections, and workers of
  two models during a rolling `facesrv reembed` must not overwrite each other's vectors. A search
  then scans only its own collection, a deleted faceset is one drop, and the layout is the one
  the FAISS backend keeps in each worker, so the change-log replay is the same code. One shared
  collection filtered by a collection field would make every search filter through all
  tenants' faces, and every membership change of a face in several facesets a read-modify-write;
- each collection is reached through an alias (`<base>`), the concrete collection being
  `<base>_g<generation>`. A rebuild fills a new generation and only then moves the alias, so a
  search never sees a half-built collection, whatever worker or `facesrv index rebuild` runs it;
- the sync state lives in Milvus itself, as the concrete collection's property `facesrv.seq`
  (the change-log sequence number it is current with), so a wiped or replaced Milvus knows it
  holds nothing and is rebuilt from the store. A collection without the property is a build
  that did not finish.

- a fresh generation is filled with inserts (an upsert is a delete plus an insert: twice the
  work, and deletes Milvus must apply at every search until compaction); a large one is indexed
  over sealed segments before it is loaded and published, so its first search does not scan
  growing segments while the index builds.

Consistency: a search must see every change the caller synced, but Milvus's Strong consistency
waits for the next time tick on every search (200 ms p50 on a 2.3 server). Searches instead
name the timestamp they need: `tick` returns a Milvus timestamp taken after the caller's last
sync (an upsert into the deployment's one-row clock collection), and a search guaranteed at it
sees everything written before, waiting only when that is still in flight.

Scores: FLAT (the default) is exact inner-product search, the same candidates as FAISS's flat
index; HNSW, IVF_FLAT and the other types are approximate. The k candidates come back with their
vectors and are scored here by the FAISS backend's own kernel, so every score is exact and
bit-identical to FAISS's, and only recall (did the true best face make the list?) depends on the
index: `bench/search.py --backend milvus` measures it against exact search.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import faiss
import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from app import metrics
from app.index.codes import one_omp_thread

T = TypeVar("T")
SEQ_PROPERTY = "facesrv.seq"
# Milvus refuses a search limit above this (its `topk` bound).
MAX_TOPK = 16_384
# Rows per insert call: ~10 MB of vectors, well under gRPC's 64 MB message limit.
INSERT_BATCH = 5_000
# Generations at least this large are indexed over sealed segments before they are loaded.
SEAL_MIN_SIZE = 10_000
# Seconds a call may take before it fails (a Milvus that went away must not hang a request).
CALL_TIMEOUT = 10.0
# milvus-lite starts its in-process server for a folder outside its own lock, so two threads
# opening the same folder at once race and one fails on the folder's file lock
# (milvus_lite.server_manager); clients are made one at a time.
_CONNECTING = threading.Lock()
# Milvus's "collection not found" status: a wiped Milvus, or a collection never built.
COLLECTION_NOT_FOUND = 100
# "collection not loaded": what a restarted Milvus (milvus-lite always) says of its collections
# until they are loaded into memory again.
COLLECTION_NOT_LOADED = 101
# Search-time parameters of Milvus's index types; every other parameter is a build parameter.
_SEARCH_PARAMS = {"ef", "nprobe", "search_k", "itopk_size", "search_width", "search_list"}


@dataclass(frozen=True)
class IndexSpec:
    """A Milvus index type and its parameters, from `FACESRV_MILVUS_INDEX`."""

    kind: str = "FLAT"
    build: dict[str, int | float | str] = field(default_factory=dict)
    search: dict[str, int | float | str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> IndexSpec:
        """`TYPE` or `TYPE:name=value,...`, e.g. `HNSW:M=32,efConstruction=200,ef=256`."""
        kind, _, options = text.strip().partition(":")
        build: dict[str, int | float | str] = {}
        search: dict[str, int | float | str] = {}
        for item in filter(None, (part.strip() for part in options.split(","))):
            name, equals, value = item.partition("=")
            if not equals:
                raise ValueError(f"FACESRV_MILVUS_INDEX: {item!r} is not name=value")
            target = search if name.strip() in _SEARCH_PARAMS else build
            target[name.strip()] = _number(value.strip())
        return cls(kind.strip().upper() or "FLAT", build, search)


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _guaranteed(ts: int) -> dict:
    """A read's consistency: everything written before Milvus timestamp `ts`, no later."""
    return {"consistency_level": "Customized", "guarantee_timestamp": ts}


def is_local(uri: str) -> bool:
    """Whether `uri` names a milvus-lite data folder (pymilvus's rule: a path ending in .db)."""
    return uri.endswith(".db") and "://" not in uri


def serve_lite(path: str) -> str:
    """Open a milvus-lite folder in this process, serve it over gRPC on loopback in background
    threads (stopped at exit), and return the URI other processes reach it by."""
    from milvus_lite.server_manager import server_manager_instance

    uri = server_manager_instance.start_and_get_uri(path)
    if uri is None:  # milvus-lite logged why; usually another process holds the folder's lock
        raise RuntimeError(
            f"cannot open the milvus-lite folder {path} (held by another process?): stop it, "
            "or point FACESRV_MILVUS_URI at a Milvus server"
        )
    return uri


@contextmanager
def _timed(operation: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    except MilvusException:
        metrics.MILVUS_ERRORS.labels(operation).inc()
        raise
    finally:
        metrics.MILVUS_SECONDS.labels(operation).observe(time.perf_counter() - started)


def deployment_prefix(store: str) -> str:
    """What the names of one store's collections start with (`store`: its 32 hex digits)."""
    return f"facesrv_{store[:16]}_"


def model_prefix(store: str, model: str | None) -> str:
    """What the names of one store's collections for one recognition model start with."""
    tag = hashlib.sha1((model or "any").encode()).hexdigest()[:10]
    return f"{deployment_prefix(store)}{tag}_a"


def account_prefix(store: str, model: str | None, account_id: int) -> str:
    """What the names of an account's collections for one recognition model start with."""
    return f"{model_prefix(store, model)}{account_id}_"


def parse_generation(prefix: str, name: str) -> tuple[str, int] | None:
    """(kind, row id) of a concrete collection `<prefix><kind>_<id>_g<generation>`, else None."""
    if not name.startswith(prefix):
        return None
    kind, _, rest = name.removeprefix(prefix).partition("_")
    collection_id, marker, _ = rest.partition("_g")
    return (kind, int(collection_id)) if marker and collection_id.isdigit() else None


def parse_account_generation(
    store: str, model: str | None, name: str
) -> tuple[int, str, int] | None:
    """(account id, kind, row id) of a concrete collection of this store and model, else None."""
    account, _, _ = name.removeprefix(model_prefix(store, model)).partition("_")
    if not name.startswith(model_prefix(store, model)) or not account.isdigit():
        return None
    parsed = parse_generation(account_prefix(store, model, int(account)), name)
    return (int(account), *parsed) if parsed else None


class MilvusCollections:
    """Create, fill, change and search the alias-fronted collections of one Milvus."""

    def __init__(self, uri: str, dim: int, spec: IndexSpec, clock: str) -> None:
        self.uri = uri
        self.dim = dim
        self.spec = spec
        self.clock = clock  # the one-row collection `tick` writes to
        self._clock_made = False
        self.client = self._connect()

    def _connect(self) -> MilvusClient:
        # pymilvus starts milvus-lite in this process for a local .db path (one process per
        # folder: `facesrv serve` shares it with its workers over gRPC, see app.cli).
        with _CONNECTING:
            return MilvusClient(uri=self.uri, timeout=CALL_TIMEOUT)

    def reconnect(self) -> None:
        """A fresh client (channel), after a connection dropped under a call."""
        self.client = self._connect()

    def state(self, base: str) -> tuple[str, int] | None:
        """The concrete collection behind `base` and the change-log seq it is current with;
        None when there is none or its build did not finish."""
        with _timed("describe"):
            if not self.client.has_collection(base):
                return None
            described = self.client.describe_collection(base)
        seq = described.get("properties", {}).get(SEQ_PROPERTY)
        return (described["collection_name"], int(seq)) if seq is not None else None

    def _schema(self, dim: int):  # noqa: ANN202 - pymilvus's CollectionSchema
        schema = self.client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        return schema

    def _index_params(self):  # noqa: ANN202 - pymilvus's IndexParams
        index = self.client.prepare_index_params()
        index.add_index(
            "vector", index_type=self.spec.kind, metric_type="IP", params=dict(self.spec.build)
        )
        return index

    def build(self, base: str, ids: np.ndarray, vectors: np.ndarray) -> str:
        """A new generation of `base` holding these vectors, indexed and loaded, not yet behind
        the alias. A small one is created loaded and filled; a large one is filled unloaded,
        sealed, indexed, then loaded, so it is searched through its index from the start."""
        name = f"{base}_g{time.time_ns()}"
        small = len(ids) < SEAL_MIN_SIZE
        with _timed("create"):
            self.client.create_collection(
                name,
                schema=self._schema(self.dim),
                index_params=self._index_params() if small else None,
            )
        self.insert(name, ids, vectors)
        if not small:
            with _timed("flush"):
                self.client.flush(name)
            with _timed("index"):
                self.client.create_index(name, self._index_params())
                self._wait_indexed(name, len(ids))
            self.load(name)
        return name

    def _wait_indexed(self, name: str, rows: int) -> None:
        """Until all `rows` are indexed. (`pending_index_rows` is no guide: a 2.3 server still
        counted 405,000 pending rows of compacted-away segments with all 1M rows indexed.)"""
        while True:
            (index_name,) = self.client.list_indexes(name)
            described = self.client.describe_index(name, index_name)
            if described.get("state") == "Failed":
                raise MilvusException(message=f"index build of {name} failed: {described}")
            if int(described.get("indexed_rows", 0)) >= rows:
                return
            time.sleep(0.5)

    def tick(self) -> int:
        """A Milvus timestamp later than every write made so far (see the module's notes)."""

        def write() -> int:
            with _timed("tick"):
                result = self.client._get_connection().upsert_rows(  # noqa: SLF001 - the
                    # public upsert drops the mutation's timestamp, which is all we want here
                    self.clock,
                    [{"id": 0, "vector": [1.0, 0.0]}],
                    timeout=CALL_TIMEOUT,
                )
            return int(result.timestamp)

        if not self._clock_made:  # asked first: pymilvus logs every failed call as an ERROR
            self._make_clock()
        try:
            return write()
        except MilvusException as error:
            if error.code != COLLECTION_NOT_FOUND:
                raise
        self._make_clock()  # a Milvus wiped under this process
        return write()

    def _make_clock(self) -> None:
        with _timed("create"):
            if not self.client.has_collection(self.clock):
                self.client.create_collection(self.clock, schema=self._schema(2))
        self._clock_made = True

    def publish(self, base: str, name: str, seq: int) -> None:
        """Mark `name` complete at `seq`, move the alias to it, drop the generations it replaced."""
        self.mark(name, seq)
        with _timed("alias"):
            if self.client.has_collection(base):
                self.client.alter_alias(name, base)
            else:
                self.client.create_alias(name, base)
        self.drop_generations(base, keep=name)

    def names(self) -> list[str]:
        """Every collection in this Milvus database (concrete names, not aliases)."""
        with _timed("list"):
            return self.client.list_collections()

    def drop_generations(self, base: str, keep: str | None = None) -> None:
        """Drop every generation of `base` but `keep` (left-overs of interrupted builds too)."""
        names = self.names()
        with _timed("drop"):
            for other in names:
                if other.startswith(f"{base}_g") and other != keep:
                    if keep is None:
                        for alias in self.client.list_aliases(other).get("aliases", []):
                            self.client.drop_alias(alias)
                    self.client.drop_collection(other)

    def mark(self, name: str, seq: int) -> None:
        with _timed("mark"):
            self.client.alter_collection_properties(name, {SEQ_PROPERTY: str(seq)})

    def insert(self, name: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows whose ids the collection does not hold (a fresh generation)."""
        self._write("insert", self.client.insert, name, ids, vectors)

    def upsert(self, name: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._write("upsert", self.client.upsert, name, ids, vectors)

    def _write(
        self, operation: str, call: Callable, name: str, ids: np.ndarray, vectors: np.ndarray
    ) -> None:
        for start in range(0, len(ids), INSERT_BATCH):
            rows = [
                {"id": int(i), "vector": v}
                for i, v in zip(
                    ids[start : start + INSERT_BATCH],
                    vectors[start : start + INSERT_BATCH],
                    strict=True,
                )
            ]
            with _timed(operation):
                call(name, rows)

    def delete(self, name: str, ids: np.ndarray) -> None:
        if len(ids):
            with _timed("delete"):
                self.client.delete(name, ids=[int(i) for i in ids])

    def load(self, name: str) -> None:
        """Load a collection into Milvus's memory (a restarted Milvus holds them released)."""
        with _timed("load"):
            self.client.load_collection(name)

    def _loaded(self, name: str, call: Callable[[], T]) -> T:
        """`call()`, loading `name` first if Milvus says it is not loaded."""
        try:
            return call()
        except MilvusException as error:
            if error.code != COLLECTION_NOT_LOADED:
                raise
        self.load(name)
        return call()

    def count(self, name: str, ts: int) -> int:
        """Rows of the collection as of Milvus timestamp `ts` (from `tick`)."""

        def query() -> list[dict]:
            with _timed("count"):
                return self.client.query(name, output_fields=["count(*)"], **_guaranteed(ts))

        (row,) = self._loaded(name, query)
        return int(row["count(*)"])

    def flush(self, name: str) -> None:
        """Persist the collection's segments (a restart then reads them instead of a log)."""
        with _timed("flush"):
            self.client.flush(name)

    def search(
        self, base: str, queries: np.ndarray, k: int, ts: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row, best first; id -1 and score -inf pad short rows.

        Milvus finds the k candidates with their vectors, as of Milvus timestamp `ts` (from
        `tick`); they are then scored by a faiss flat index, the very kernel the FAISS backend
        scores with, so both backends give bit-identical confidences.
        Raises MilvusException (code COLLECTION_NOT_FOUND) when `base` does not exist.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        depth = min(k, MAX_TOPK)

        def search() -> list[list[dict]]:
            with _timed("search"):
                return self.client.search(
                    base,
                    data=list(queries),
                    limit=depth,
                    output_fields=["vector"],
                    search_params={"metric_type": "IP", "params": dict(self.spec.search)},
                    **_guaranteed(ts),
                )

        results = self._loaded(base, search)
        for row, hits in enumerate(results):
            if not hits:
                continue
            found = np.fromiter((hit["id"] for hit in hits), np.int64, len(hits))
            candidates = faiss.IndexFlatIP(self.dim)
            candidates.add(np.asarray([hit["entity"]["vector"] for hit in hits], np.float32))
            with one_omp_thread():
                exact, order = candidates.search(queries[row : row + 1], min(k, len(hits)))
            scores[row, : order.shape[1]] = exact[0]
            ids[row, : order.shape[1]] = found[order[0]]
        return scores, ids
