"""What an operator relies on: /healthz, /readyz and its reasons, /metrics, request log lines,
the CLI's friendlier failures."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient

from app.api.logs import JsonFormatter
from app.cli import main
from app.config import REPO_ROOT, database_url, get_settings
from app.db.migrate import alembic_config
from app.services.detection import get_analyzer
from app.services.health import migration_heads
from tests.conftest import Credentials, forget_process_state
from tests.utils.api import ok
from tests.utils.detection import model_photo


def unstarted_client() -> TestClient:
    """A client of an app whose lifespan does not run (no model load, no upkeep thread)."""
    from app.main import create_app

    return TestClient(create_app())


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`, from the exposition text."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        sample, value = line.rsplit(" ", 1)
        if all(f'{key}="{wanted}"' in sample for key, wanted in labels.items()):
            total += float(value)
    return total


# --- /healthz and /readyz ------------------------------------------------------------------


def test_healthz_needs_no_credentials_and_no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESRV_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    forget_process_state()
    try:
        response = unstarted_client().get("/healthz")
    finally:
        monkeypatch.undo()
        forget_process_state()
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_is_ready_with_models_loaded_and_the_schema_current(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready"}


def test_readyz_says_when_the_database_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    get_analyzer()
    url = "postgresql+psycopg://facesrv:hunter2@127.0.0.1:1/none"
    monkeypatch.setenv("FACESRV_DATABASE_URL", url)
    forget_process_state()
    try:
        response = unstarted_client().get("/readyz")
    finally:
        monkeypatch.undo()
        forget_process_state()
    assert response.status_code == 503
    (problem,) = response.json()["problems"]
    assert "unreachable" in problem and "127.0.0.1:1" in problem
    assert "hunter2" not in problem  # the password never leaves the server


def test_readyz_says_when_migrations_are_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    get_analyzer()
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0007")
    monkeypatch.setenv("FACESRV_DATABASE_URL", url)
    forget_process_state()
    try:
        response = unstarted_client().get("/readyz")
        assert response.status_code == 503
        (problem,) = response.json()["problems"]
        (head,) = migration_heads()
        assert problem.startswith(f"database schema at 0007, migrations head at {head}")
        assert "facesrv db upgrade" in problem
        command.upgrade(alembic_config(url), "head")
        assert unstarted_client().get("/readyz").status_code == 200
    finally:
        monkeypatch.undo()
        forget_process_state()


def test_readyz_says_when_the_models_are_not_loaded(configured: str) -> None:
    get_analyzer.cache_clear()
    try:
        response = unstarted_client().get("/readyz")
        assert response.status_code == 503
        assert response.json()["problems"] == ["models not loaded yet"]
    finally:
        get_analyzer()  # loaded again (and hash-checked) for the tests that follow


# --- /metrics --------------------------------------------------------------------------------


def test_metrics_count_requests_by_endpoint_dialect_and_status(
    client: TestClient, account: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACESRV_METRICS_TOKEN", "scrape-me")
    forget_process_state()
    bearer = {"Authorization": "Bearer scrape-me"}
    labels = {"endpoint": "/face/detection", "dialect": "sensetime"}

    def scrape() -> str:
        response = client.get("/metrics", headers=bearer)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    before = scrape()
    photo = model_photo("yaoming.jpg")
    for _ in range(2):
        ok(client.post("/face/detection", params=account.query, files={"file": photo}))
    refused = client.post("/face/detection", params={**account.query, "api_secret": "wrong"})
    assert refused.status_code == 401
    after = scrape()

    def moved(name: str, **extra: str) -> float:
        return metric_value(after, name, **extra) - metric_value(before, name, **extra)

    assert moved("facesrv_requests_total", **labels, http_status="200", status="OK") == 2
    assert moved("facesrv_requests_total", **labels, http_status="401", status="UNAUTHORIZED") == 1
    assert moved("facesrv_request_duration_seconds_count", **labels) == 3
    assert moved("facesrv_faces_detected_total") == 2  # one face in each
    assert moved("facesrv_inference_duration_seconds_count", model="scrfd_500m_bnkps") >= 2
    assert moved("facesrv_inference_duration_seconds_count", model="w600k_mbf") >= 2


def test_metrics_want_the_token_or_a_loopback_client(
    configured: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = unstarted_client()  # its client address is "testclient": not loopback
    assert client.get("/metrics").status_code == 401
    monkeypatch.setenv("FACESRV_METRICS_TOKEN", "scrape-me")
    forget_process_state()
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200
    # Off the vendor APIs: their credentials open nothing here.
    response = client.get("/metrics", params={"api_id": "x", "api_secret": "y"})
    assert response.status_code == 401


def test_the_cli_does_not_import_prometheus_client_before_serve_sets_it_up() -> None:
    """prometheus_client picks in-memory or multi-process values at import (app/metrics.py)."""
    code = "import sys, app.cli; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True)
    assert out.stdout.decode().strip() == "False", out.stderr.decode()


# --- request log lines -----------------------------------------------------------------------


@pytest.mark.parametrize("formatter", [logging.Formatter("%(message)s"), JsonFormatter()])
def test_a_request_line_names_the_caller_and_never_the_secret(
    client: TestClient,
    account: Credentials,
    caplog: pytest.LogCaptureFixture,
    formatter: logging.Formatter,
) -> None:
    with caplog.at_level(logging.INFO, logger="facesrv.access"):
        response = client.get("/info/api", params=account.query)
    assert response.status_code == 200
    request_id = response.json()["request_id"]
    (record,) = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    line = formatter.format(record)
    assert account.api_secret not in line
    assert "api_secret=***" in line
    assert account.api_id in line and request_id in line
    if isinstance(formatter, JsonFormatter):
        fields = json.loads(line)
        assert fields["api_id"] == account.api_id
        assert fields["endpoint"] == "/info/api" and fields["dialect"] == "sensetime"
        assert fields["http_status"] == 200 and fields["status"] == "OK"
        assert fields["latency_ms"] >= 0
        assert fields["path"] == f"/info/api?api_id={account.api_id}&api_secret=***"


def test_a_refused_secret_is_not_logged_either(
    client: TestClient, account: Credentials, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-secret-0123456789"
    with caplog.at_level(logging.INFO, logger="facesrv.access"):
        client.post("/info/api", params={"api_id": account.api_id, "api_secret": wrong})
    assert caplog.records
    assert all(wrong not in JsonFormatter().format(record) for record in caplog.records)


# --- API docs --------------------------------------------------------------------------------


def test_docs_pages_use_only_local_assets(configured: str) -> None:
    client = unstarted_client()
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "cdn" not in html.lower() and "https://" not in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        response = client.get(f"/docs-assets/{asset}")
        assert response.status_code == 200 and len(response.content) > 100_000


# --- the CLI ---------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture) -> None:
    from app import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"facesrv {__version__}"


def test_every_option_has_help_and_says_its_default() -> None:
    import argparse

    from app.cli import build_parser

    def walk(parser: argparse.ArgumentParser) -> list[argparse.Action]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found += walk(sub)
            elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
                found.append(action)
        return found

    for action in walk(build_parser()):
        assert action.help, f"{action.dest} has no help"
        if action.option_strings and not action.required:  # or says when it is required
            said = "default" in action.help or "(required " in action.help
            assert said, f"{action.option_strings} does not say its default"


def test_serve_on_a_taken_port_fails_at_once(
    configured: str, capsys: pytest.CaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert f"port {port} on 127.0.0.1 is taken" in capsys.readouterr().err


def test_serve_without_models_names_the_folder(
    configured: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    empty = tmp_path / "no-models"
    monkeypatch.setenv("FACESRV_MODELS_DIR", str(empty))
    monkeypatch.setenv("FACESRV_PORT", "0")
    forget_process_state()
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert f"the model pack in {empty} is not ready" in err and "facesrv models install" in err


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://facesrv:hunter2@127.0.0.1:1/none", "Connection refused"),
        ("nonsense", "Could not parse"),
        ("mysql://facesrv:hunter2@127.0.0.1/none", "takes sqlite:///path or postgresql://"),
    ],
)
def test_a_bad_database_url_is_one_line_without_its_password(url: str, said: str) -> None:
    env = {"FACESRV_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "app", "account", "list"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 3
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("facesrv: database ") and said in line
    assert "hunter2" not in line and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgres://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_postgres_urls_as_others_spell_them(given: str, used: str) -> None:
    assert database_url(given) == used


def test_a_postgres_scheme_url_reaches_the_database(
    postgresql_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(
        "FACESRV_DATABASE_URL", postgresql_url.replace("postgresql+psycopg://", "postgres://")
    )
    forget_process_state()
    try:
        assert main(["db", "upgrade"]) == 0
        assert main(["account", "list"]) == 0
    finally:
        monkeypatch.undo()
        forget_process_state()


def test_an_empty_url_beside_a_file_is_no_url(client: TestClient, account: Credentials) -> None:
    """What Swagger UI's form (and any HTML form) sends when the url field is left blank."""
    files = {"file": model_photo("yaoming.jpg")}
    body = ok(client.post("/face/detection", params=account.query, data={"url": ""}, files=files))
    assert len(body["faces"]) == 1


def test_the_size_limits_follow_their_settings(
    configured: str, account: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = model_photo("yaoming.jpg")
    monkeypatch.setenv("FACESRV_MAX_IMAGE_BYTES", str(len(photo) - 1))
    get_settings.cache_clear()
    client = unstarted_client()
    response = client.post("/face/detection", params=account.query, files={"file": photo})
    assert response.status_code == 400
    assert response.json()["status"] == "IMAGE_FILE_SIZE_TOO_BIG"
    monkeypatch.setenv("FACESRV_MAX_BODY_BYTES", "1000")
    get_settings.cache_clear()
    response = client.post("/face/detection", params=account.query, files={"file": photo})
    assert response.status_code == 413
    assert response.json()["reason"] == "request body exceeds 1000 bytes"
