"""Real photos for tests: CelebA one-face photos by identity, read from ../shared/data."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from functools import cache

from PIL import Image

from tests.conftest import SHARED_DATA

CELEBA = SHARED_DATA / "celeba-dev"


@cache
def celeba_identities() -> dict[str, list[str]]:
    """Identity -> image names, identities in sorted order (deterministic test choices)."""
    by_identity: dict[str, list[str]] = defaultdict(list)
    with open(CELEBA / "identities.tsv", newline="") as table:
        for row in csv.DictReader(table, delimiter="\t"):
            by_identity[row["identity"]].append(row["image"])
    return {identity: sorted(images) for identity, images in sorted(by_identity.items())}


def identity_photos(count: int, skip: int = 0) -> list[str]:
    """`count` photos of one identity: the `skip`-th (from 0) of those that have that many."""
    matching = [images for images in celeba_identities().values() if len(images) >= count]
    return matching[skip][:count]


@cache
def celeba_bytes(image: str) -> bytes:
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
