"""Throughput and latency of `/face/detection` over real HTTP, against insightface in-process.

The server is facesrv's own app under uvicorn in a subprocess (fresh SQLite data dir, one account
with a rate limit out of the way); clients are threads with one keep-alive HTTP connection each,
posting CelebA dev photos (one face each) as multipart `file`. The reference runs the same ONNX
files in this process with the `insightface` package's own classes, per image: decode, SCRFD at
640x640, then 106 landmarks and the ArcFace embedding of every face, which is what the server
computes for a request without `attributes` (it also stores the result in its database).

    .venv/bin/python bench/detection.py                 # 200 photos, ~4 min on 2 cores
    .venv/bin/python bench/detection.py --images 50     # quick look

It ends with the cost of the optional analysis: the same one-face photos posted plain, with
`attributes=1` and with `attributes=1&emotions=1`, the three requests of each photo back to back
(their order rotating from photo to photo) from one client, so that all three see the same photo
and the same moment of machine noise; it prints each variant's p50 and the median of the
per-photo ratios.

The reference needs `insightface` (plus `opencv-python-headless`) in the venv; it is a benchmark
dependency only. Without it the reference row says why it is unavailable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
from host import cpu_model

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CELEBA = REPO.parent / "shared" / "data" / "celeba-dev" / "images"


@dataclass
class Run:
    label: str
    images: int
    wall_s: float
    latencies_ms: list[float]
    faces: int

    @property
    def per_second(self) -> float:
        return self.images / self.wall_s

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))

    def line(self) -> str:
        return (
            f"{self.label:<34} {self.per_second:8.2f} img/s   p50 {self.percentile(50):7.1f} ms"
            f"   p95 {self.percentile(95):7.1f} ms   faces/img {self.faces / self.images:.2f}"
        )


def machine() -> str:
    cpu = cpu_model()
    return (
        f"platform     {platform.platform()}\n"
        f"python       {platform.python_version()}\n"
        f"cpu          {cpu}\n"
        f"cores        {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))})\n"
        f"onnxruntime  {onnxruntime.__version__} {onnxruntime.get_available_providers()}\n"
        f"{load()}"
    )


def load() -> str:
    """Other work on the box skews every figure; print it so a noisy run is recognisable."""
    one, five, fifteen = os.getloadavg()
    return f"load avg     {one:.2f} {five:.2f} {fifteen:.2f}"


def photos(count: int) -> list[bytes]:
    names = sorted(p for p in CELEBA.iterdir() if p.suffix == ".jpg")[:count]
    if len(names) < count:
        raise SystemExit(f"only {len(names)} photos under {CELEBA}")
    return [p.read_bytes() for p in names]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """facesrv under uvicorn in a subprocess, with its own data dir and one bench account."""

    def __init__(self, data_dir: Path, models_dir: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "FACESRV_DATA_DIR": str(data_dir),
            "FACESRV_MODELS_DIR": str(models_dir),
            "FACESRV_LOG_LEVEL": "warning",
        }
        self.env.pop("FACESRV_DATABASE_URL", None)
        created = subprocess.run(
            [str(VENV_BIN / "facesrv"), "account", "create", "--name", "bench",
             "--rate-limit", "100000q/1s"],
            env=self.env, cwd=REPO, check=True, capture_output=True, text=True,
        )  # fmt: skip
        self.credentials = json.loads(created.stdout.strip().splitlines()[-1])
        self.log = (data_dir / "server.log").open("w")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "python"), "-m", "uvicorn", "app.main:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
             "--no-access-log"],
            env=self.env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"server exited with {self.process.returncode}, see {self.log.name}"
                )
            try:
                httpx.get(
                    f"{self.url}/info/api", params=self.credentials, timeout=1
                ).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit("server did not start within 60 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


REFERENCE_LABELS = {
    "reference": "reference insightface in-process",
    "reference_tuned": "reference, server's ORT options",
}


class RequestsFailed(Exception):
    pass


def run_clients(
    server: Server, images: list[bytes], clients: int, params: dict[str, str], label: str
) -> Run:
    """Each client thread takes the next photo from a shared queue until all are done."""
    latencies: list[float] = []
    faces = [0]
    next_index = [0]
    lock = threading.Lock()
    errors: list[str] = []
    query = {**server.credentials, **params}

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            while True:
                with lock:
                    index = next_index[0]
                    next_index[0] += 1
                if index >= len(images):
                    return
                started = time.perf_counter()
                response = http.post(
                    "/face/detection", params=query, files={"file": ("x.jpg", images[index])}
                )
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    if response.status_code != 200:
                        errors.append(response.text[:200])
                        continue
                    latencies.append(elapsed)
                    faces[0] += len(response.json()["faces"])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise RequestsFailed(f"{label}: {len(errors)} failed requests, first: {errors[0]}")
    return Run(label, len(images), wall, latencies, faces[0])


ANALYSIS_VARIANTS = {
    "plain": {},
    "attributes=1": {"attributes": "1"},
    "attributes=1&emotions=1": {"attributes": "1", "emotions": "1"},
}


def analysis_cost(server: Server, images: list[bytes], repeats: int) -> None:
    """Latency of each ANALYSIS_VARIANTS entry on one-face photos, interleaved per photo."""
    names = list(ANALYSIS_VARIANTS)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    one_face = 0
    with httpx.Client(base_url=server.url, timeout=60) as http:

        def post(data: bytes, params: dict[str, str]) -> tuple[float, int]:
            started = time.perf_counter()
            response = http.post(
                "/face/detection",
                params={**server.credentials, **params},
                files={"file": ("x.jpg", data)},
            )
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RequestsFailed(f"analysis cost: {response.text[:200]}")
            return elapsed, len(response.json()["faces"])

        for repeat in range(repeats):
            for index, data in enumerate(images):
                if repeat == 0 and post(data, {})[1] != 1:
                    continue  # the figure is for one-face photos; the first pass picks them
                one_face += repeat == 0
                shift = (index + repeat) % len(names)
                for name in names[shift:] + names[:shift]:
                    latencies[name].append(post(data, ANALYSIS_VARIANTS[name])[0])
    plain = np.asarray(latencies["plain"])
    print(f"\nanalysis cost, 1 client, {one_face} one-face photos x {repeats}  ({load()})")
    for name in names:
        values = np.asarray(latencies[name])
        print(
            f"  {name:<26} p50 {np.percentile(values, 50):7.1f} ms   "
            f"p95 {np.percentile(values, 95):7.1f} ms   "
            f"p50 vs plain {np.percentile(values, 50) / np.percentile(plain, 50) - 1:+7.1%}   "
            f"median per-photo ratio {np.median(values / plain) - 1:+7.1%}"
        )


def reference_pipeline(models_dir: Path, *, tuned: bool = False) -> Callable[[bytes], int]:
    """insightface's own classes on the same ONNX files: FaceAnalysis's per-image work.

    By default its sessions get ONNX Runtime's default options, as `FaceAnalysis` gives them;
    `tuned` passes the server's own options instead (all cores, no idle spinning), so that row
    compares the pipelines' code rather than the runtime settings.
    """
    import cv2
    from insightface.app.common import Face
    from insightface.model_zoo import get_model

    def load(name: str) -> Any:
        if not tuned:
            return get_model(str(models_dir / name), providers=["CPUExecutionProvider"])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        return get_model(
            str(models_dir / name), providers=["CPUExecutionProvider"], sess_options=options
        )

    det = load("scrfd_500m_bnkps.onnx")
    det.prepare(ctx_id=-1, input_size=(640, 640), det_thresh=0.5)
    landmark = load("2d106det.onnx")
    landmark.prepare(ctx_id=-1)
    rec = load("w600k_mbf.onnx")
    rec.prepare(ctx_id=-1)

    def analyse(data: bytes) -> int:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        boxes, kpss = det.detect(img, max_num=0)
        for i in range(boxes.shape[0]):
            face = Face(bbox=boxes[i, :4], kps=kpss[i], det_score=boxes[i, 4])
            landmark.get(img, face)
            rec.get(img, face)
        return int(boxes.shape[0])

    return analyse


def run_reference(analyse: Callable[[bytes], int], images: list[bytes], label: str) -> Run:
    latencies: list[float] = []
    faces = 0
    started = time.perf_counter()
    for data in images:
        t0 = time.perf_counter()
        faces += analyse(data)
        latencies.append((time.perf_counter() - t0) * 1000)
    return Run(label, len(images), time.perf_counter() - started, latencies, faces)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="CelebA dev photos per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests first")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat everything, interleaved; keep each best"
    )
    parser.add_argument(
        "--cost-repeats", type=int, default=2, help="passes over the photos for the analysis cost"
    )
    args = parser.parse_args()

    from app.config import get_settings

    models_dir = get_settings().models_dir
    print(machine())
    images = photos(args.images)
    print(f"photos       {len(images)} CelebA dev JPEGs from {CELEBA}, "
          f"mean {statistics.mean(map(len, images)) / 1024:.0f} KiB")  # fmt: skip

    references: dict[str, Callable[[bytes], int]] = {}
    try:
        for key, tuned in (("reference", False), ("reference_tuned", True)):
            references[key] = reference_pipeline(models_dir, tuned=tuned)
            for data in images[: args.warmup]:
                references[key](data)
    except Exception as error:  # noqa: BLE001 - any import or load failure means "unavailable"
        print(f"reference    unavailable ({type(error).__name__}: {error})")
        references.clear()

    best: dict[str, Run] = {}

    def keep(key: str, run: Run) -> None:
        print(f"  {run.line()}", flush=True)
        if key not in best or run.per_second > best[key].per_second:
            best[key] = run

    with tempfile.TemporaryDirectory(prefix="facesrv-bench-") as tmp:
        server = Server(Path(tmp), models_dir)
        try:
            run_clients(server, images[: args.warmup], 1, {}, "warmup")
            for number in range(1, args.rounds + 1):
                print(f"\nround {number}  ({load()})")
                for clients in (1, 4):
                    label = f"server, {clients} client(s)"
                    keep(f"server{clients}", run_clients(server, images, clients, {}, label))
                for key, analyse in references.items():
                    label = REFERENCE_LABELS[key]
                    keep(key, run_reference(analyse, images, label))
                for clients in (1, 4):
                    label = f"server attributes=1, {clients} client(s)"
                    try:
                        run = run_clients(server, images, clients, {"attributes": "1"}, label)
                    except RequestsFailed as error:
                        print(f"  unavailable: {error}", flush=True)
                        break
                    keep(f"attributes{clients}", run)
            analysis_cost(server, images, args.cost_repeats)
        finally:
            server.stop()

    print(f"\nbest of {args.rounds} round(s)  ({load()})")
    for run in best.values():
        print(f"  {run.line()}")
    if "reference" in best:
        reference = best["reference"].per_second
        print(f"ratio server@4 / reference images/s: {best['server4'].per_second / reference:.2f}")
        print(f"ratio server@1 / reference images/s: {best['server1'].per_second / reference:.2f}")
        tuned = best["reference_tuned"].per_second
        print(
            f"ratio server@4 / reference (tuned) images/s: {best['server4'].per_second / tuned:.2f}"
        )
    else:
        print("ratio server@4 / reference images/s: n/a (reference unavailable)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
