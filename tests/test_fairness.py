"""One account's flood of heavy calls never stalls another account (issue "no tenant able to
stall another"): a real server with 2 workers, the flood far past what the pools run at once.

What was measured before the fair pools: 45 concurrent detections of one account made another
account's `/info/api` take 16.7 s, and 45 slow url fetches 4.2 s, the fetches themselves
overrunning their 5 s deadline up to 10.1 s.
"""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import httpx
import pytest

from tests.conftest import Credentials, make_account
from tests.photos import celeba_bytes, celeba_identities, celeba_mosaic
from tests.servers import Server
from tests.utils.photo_server import PhotoServer

pytestmark = pytest.mark.slow

FLOOD = 45  # concurrent requests of the flooding account, as in the issue
P99_LIMIT_S = 0.2


def _flood_loop(
    base_url: str, request: dict, stop: threading.Event, answers: list[tuple[float, str]]
) -> None:
    with httpx.Client(base_url=base_url, timeout=120) as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                status = http.post(**request).json()["status"]
            except httpx.HTTPError as error:
                status = type(error).__name__
            answers.append((time.monotonic() - started, status))


def _flood_process(base_url: str, request: dict, stop: EventType, results: Queue) -> None:
    """`FLOOD` threads in a process of their own, so that their client-side work never slows
    the measuring client (the GIL of one test process would)."""
    answers: list[tuple[float, str]] = []
    local_stop = threading.Event()
    threads = [
        threading.Thread(target=_flood_loop, args=(base_url, request, local_stop, answers))
        for _ in range(FLOOD)
    ]
    for thread in threads:
        thread.start()
    stop.wait()
    local_stop.set()
    results.put(list(answers))  # what finished by now; requests still in flight are dropped


class Flood:
    """One account sending `request` (httpx.post keyword arguments) from `FLOOD` clients."""

    def __init__(self, base_url: str, request: dict) -> None:
        context = multiprocessing.get_context("spawn")
        self.started = time.monotonic()
        self._stop = context.Event()
        self._results: Queue = context.Queue()
        self._process = context.Process(
            target=_flood_process, args=(base_url, request, self._stop, self._results)
        )
        self._process.start()
        self.answers: list[tuple[float, str]] = []

    def finish(self) -> list[tuple[float, str]]:
        """Stop sending; the (latency, status) of every answer received so far."""
        self._stop.set()
        self.answers = self._results.get(timeout=60)
        self._process.kill()
        return self.answers

    @property
    def statuses(self) -> list[str]:
        return [status for _, status in self.answers]

    @property
    def latencies(self) -> list[float]:
        return [latency for latency, _ in self.answers]


def p99(samples: list[float]) -> float:
    return sorted(samples)[int(len(samples) * 0.99) - 1]


def probe_info_api(server: Server, creds: Credentials, count: int = 150) -> list[float]:
    """`count` sequential /info/api calls of the other account, each one timed."""
    latencies = []
    with server.client() as http:
        for _ in range(count):
            started = time.monotonic()
            response = http.get("/info/api", params=creds.query)
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
    return latencies


@pytest.fixture
def two_workers(configured: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(**env: str) -> Server:
        server = Server(configured, tmp_path / "server", workers=2, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()  # the flood's queued work is not worth waiting for


def test_a_detection_flood_does_not_stall_another_account(
    two_workers: Callable[..., Server],
) -> None:
    server = two_workers()
    flooder = make_account(rate_limit="100000q/10s")
    other = make_account()
    crowd = celeba_mosaic(6, 6)
    photo = celeba_bytes(next(iter(celeba_identities().values()))[0])

    params = {**flooder.query, "attributes": "1", "landmarks106": "1"}
    detect = {"url": "/face/detection", "params": params, "files": {"file": crowd}}
    flood = Flood(server.base_url, detect)
    try:
        time.sleep(5)  # every flood request is in: running, or queued for the pool
        info_api = probe_info_api(server, other)
        started = time.monotonic()
        with server.client() as http:
            own = http.post("/face/detection", params=other.query, files={"file": photo})
        own_detection_s = time.monotonic() - started
    finally:
        flood.finish()
    done = flood.statuses.count("OK")
    # Each worker analyses one photo at a time: the time one crowd photo takes.
    service_s = (time.monotonic() - flood.started) / max(1, done / 2)
    assert own.status_code == 200 and len(own.json()["faces"]) == 1, own.text
    print(
        f"flood: {done} crowd detections done, {service_s:.1f} s each per worker;"
        f" other account: /info/api p50 {statistics.median(info_api) * 1000:.0f} ms,"
        f" p99 {p99(info_api) * 1000:.0f} ms; its detection {own_detection_s:.1f} s"
    )
    assert p99(info_api) < P99_LIMIT_S
    # Round robin: the other account waits for the (at most two) flood jobs its worker has
    # running, not behind the ~20 each worker has queued, as first-come-first-served would.
    assert own_detection_s < 4 * service_s


def test_a_slow_url_flood_does_not_stall_another_account(
    two_workers: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_site = PhotoServer("127.0.0.2")  # answers /slow after 8 s, past the 5 s deadline
    try:
        server = two_workers(FACESRV_URL_ALLOWLIST="127.0.0.2/32")
        flooder = make_account(rate_limit="100000q/10s")
        other = make_account()

        params = {**flooder.query, "url": slow_site.url("/slow")}
        flood = Flood(server.base_url, {"url": "/face/detection", "params": params})
        try:
            time.sleep(5)
            info_api = probe_info_api(server, other)
            time.sleep(max(0.0, 12 - 5 - sum(info_api)))  # let the first waves finish
        finally:
            flood.finish()
    finally:
        slow_site.close()
    print(
        f"url flood: {len(flood.statuses)} answers, slowest {max(flood.latencies):.1f} s;"
        f" other account: /info/api p99 {p99(info_api) * 1000:.0f} ms"
    )
    assert p99(info_api) < P99_LIMIT_S
    assert set(flood.statuses) == {"DOWNLOAD_TIMEOUT"}
    assert max(flood.latencies) < 6.0  # the 5 s deadline counts the wait for a fetch slot
