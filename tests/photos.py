"""Real photos for tests: CelebA one-face photos by identity, read from ../shared/data."""

from __future__ import annotations

import csv
from collections import defaultdict
from functools import cache

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


@cache
def celeba_bytes(image: str) -> bytes:
    return (CELEBA / "images" / image).read_bytes()
