"""Quotas and rate limits hold under real concurrent HTTP against a 2-worker server process.

Each test talks to `uvicorn --workers 2` started on the test's database (SQLite and PostgreSQL),
so the requests really race in two processes; nothing here runs in-process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from app.db.migrate import upgrade
from app.db.session import engine_for
from app.services.accounts import account_write
from tests.conftest import DEFAULT_QUOTA, REDIS_URL, forget_process_state, make_account
from tests.servers import Server
from tests.utils.api import away_from_a_window_edge, detect_faces

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_for(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str | None], Server]]:
    """Servers on this module's database, one per limiter backend, started on first use."""
    servers: dict[str | None, Server] = {}

    def get(redis_url: str | None = None) -> Server:
        if redis_url not in servers:
            env = {"FACESRV_REDIS_URL": redis_url} if redis_url else {}
            servers[redis_url] = Server(
                database_url, tmp_path_factory.mktemp("srv"), workers=2, env=env
            )
        return servers[redis_url]

    try:
        yield get
    finally:
        for server in servers.values():
            server.stop()


def _fire(base_url: str, path: str, bodies: list[dict]) -> list[httpx.Response]:
    """Send every body at once, one thread and connection each."""

    def send(body: dict) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            return client.post(path, json=body)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(send, bodies))


def _statuses(responses: list[httpx.Response]) -> Counter:
    return Counter((response.status_code, response.json()["status"]) for response in responses)


def test_concurrent_person_creates_stop_at_the_quota(
    server_for: Callable[[str | None], Server], configured: str
) -> None:
    server = server_for(None)
    creds = make_account(quota={**DEFAULT_QUOTA, "persons": 5})
    responses = _fire(
        server.base_url,
        "/person/create",
        [{**creds.query, "name": f"p{n}"} for n in range(20)],
    )
    assert _statuses(responses) == {(200, "OK"): 5, (400, "QUOTA_EXCEEDED"): 15}
    for response in responses:
        if response.status_code == 400:
            assert "persons" in response.json()["reason"]
    listing = httpx.get(f"{server.base_url}/info/list_persons", params=creds.query).json()
    assert len(listing["persons"]) == 5
    usage = httpx.get(f"{server.base_url}/info/api", params=creds.query).json()["usage"]
    assert usage["persons"] == 5


def test_concurrent_faceset_adds_stop_at_the_quota(
    server_for: Callable[[str | None], Server], configured: str
) -> None:
    server = server_for(None)
    creds = make_account(quota={**DEFAULT_QUOTA, "faces_per_faceset": 5})
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        face_ids = detect_faces(client, creds, 12)  # type: ignore[arg-type]
        faceset = client.post("/faceset/create", json={**creds.query, "name": "race"}).json()[
            "faceset_id"
        ]
    responses = _fire(
        server.base_url,
        "/faceset/add_face",
        [{**creds.query, "faceset_id": faceset, "face_id": face_id} for face_id in face_ids],
    )
    assert _statuses(responses) == {(200, "OK"): 5, (400, "QUOTA_EXCEEDED"): 7}
    assert all(r.json()["added_count"] == 1 for r in responses if r.status_code == 200)
    shown = httpx.get(
        f"{server.base_url}/info/faceset", params={**creds.query, "faceset_id": faceset}
    ).json()
    assert len(shown["face_ids"]) == 5
    assert len(set(shown["face_ids"])) == 5


@pytest.mark.parametrize("limiter", ["database", "redis"])
def test_rate_limit_is_shared_by_worker_processes(
    server_for: Callable[[str | None], Server], configured: str, limiter: str
) -> None:
    redis_url = REDIS_URL if limiter == "redis" else None
    server = server_for(redis_url)
    creds = make_account(rate_limit="10q/60s")
    away_from_a_window_edge(60)
    responses = _fire(server.base_url, "/info/api", [creds.query] * 20)
    assert _statuses(responses) == {(200, "OK"): 10, (403, "RATE_LIMIT_EXCEEDED"): 10}
    for response in responses:
        assert response.headers["X-RateLimit-Limit"] == "10"
        if response.status_code == 403:
            assert response.headers["X-RateLimit-Remaining"] == "0"
    remaining = sorted(
        int(r.headers["X-RateLimit-Remaining"]) for r in responses if r.status_code == 200
    )
    assert remaining == list(range(10))  # every call saw its own count: no lost increments


def test_locking_an_account_checks_no_table_that_references_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every write starts with the lock. Had it written the account's key, SQLite would check
    each table referencing accounts for the account's rows: all its faces, on every write."""
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    upgrade(url)
    monkeypatch.setenv("FACESRV_DATABASE_URL", url)
    forget_process_state()
    engine = engine_for(url)
    statements: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    try:
        event.listen(engine, "before_cursor_execute", capture)
        with account_write(1):
            pass
        event.remove(engine, "before_cursor_execute", capture)
        (statement,) = statements
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            program = connection.exec_driver_sql(f"EXPLAIN {statement}", (1,)).all()
    finally:
        engine.dispose()
    opcodes = {row[1] for row in program}
    assert "Update" in opcodes or "Insert" in opcodes, "the statement writes the row"
    assert not {opcode for opcode in opcodes if opcode.startswith("Fk")}, sorted(opcodes)
