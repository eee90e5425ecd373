"""What a vector backend is to the services: the types `app.index.registry` hands out, which
both registries implement (kept apart from the picker, which imports the registries)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sqlalchemy.orm import Session

from app.index.changelog import CollectionKey


class Searchable(Protocol):
    """A collection ready to answer: what `app.services.matching` searches."""

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class IndexStats:
    collections: int
    vectors: int
    memory_bytes: int
    change_log_lag: int  # changes committed but not yet applied (the most over accounts)


class Registry(Protocol):
    """A vector backend as matching, training, upkeep, import and `facesrv index rebuild` use it."""

    model: str | None

    def get(self, db: Session, account_id: int, key: CollectionKey) -> Searchable:
        """The collection, current with every change committed before this call."""
        ...

    def save(self, db: Session, account_id: int, key: CollectionKey) -> None:
        """Make the collection's next search, in any worker or after a restart, start warm."""
        ...

    def rebuild(self, account_id: int, key: CollectionKey) -> int:
        """Rebuild the collection from the store, whatever its state; returns its faces."""
        ...

    def discard(self, account_id: int, key: CollectionKey) -> bool:
        """Forget whatever was kept of the collection outside the store (an import gave its id
        to rows of another store); it is built afresh at its next search. True if any was."""
        ...

    def sweep(self, db: Session) -> int:
        """Let go of the copies of collections deleted from the store that the log's replays
        will not reach; returns how many. Run by the upkeep, in every worker."""
        ...

    def stats(self, db: Session) -> IndexStats: ...
