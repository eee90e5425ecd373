"""The vector backend as the services see it: one protocol, two registries, one picker.

Design (several workers, one truth), shared by both backends:
- The store is the only source of truth. A registry keeps a derived copy of each collection (a
  faceset's faces, a group's persons' faces) by row ids: in each worker (`FaissRegistry`,
  `FACESRV_VECTOR_BACKEND=faiss`, the default) or once in Milvus for every worker and host
  (`MilvusRegistry`, `FACESRV_VECTOR_BACKEND=milvus`).
- Every membership change writes a change-log row in the same transaction
  (`app.index.changelog`). Before each search a registry brings the collection up to the
  account's last seq by replaying the log, so a face added through any worker (or host) is
  searchable in all of them as soon as the add call returned, and a removed face never comes
  back. A copy the log can no longer bring up to date (pruned rows) is rebuilt from the store.
- Model changes: a registry indexes, per face, the embedding of its own recognition model; a
  face without one is left out (`app.services.embeddings`).

Services import this module, `app.index.protocol` and `app.index.changelog` only: never an
engine, faiss or pymilvus.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from app.config import Settings, get_settings
from app.db.session import session_scope
from app.index.changelog import CollectionKey
from app.index.protocol import Registry
from app.index.store import collections_of
from app.vision.manifest import load_manifest

BACKENDS = ("faiss", "milvus")


def _recognition_model(settings: Settings) -> str:
    return load_manifest(settings.model_manifest).models["recognition"].identity


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process's vector backend, per `FACESRV_VECTOR_BACKEND`."""
    settings = get_settings()
    if settings.vector_backend not in BACKENDS:
        raise ValueError(
            f"FACESRV_VECTOR_BACKEND={settings.vector_backend!r}: expected one of "
            + ", ".join(BACKENDS)
        )
    model = _recognition_model(settings)
    if settings.vector_backend == "milvus":
        # Imported here: the FAISS path never loads pymilvus (nor needs it installed).
        from app.index.milvus_registry import MilvusRegistry

        return MilvusRegistry.from_settings(settings, model)
    from app.index.faiss_registry import FaissRegistry

    return FaissRegistry(
        settings.data_dir / "index", settings.exact_index_max, settings.index_rerank, model
    )


def share_engine(settings: Settings) -> str | None:
    """Before `facesrv serve` forks its workers: open, in this process, an engine that only one
    process may open (a milvus-lite folder) and serve it on loopback; returns the URI the
    workers reach it by (None: nothing to share). RuntimeError when it cannot be opened."""
    if settings.vector_backend != "milvus":
        return None
    from app.index.milvus import is_local, serve_lite

    return serve_lite(settings.milvus_uri) if is_local(settings.milvus_uri) else None


@dataclass(frozen=True)
class Rebuilt:
    account_id: int
    key: CollectionKey
    public_id: str
    faces: int
    seconds: float


def rebuild_collections(account_ids: list[int]) -> Iterator[Rebuilt]:
    """Rebuild every faceset and group of the accounts from the store, one after the other,
    while the server goes on serving: what `facesrv index rebuild` runs."""
    with session_scope() as db:
        targets = [
            (account_id, key, public_id)
            for account_id in account_ids
            for key, public_id in collections_of(db, account_id)
        ]
    registry = get_registry()
    for account_id, key, public_id in targets:
        started = time.perf_counter()
        faces = registry.rebuild(account_id, key)
        yield Rebuilt(account_id, key, public_id, faces, time.perf_counter() - started)
