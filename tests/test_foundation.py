"""Auth, errors, rate limits and /info/api on both databases."""

from __future__ import annotations

import gc
import json
import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from app.db.models import Account, RateWindow
from app.db.session import engine_for, session_scope
from app.services.ratelimit import purge_old_windows
from tests.conftest import Credentials, make_account
from tests.plans import query_plans, reads_whole, statements_on


def test_info_api_has_the_seed_shape(client: TestClient, account: Credentials) -> None:
    response = client.get("/info/api", params=account.query)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["status", "rate_limit", "quota", "usage", "request_id"]
    assert body["status"] == "OK"
    assert body["rate_limit"] == "1000q/10s"
    assert list(body["quota"]) == [
        "groups",
        "persons",
        "facesets",
        "persons_per_group",
        "faces_per_person",
        "faces_per_faceset",
    ]
    assert body["usage"] == {"groups": 0, "persons": 0, "facesets": 0}
    assert response.headers["X-RateLimit-Limit"] == "1000"
    assert int(response.headers["X-RateLimit-Remaining"]) == 999
    assert 1 <= int(response.headers["X-RateLimit-Reset"]) <= 10


def test_start_up_objects_are_frozen_out_of_garbage_collection(client: TestClient) -> None:
    """Otherwise every full collection walks them all: a 40-70 ms stall of some request."""
    assert gc.get_freeze_count() > 10_000


def test_expiration_date_only_when_set(client: TestClient, configured: str) -> None:
    expires = datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)
    creds = make_account(expires_at=expires)
    body = client.get("/info/api", params=creds.query).json()
    assert list(body)[:3] == ["status", "rate_limit", "expiration_date"]
    assert body["expiration_date"] == "2099-01-02T03:04:05+00:00"


def test_bad_credentials_are_401(client: TestClient, account: Credentials) -> None:
    cases = [
        {},
        {"api_id": account.api_id},
        {"api_secret": account.api_secret},
        {"api_id": account.api_id, "api_secret": "0" * 32},
        {"api_id": "f" * 32, "api_secret": account.api_secret},
    ]
    for params in cases:
        response = client.get("/info/api", params=params)
        assert response.status_code == 401, params
        assert response.json()["status"] == "UNAUTHORIZED"


def test_credentials_in_json_form_and_multipart_bodies(
    client: TestClient, account: Credentials
) -> None:
    assert client.post("/info/api", json=account.query).status_code == 200
    assert client.post("/info/api", data=account.query).status_code == 200
    files = {"api_id": (None, account.api_id), "api_secret": (None, account.api_secret)}
    assert client.post("/info/api", files=files).status_code == 200
    split = client.post(
        "/info/api", params={"api_id": account.api_id}, data={"api_secret": account.api_secret}
    )
    assert split.status_code == 200


def test_expired_account_is_key_expired(client: TestClient, configured: str) -> None:
    creds = make_account(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    response = client.get("/info/api", params=creds.query)
    assert response.status_code == 401
    body = response.json()
    assert body["status"] == "KEY_EXPIRED"
    assert "expired" in body["reason"]


def test_disabled_account_is_unauthorized(client: TestClient, configured: str) -> None:
    from app.cli import main

    creds = make_account()
    assert main(["account", "disable", creds.api_id]) == 0
    assert client.get("/info/api", params=creds.query).status_code == 401


def test_endpoint_permission(client: TestClient, configured: str) -> None:
    creds = make_account(allowed_endpoints=["/info/list_persons"])
    response = client.get("/info/api", params=creds.query)
    assert response.status_code == 403
    assert response.json()["status"] == "NO_PERMISSION"


def test_rate_limit_burst_gets_403_with_headers(client: TestClient, configured: str) -> None:
    creds = make_account(rate_limit="5q/60s")
    codes = []
    for _ in range(8):
        response = client.get("/info/api", params=creds.query)
        codes.append(response.status_code)
        assert "X-RateLimit-Limit" in response.headers
    assert codes == [200] * 5 + [403] * 3
    body = response.json()
    assert body["status"] == "RATE_LIMIT_EXCEEDED"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.headers["X-RateLimit-Limit"] == "5"


def test_failed_calls_count_against_the_rate_limit(client: TestClient, configured: str) -> None:
    creds = make_account(rate_limit="3q/60s", allowed_endpoints=["/info/list_persons"])
    for _ in range(3):
        assert client.get("/info/api", params=creds.query).json()["status"] == "NO_PERMISSION"
    assert client.get("/info/api", params=creds.query).json()["status"] == "RATE_LIMIT_EXCEEDED"


def test_counts_older_than_a_day_are_purged_by_account(configured: str) -> None:
    """Rate counts (one row per account and window) are purged through their key."""
    ids = []
    for creds in (make_account(), make_account()):
        with session_scope() as db:
            ids.append(db.scalar(select(Account.id).where(Account.api_id == creds.api_id)))
    now = int(time.time())
    windows = [(ids[0], now - 2 * 86_400), (ids[0], now), (ids[1], now - 2 * 86_400)]
    with session_scope() as db:
        db.execute(
            insert(RateWindow),
            [{"account_id": a, "window_start": start, "calls": 1} for a, start in windows],
        )

    engine = engine_for(configured)
    with statements_on(engine, "rate_windows") as statements, session_scope() as db:
        assert purge_old_windows(db, ids[0]) == 1
    with session_scope() as db:
        query = select(RateWindow.account_id, RateWindow.window_start).where(
            RateWindow.account_id.in_(ids)
        )
        assert sorted(tuple(row) for row in db.execute(query)) == sorted(windows[1:])
    (plan,) = query_plans(engine, statements)
    assert not reads_whole("rate_windows", plan), plan


def test_unknown_path_and_method_are_json(client: TestClient, account: Credentials) -> None:
    response = client.get("/no/such/api", params=account.query)
    assert response.status_code == 404
    assert response.json()["status"] == "NOT_FOUND"
    response = client.delete("/info/api", params=account.query)
    assert response.status_code == 405
    assert response.json()["status"] == "METHOD_NOT_ALLOWED"


def test_every_body_is_ascii_with_a_request_id(client: TestClient, account: Credentials) -> None:
    response = client.get("/info/api", params=account.query)
    raw = response.content
    raw.decode("ascii")
    assert json.loads(raw)["request_id"] == response.headers["x-request-id"]
    error = client.get("/info/api")
    assert "request_id" in error.json()


def test_internal_errors_are_json_500_without_traceback(configured: str) -> None:
    from app.main import create_app

    app = create_app()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["status"] == "INTERNAL_ERROR"
    assert "secret internals" not in response.text
    assert body["request_id"] in body["reason"]
