"""Model installation and verification, on copies in a tmp dir (the real models dir stays)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.vision.install import CONVERTERS, ModelsNotInstalled, check_models, install_models
from app.vision.manifest import REQUIRED_ROLES, load_manifest
from app.vision.pipeline import FaceAnalyzer


def _copy_models(manifest_path: Path, source: Path, target: Path, *, skip: str = "") -> None:
    for spec in load_manifest(manifest_path).all_files():
        if spec.file != skip:
            shutil.copyfile(source / spec.file, target / spec.file)


def test_manifest_describes_every_role(manifest_path: Path) -> None:
    manifest = load_manifest(manifest_path)
    assert set(REQUIRED_ROLES) <= set(manifest.models)
    for spec in manifest.all_files():
        assert len(spec.sha256) == 64 and spec.licence
        if spec.convert is None:
            assert spec.path.endswith(spec.file)
        else:
            assert spec.convert in CONVERTERS and len(spec.source_sha256 or "") == 64
    assert {a.file for a in manifest.test_assets.values()} == {
        "players.jpg",
        "gdp.jpg",
        "yaoming.jpg",
    }
    assert all(a.role == "test-image" for a in manifest.test_assets.values())
    knots = manifest.calibration.knots
    assert [k.cosine for k in knots] == sorted(k.cosine for k in knots)
    assert [k.far for k in knots] == sorted((k.far for k in knots), reverse=True)


def test_installed_models_verify(manifest_path: Path, models_dir: Path) -> None:
    assert check_models(manifest_path, models_dir, include_test_assets=True) == []


def test_reinstall_keeps_verified_files(
    manifest_path: Path, models_dir: Path, tmp_path: Path
) -> None:
    _copy_models(manifest_path, models_dir, tmp_path)
    lines: list[str] = []
    install_models(manifest_path, tmp_path, log=lines.append)
    assert lines and all(line.startswith("ok") for line in lines)


def test_tampered_model_is_reported(manifest_path: Path, models_dir: Path, tmp_path: Path) -> None:
    _copy_models(manifest_path, models_dir, tmp_path)
    with (tmp_path / "gender-v1.onnx").open("ab") as handle:
        handle.write(b"\0")
    problems = check_models(manifest_path, tmp_path)
    assert len(problems) == 1 and "gender-v1.onnx" in problems[0] and "sha256" in problems[0]
    with pytest.raises(ModelsNotInstalled, match="facesrv models install"):
        FaceAnalyzer.load(manifest_path, tmp_path)


def test_missing_model_names_the_fix(manifest_path: Path, models_dir: Path, tmp_path: Path) -> None:
    _copy_models(manifest_path, models_dir, tmp_path, skip="w600k_mbf.onnx")
    with pytest.raises(ModelsNotInstalled, match="facesrv models install") as error:
        FaceAnalyzer.load(manifest_path, tmp_path)
    assert "w600k_mbf.onnx is missing" in str(error.value)


@pytest.mark.slow
def test_conversion_reproduces_the_pinned_graph(
    manifest_path: Path, models_dir: Path, tmp_path: Path
) -> None:
    """The expression model ships as Keras HDF5: a fresh install downloads, verifies, converts
    and gets exactly the pinned ONNX bytes (install_models raises otherwise)."""
    converted = load_manifest(manifest_path).models["emotion"]
    _copy_models(manifest_path, models_dir, tmp_path, skip=converted.file)
    lines: list[str] = []
    install_models(manifest_path, tmp_path, log=lines.append)
    assert f"verified {converted.file}" in lines
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []
    assert check_models(manifest_path, tmp_path) == []
