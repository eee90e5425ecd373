"""/metrics across worker processes: whichever worker answers the scrape, it counts every
worker's requests, and each worker's gauges are there, labelled with its pid."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_account
from tests.servers import Server
from tests.test_operability import metric_value

pytestmark = pytest.mark.slow
REQUESTS = 40


def test_two_workers_count_into_one_exposition(configured: str, tmp_path: Path) -> None:
    samples = tmp_path / "metrics"
    samples.mkdir()
    # What `facesrv serve` sets before the workers start (app/cli.py).
    server = Server(configured, tmp_path / "server", workers=2,
                    env={"PROMETHEUS_MULTIPROC_DIR": str(samples)})  # fmt: skip
    try:
        creds = make_account()
        for _ in range(REQUESTS):  # a connection each, so that both workers take some
            response = httpx.get(f"{server.base_url}/info/api", params=creds.query, timeout=30)
            assert response.status_code == 200
        counting = {path.name.split("_")[-1] for path in samples.glob("counter_*.db")}
        assert len(counting) == 2, f"the requests reached one worker only: {counting}"
        time.sleep(6)  # one upkeep heartbeat: each worker publishes its index gauges
        for _ in range(6):  # scrapes land on either worker
            text = httpx.get(f"{server.base_url}/metrics", timeout=30).text
            labels = {"endpoint": "/info/api", "dialect": "sensetime", "http_status": "200"}
            assert metric_value(text, "facesrv_requests_total", **labels) == REQUESTS
            # Every answer timed, the start-up probe's 401s included.
            answered = metric_value(text, "facesrv_requests_total", endpoint="/info/api")
            assert answered > REQUESTS
            timed = metric_value(
                text, "facesrv_request_duration_seconds_count", endpoint="/info/api"
            )
            assert timed == answered
            pids = {
                line.split('pid="')[1].split('"')[0]
                for line in text.splitlines()
                if line.startswith("facesrv_index_collections{")
            }
            assert len(pids) == 2, pids
            assert metric_value(text, "facesrv_upkeep_passes_total", job="heartbeat") >= 2
    finally:
        server.stop()
