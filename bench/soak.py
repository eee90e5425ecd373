"""Soak: mixed load from N clients for M minutes against a real server, sampling RSS and errors.

Each client is its own account (a tenant) and loops over what an enrolment-and-recognition
deployment does all day, through real HTTP on a real `uvicorn --workers W` server:
detection (a one-face CelebA photo, attributes on every third), person create / add to a group /
delete past 10 persons, faceset add / remove past 30 faces, training, verification, search,
identification, the /info reads, and the mistakes real clients make (a corrupt image, an unknown
id, now and then a wrong secret). State stays bounded, so memory that keeps growing is a leak,
not data.

Every `--sample-s` seconds it prints one line of the curve: resident memory of the server's
process group (master and workers), requests per second, client-side p50/p99 latency, 5xx and
transport errors in that interval. At the end, the verdict the hardening issue asks for: no 5xx,
no transport error, and RSS at the end within 5% of RSS after the first minute (warm-up: models,
allocator arenas, index). Exit status 1 when the verdict fails.

    .venv/bin/python bench/soak.py --clients 8 --minutes 30
    .venv/bin/python bench/soak.py --minutes 2 --database-url postgresql+psycopg://127.0.0.1/test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from host import cpu_model, load_average

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.photos import celeba_bytes, celeba_identities  # noqa: E402
from tests.servers import Server, process_group_rss  # noqa: E402

MAX_PERSONS = 10  # per client: older persons are deleted, so the store stays the same size
MAX_FACESET_FACES = 30
PHOTOS = 120
WARM_UP_S = 60
MAX_GROWTH = 0.05
WRONG_SECRET_EVERY = 200  # iterations; the failed-auth throttle allows 30 a minute per address


@dataclass
class Tally:
    """What the clients saw since the last sample; swapped out under the lock at each sample."""

    latencies: list[float] = field(default_factory=list)
    codes: Counter[int] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tally = Tally()
        self.total = Tally()

    def record(self, path: str, seconds: float, code: int | None, problem: str = "") -> None:
        with self.lock:
            for tally in (self.tally, self.total):
                tally.latencies.append(seconds)
                if code is None:
                    tally.transport_errors[problem] += 1
                else:
                    tally.codes[code] += 1
                    if code >= 500:
                        tally.server_errors.append(f"{path} {code} {problem[:200]}")

    def take(self) -> Tally:
        with self.lock:
            tally, self.tally = self.tally, Tally()
            return tally


class Client:
    """One tenant's loop. Every call goes through `call`, which records it."""

    def __init__(
        self,
        base_url: str,
        creds: dict[str, str],
        photos: list[bytes],
        recorder: Recorder,
        seed: int,
    ) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=120)
        self.creds = creds
        self.photos = photos
        self.recorder = recorder
        self.random = random.Random(seed)
        self.persons: list[str] = []
        self.faceset_faces: list[str] = []
        self.group = ""
        self.faceset = ""

    def call(self, path: str, files: dict | None = None, creds: dict | None = None, **params):
        started = time.perf_counter()
        query = {**(creds or self.creds), **{k: v for k, v in params.items() if v is not None}}
        try:
            response = self.http.post(path, params=query, files=files)
        except httpx.HTTPError as error:
            self.recorder.record(path, time.perf_counter() - started, None, type(error).__name__)
            return {}
        self.recorder.record(
            path, time.perf_counter() - started, response.status_code, response.text
        )
        try:
            return response.json()
        except ValueError:
            return {}

    def setup(self) -> None:
        self.group = self.call("/group/create", name="soak").get("group_id", "")
        self.faceset = self.call("/faceset/create", name="soak").get("faceset_id", "")

    def iteration(self, number: int) -> None:
        photo = self.random.choice(self.photos)
        attributes = 1 if number % 3 == 0 else None
        detected = self.call("/face/detection", files={"file": photo}, attributes=attributes)
        faces = detected.get("faces") or []
        if not faces:
            return
        face = faces[0]["face_id"]
        self.enrol(face, number)
        self.recognise(face, number)
        self.read(number)
        self.mistakes(number)

    def enrol(self, face: str, number: int) -> None:
        if number % 2 == 0:
            person = self.call("/person/create", name=f"p{number}", face_id=face).get("person_id")
            if person:
                self.persons.append(person)
                self.call("/group/add_person", group_id=self.group, person_id=person)
            if len(self.persons) > MAX_PERSONS:
                self.call("/person/delete", person_id=self.persons.pop(0))
        else:
            self.call("/faceset/add_face", faceset_id=self.faceset, face_id=face)
            self.faceset_faces.append(face)
            if len(self.faceset_faces) > MAX_FACESET_FACES:
                oldest = self.faceset_faces.pop(0)
                self.call("/faceset/remove_face", faceset_id=self.faceset, face_id=oldest)

    def recognise(self, face: str, number: int) -> None:
        if number % 10 == 0:
            self.call("/face/training", group_id=self.group)
        if self.persons:
            person = self.random.choice(self.persons)
            self.call("/face/verification", face_id=face, person_id=person)
        self.call("/face/search", face_id=face, faceset_id=self.faceset, top=3)
        self.call("/face/identification", face_id=face, group_id=self.group)

    def read(self, number: int) -> None:
        self.call("/info/api")
        if self.persons:
            self.call("/info/person", person_id=self.random.choice(self.persons))
        if number % 5 == 0:
            self.call("/info/list_persons")
            self.call("/info/faceset", faceset_id=self.faceset)

    def mistakes(self, number: int) -> None:
        if number % 4 == 0:
            self.call("/face/detection", files={"file": self.random.choice(self.photos)[:400]})
            self.call("/info/person", person_id="0" * 32)
        if number % WRONG_SECRET_EVERY == 0:
            wrong = {"api_id": self.creds["api_id"], "api_secret": "not-the-secret"}
            self.call("/info/api", creds=wrong)

    def run(self, until: float) -> None:
        self.setup()
        number = 0
        while time.monotonic() < until:
            number += 1
            self.iteration(number)


def create_account(database_url: str, data_dir: Path, name: str) -> dict[str, str]:
    """Through the operator's own command, as a deployment would."""
    env = {**os.environ, "FACESRV_DATABASE_URL": database_url, "FACESRV_DATA_DIR": str(data_dir)}
    command = [str(Path(sys.executable).parent / "facesrv"), "account", "create", "--name", name]
    command += ["--rate-limit", "100000q/10s"]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def load_photos() -> list[bytes]:
    names = [name for photos in celeba_identities().values() for name in photos]
    return [celeba_bytes(name) for name in random.Random(7).sample(names, PHOTOS)]


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def mib(value: float) -> str:
    return f"{value / 2**20:7.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample-s", type=float, default=30)
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="facesrv-soak-"))
    database_url = args.database_url or f"sqlite:///{work / 'soak.db'}"
    # `facesrv account create` migrates the fresh store, as `facesrv serve` does before its workers.
    accounts = [
        create_account(database_url, work / "data", f"soak{n}") for n in range(args.clients)
    ]
    server = Server(database_url, work / "data", workers=args.workers)
    print(
        f"machine: {platform.node()}, {cpu_model()}, {os.cpu_count()} cores, load {load_average()}"
    )
    print(
        f"soak: {args.clients} clients x {args.minutes:g} min, {args.workers} workers, "
        f"{database_url.split(':')[0]}, server log {server.log_path}"
    )
    photos = load_photos()
    recorder = Recorder()
    clients = [
        Client(server.base_url, creds, photos, recorder, seed=number)
        for number, creds in enumerate(accounts)
    ]

    started = time.monotonic()
    until = started + args.minutes * 60
    threads = [
        threading.Thread(target=client.run, args=(until,), daemon=True) for client in clients
    ]
    for thread in threads:
        thread.start()
    print(
        f"{'t/s':>6} {'RSS MiB':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'5xx':>4} {'conn':>4}"
    )
    samples: list[tuple[float, int]] = []
    last = 0.0
    try:
        while any(thread.is_alive() for thread in threads):
            time.sleep(min(args.sample_s, max(0.1, until - time.monotonic() + 0.5)))
            elapsed = time.monotonic() - started
            rss = process_group_rss(server.process.pid)
            samples.append((elapsed, rss))
            tally = recorder.take()
            rate = len(tally.latencies) / max(elapsed - last, 1e-3)
            last = elapsed
            print(
                f"{elapsed:6.0f} {mib(rss):>8} {rate:7.1f} "
                f"{percentile(tally.latencies, 0.5) * 1000:7.0f} "
                f"{percentile(tally.latencies, 0.99) * 1000:7.0f} "
                f"{sum(n for code, n in tally.codes.items() if code >= 500):4d} "
                f"{sum(tally.transport_errors.values()):4d}",
                flush=True,
            )
        for thread in threads:
            thread.join()
        alive = server.process.poll() is None
    finally:
        server.stop()

    total = recorder.total
    server_errors = sum(n for code, n in total.codes.items() if code >= 500)
    transport = sum(total.transport_errors.values())
    after_warm_up = [rss for elapsed, rss in samples if elapsed >= WARM_UP_S]
    baseline, final = (after_warm_up[0], after_warm_up[-1]) if after_warm_up else (0, 0)
    growth = (final - baseline) / baseline if baseline else float("nan")
    peak = max(after_warm_up, default=0)
    duration = time.monotonic() - started
    count = len(total.latencies)
    print(
        f"requests: {count} in {duration:.0f} s ({count / duration:.1f}/s), "
        f"p50 {statistics.median(total.latencies) * 1000:.0f} ms, "
        f"p99 {percentile(total.latencies, 0.99) * 1000:.0f} ms"
    )
    print(
        f"HTTP codes: {dict(sorted(total.codes.items()))}; "
        f"transport errors: {dict(total.transport_errors)}"
    )
    print(
        f"RSS: {mib(baseline).strip()} MiB after {WARM_UP_S} s, "
        f"{mib(final).strip()} MiB at the end ({growth:+.1%}), peak {mib(peak).strip()} MiB"
    )
    for line in total.server_errors[:10]:
        print(f"5xx: {line}")
    passed = alive and server_errors == 0 and transport == 0 and growth < MAX_GROWTH
    print(f"verdict: {'PASS' if passed else 'FAIL'} (0 5xx, 0 transport errors, RSS growth < 5%)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
