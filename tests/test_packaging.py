"""The CPU and the CUDA build resolve to their own wheels, never both (setup.py, FACESRV_BUILD).

Each build is resolved for real by pip (`pip install --dry-run --report`, dependencies included,
from PyPI) on a copy of the project, so the working tree's egg-info is left alone, and under the
image pins of docker/constraints.txt, which must therefore pin every wheel either build installs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from app.config import REPO_ROOT

pytestmark = pytest.mark.slow

CONSTRAINTS = REPO_ROOT / "docker" / "constraints.txt"
CPU_WHEELS = {"onnxruntime", "faiss-cpu"}
GPU_WHEELS = {"onnxruntime-gpu", "faiss-gpu-cu12"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_command(project: Path, report: Path, *extra: str, extras: str = "") -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--dry-run",
        "--ignore-installed",
        "--report",
        str(report),
        "-c",
        str(CONSTRAINTS),
        *extra,
        "-e",
        f"{project}{extras}",
    ]


def pip_env(build: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FACESRV_BUILD"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if build is not None:
        env["FACESRV_BUILD"] = build
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What setuptools reads to build facesrv's metadata, copied out of the working tree."""
    root = tmp_path_factory.mktemp("facesrv-project")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO_ROOT / name, root / name)
    shutil.copytree(REPO_ROOT / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__"))
    return root


# What each resolution installs: the two builds, and each with the Milvus extra it may take
# (milvus-lite requires faiss-cpu, so the CUDA build takes only the client).
RESOLUTIONS = {
    "cpu": (None, ""),
    "gpu": ("gpu", ""),
    "cpu+milvus-lite": (None, "[milvus-lite]"),
    "gpu+milvus": ("gpu", "[milvus]"),
}


@pytest.fixture(scope="module")
def reports(project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """pip's installation report per resolution (RESOLUTIONS), all in parallel."""
    out = tmp_path_factory.mktemp("reports")
    runs = {}
    for label, (build, extras) in RESOLUTIONS.items():
        report = out / f"{label}.json"
        process = subprocess.Popen(
            pip_command(project, report, extras=extras),
            env=pip_env(build),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        runs[label] = (process, report)
    results = {}
    for label, (process, report) in runs.items():
        stdout, stderr = process.communicate(timeout=300)
        output = f"{stdout}\n{stderr[-4000:]}"
        assert process.returncode == 0, f"{label} build did not resolve:\n{output}"
        results[label] = json.loads(report.read_text())
    return results


def installed(report: dict) -> dict[str, str]:
    return {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}


def runtime_requirements(report: dict) -> set[str]:
    """facesrv's own Requires-Dist without the extras' entries, as the report shows them."""
    (entry,) = [i for i in report["install"] if canonical(i["metadata"]["name"]) == "facesrv"]
    requirements = [Requirement(line) for line in entry["metadata"].get("requires_dist", [])]
    return {str(r) for r in requirements if r.marker is None or "extra" not in str(r.marker)}


@pytest.mark.parametrize(
    ("build", "wanted", "unwanted"),
    [("cpu", CPU_WHEELS, GPU_WHEELS), ("gpu", GPU_WHEELS, CPU_WHEELS)],
)
def test_each_build_installs_its_own_wheels_only(
    reports: dict[str, dict], build: str, wanted: set[str], unwanted: set[str]
) -> None:
    wheels = installed(reports[build])
    assert wanted <= set(wheels), f"{build} build lacks {wanted - set(wheels)}"
    assert not unwanted & set(wheels), f"{build} build also installs {unwanted & set(wheels)}"
    required = {canonical(Requirement(r).name) for r in runtime_requirements(reports[build])}
    assert wanted <= required and not unwanted & required


def test_the_builds_differ_only_in_runtime_and_index(reports: dict[str, dict]) -> None:
    cpu, gpu = (runtime_requirements(reports[b]) for b in ("cpu", "gpu"))
    assert {canonical(Requirement(r).name) for r in cpu - gpu} == CPU_WHEELS
    assert {canonical(Requirement(r).name) for r in gpu - cpu} == GPU_WHEELS
    assert len(cpu & gpu) == len(cpu) - len(CPU_WHEELS)


def test_the_image_constraints_pin_every_wheel_of_both_builds(reports: dict[str, dict]) -> None:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonical(name)] = version.strip()
    for build, report in reports.items():
        wheels = installed(report)
        wheels.pop("facesrv")
        unpinned = sorted(set(wheels) - set(pins))
        assert not unpinned, f"{build} build installs wheels the constraints lack: {unpinned}"
        assert all(pins[name] == version for name, version in wheels.items())


def test_the_milvus_extras_keep_each_build_on_its_own_faiss(reports: dict[str, dict]) -> None:
    lite, client = installed(reports["cpu+milvus-lite"]), installed(reports["gpu+milvus"])
    assert {"pymilvus", "milvus-lite", "faiss-cpu"} <= set(lite) and not GPU_WHEELS & set(lite)
    assert {"pymilvus"} | GPU_WHEELS <= set(client)
    assert not ({"milvus-lite"} | CPU_WHEELS) & set(client), "the CUDA build got faiss-cpu"


def test_an_unknown_build_is_refused(project: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        pip_command(project, tmp_path / "r.json", "--no-deps"),
        env=pip_env("tpu"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "FACESRV_BUILD='tpu'" in result.stdout + result.stderr
