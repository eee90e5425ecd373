"""Real photos for tests: CelebA one-face photos by identity, read from ../shared/data.

Nothing here reads the data at import: `identity_photos` answers a lazy list, and every read
first skips the running test with RESEARCH_PHOTOS_MISSING when the research photo set is absent.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from functools import cache

from PIL import Image

from tests.conftest import SHARED_DATA, require_research_photos

CELEBA = SHARED_DATA / "celeba-dev"


@cache
def celeba_identities() -> dict[str, list[str]]:
    """Identity -> image names, identities in sorted order (deterministic test choices)."""
    require_research_photos("celeba-dev", "identities.tsv")
    by_identity: dict[str, list[str]] = defaultdict(list)
    with open(CELEBA / "identities.tsv", newline="") as table:
        for row in csv.DictReader(table, delimiter="\t"):
            by_identity[row["identity"]].append(row["image"])
    return {identity: sorted(images) for identity, images in sorted(by_identity.items())}


class IdentityPhotos(Sequence[str]):
    """`count` photos of one identity, looked up on first use (so modules may hold one)."""

    def __init__(self, count: int, skip: int) -> None:
        self.count, self.skip = count, skip

    def _names(self) -> list[str]:
        matching = [images for images in celeba_identities().values() if len(images) >= self.count]
        return matching[self.skip][: self.count]

    def __getitem__(self, index: int) -> str:  # slices work too, as on the list
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())


def identity_photos(count: int, skip: int = 0) -> IdentityPhotos:
    """`count` photos of one identity: the `skip`-th (from 0) of those that have that many."""
    return IdentityPhotos(count, skip)


@cache
def celeba_bytes(image: str) -> bytes:
    require_research_photos("celeba-dev", "images")
    return (CELEBA / "images" / image).read_bytes()


@cache
def celeba_mosaic(columns: int, rows: int) -> bytes:
    """One JPEG of `columns` x `rows` CelebA photos (one face each): a crowd photo's work."""
    names = [images[0] for images in celeba_identities().values()][: columns * rows]
    tiles = [Image.open(io.BytesIO(celeba_bytes(name))).convert("RGB") for name in names]
    width = max(tile.width for tile in tiles)
    height = max(tile.height for tile in tiles)
    mosaic = Image.new("RGB", (columns * width, rows * height), "white")
    for index, tile in enumerate(tiles):
        mosaic.paste(tile, ((index % columns) * width, (index // columns) * height))
    out = io.BytesIO()
    mosaic.save(out, "JPEG", quality=85)
    return out.getvalue()
