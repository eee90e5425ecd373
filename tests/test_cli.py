"""The `facesrv` command: accounts, migrations and the refusal to serve without models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from app.config import REPO_ROOT


def test_account_create_list_disable(configured: str, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(
            [
                "account",
                "create",
                "--name",
                "alice",
                "--rate-limit",
                "7q/3s",
                "--quota",
                "groups=2,persons=3",
                "--expires",
                "2030-01-01T00:00:00+08:00",
                "--endpoints",
                "/info/api,/face/detection",
            ]
        )
        == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert list(created) == ["api_id", "api_secret"]
    assert len(created["api_id"]) == 32 and len(created["api_secret"]) == 32

    assert main(["account", "list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    alice = next(row for row in listed if row["api_id"] == created["api_id"])
    assert alice["rate_limit"] == "7q/3s"
    assert alice["allowed_endpoints"] == ["/info/api", "/face/detection"]
    assert alice["expires_at"] == "2029-12-31T16:00:00+00:00"
    assert "secret" not in json.dumps(alice)

    assert main(["account", "disable", created["api_id"]]) == 0
    assert main(["account", "disable", "0" * 32]) == 1


@pytest.mark.parametrize("arguments", [["--rate-limit", "fifty"], ["--expires", "tuesday"]])
def test_bad_option_values_exit_2(configured: str, arguments: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["account", "create", "--name", "x", *arguments])
    assert exited.value.code == 2


@pytest.mark.parametrize("quota", ["groups=many", "unknown=1"])
def test_bad_quotas_are_refused(configured: str, quota: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["account", "create", "--name", "x", "--quota", quota]) == 2
    assert "quota item" in capsys.readouterr().err


def test_serve_refuses_to_start_without_models(configured: str, tmp_path: Path) -> None:
    env = {
        "FACESRV_MODELS_DIR": str(tmp_path / "empty"),
        "FACESRV_DATABASE_URL": configured,
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", "1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "facesrv models install" in result.stderr


def test_db_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import get_settings

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("FACESRV_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        assert main(["db", "upgrade"]) == 0
    finally:
        get_settings.cache_clear()
    assert (tmp_path / "cli.db").stat().st_size > 0
