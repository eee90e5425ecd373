"""The table from faiss positions ("slots") to face ids, with tombstones.

faiss flat indexes delete only by compacting all that follows (O(n) a call), and an id-keyed
wrapper (IndexIDMap2) would return a stale vector of a face that was removed and then added again
under the same id. So the index never hands faiss
our ids: faiss sees only slots 0..n-1 in insertion order, this table maps them to face ids, and
a removed (or replaced) face just marks its slot dead. Searches skip dead slots through a faiss
bitmap selector, so a removed id can never come back; compaction (a rebuild from the live
slots) reclaims them.
"""

from __future__ import annotations

import faiss
import numpy as np


class SlotTable:
    """Slot -> face id (-1 when dead), face id -> live slot, and the live bitmap for faiss."""

    def __init__(self, labels: np.ndarray | None = None) -> None:
        self.labels = np.empty(0, np.int64) if labels is None else labels.astype(np.int64)
        live = np.flatnonzero(self.labels >= 0)
        self._slot_of = dict(zip(self.labels[live].tolist(), live.tolist(), strict=True))
        self._bits = self._live_bits()

    def __len__(self) -> int:
        return len(self._slot_of)

    @property
    def dead(self) -> int:
        """Tombstones: slots still in the faiss index whose face is gone."""
        return len(self.labels) - len(self._slot_of)

    def append(self, ids: np.ndarray) -> None:
        """Record `ids` (unique, none live) as the next slots, matching a faiss `add`."""
        start = len(self.labels)
        self.labels = np.concatenate([self.labels, ids])
        self._slot_of.update(zip(ids.tolist(), range(start, start + len(ids)), strict=True))
        self._bits = self._live_bits()

    def kill(self, ids: np.ndarray) -> None:
        """Turn the live slots of `ids` into tombstones; unknown ids are ignored."""
        slots = [self._slot_of.pop(i) for i in ids.tolist() if i in self._slot_of]
        if slots:
            self.labels[slots] = -1
            self._bits = self._live_bits()

    def live_slots(self) -> np.ndarray:
        return np.flatnonzero(self.labels >= 0)

    def selector(self) -> faiss.IDSelector | None:
        """A faiss filter admitting only live slots, or None when nothing is dead (faster).

        The bitmap is rebuilt eagerly by the writer (under the write lock), never lazily by a
        reader, so no concurrent search can see its buffer freed.
        """
        if self._bits is None:
            return None
        return faiss.IDSelectorBitmap(len(self.labels), faiss.swig_ptr(self._bits))

    @property
    def live_bits(self) -> np.ndarray | None:
        """The little-endian bitmap of live slots, or None when nothing is dead."""
        return self._bits

    def to_ids(self, slots: np.ndarray) -> np.ndarray:
        """Map faiss results to face ids, keeping -1 for 'no result'."""
        if not len(self.labels):
            return np.full(slots.shape, -1, np.int64)
        return np.where(slots >= 0, self.labels[np.maximum(slots, 0)], -1)

    def _live_bits(self) -> np.ndarray | None:
        if not self.dead:
            return None
        return np.packbits(self.labels >= 0, bitorder="little")
