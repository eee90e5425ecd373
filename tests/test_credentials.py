"""Credentials per dialect: kept keys, rotation, account life cycle, sealed signing keys."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.cli import main
from app.config import get_settings
from app.db.models import Credential
from app.db.session import engine_for, session_scope
from app.domain import Dialect
from app.services import credentials

# What a client migrating off the cloud has hard-coded: not our shapes, not our lengths.
KEPT_ID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA"
KEPT_SECRET = "Gu5t9xGARNpq86cd98joQYCN3Cozk1qA"


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, list[dict]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _info(client: TestClient, api_id: str, api_secret: str) -> int:
    return client.get("/info/api", params={"api_id": api_id, "api_secret": api_secret}).status_code


def test_a_client_keeps_its_hard_coded_pair(
    client: TestClient, capsys: pytest.CaptureFixture
) -> None:
    code, [created] = _run(
        capsys, "account", "create", "--name", "kept", "--api-id", KEPT_ID,
        "--api-secret", KEPT_SECRET,
    )  # fmt: skip
    assert code == 0 and created == {"api_id": KEPT_ID, "api_secret": KEPT_SECRET}
    assert _info(client, KEPT_ID, KEPT_SECRET) == 200
    assert _info(client, KEPT_ID, KEPT_SECRET + "x") == 401
    code, _ = _run(capsys, "account", "create", "--name", "again", "--api-id", KEPT_ID)
    assert code == 2, "a taken api_id is refused"
    with session_scope() as db:
        stored = db.scalar(select(Credential).where(Credential.key_id == KEPT_ID))
        assert stored.secret_hash and KEPT_SECRET not in (stored.secret_hash + stored.secret_salt)


@pytest.mark.parametrize("bad", ["", " padded", "x" * 129, "naïve", "tab\there"])
def test_malformed_given_ids_are_refused(configured: str, bad: str) -> None:
    assert main(["account", "create", "--name", "x", "--api-id", bad]) == 2


def test_rotate_disable_enable_delete(client: TestClient, capsys: pytest.CaptureFixture) -> None:
    _, [created] = _run(capsys, "account", "create", "--name", "cycle")
    api_id, old = created["api_id"], created["api_secret"]
    _, [rotated] = _run(capsys, "account", "rotate-secret", api_id)
    assert rotated["key_id"] == api_id and rotated["secret"] != old
    assert (_info(client, api_id, old), _info(client, api_id, rotated["secret"])) == (401, 200)
    assert _run(capsys, "account", "disable", api_id)[0] == 0
    assert _info(client, api_id, rotated["secret"]) == 401
    assert _run(capsys, "account", "enable", api_id)[0] == 0
    assert _info(client, api_id, rotated["secret"]) == 200
    assert _run(capsys, "account", "delete", api_id)[0] == 0
    assert _info(client, api_id, rotated["secret"]) == 401
    with session_scope() as db:
        assert db.scalar(select(Credential).where(Credential.key_id == api_id)) is None
    assert _run(capsys, "account", "delete", api_id)[0] == 1


def test_a_sealed_signing_key_is_unreadable_without_the_server_key(
    configured: str, capsys: pytest.CaptureFixture
) -> None:
    _, [created] = _run(capsys, "account", "create", "--name", "tencent user")
    code, [issued] = _run(
        capsys, "account", "credential", "add", created["api_id"], "--dialect", "tencent",
        "--key-id", KEPT_ID, "--secret", KEPT_SECRET, "--attribute", "app_id=1251000000",
    )  # fmt: skip
    assert code == 0 and issued == {
        "dialect": "tencent", "key_id": KEPT_ID, "secret": KEPT_SECRET, "app_id": "1251000000"
    }  # fmt: skip
    _, listed = _run(capsys, "account", "credential", "list", created["api_id"])
    assert [(row["dialect"], row["key_id"]) for row in listed] == [
        ("sensetime", created["api_id"]),
        ("tencent", KEPT_ID),
    ]
    assert listed[1]["attributes"] == {"app_id": "1251000000"}
    assert KEPT_SECRET not in json.dumps(listed)

    if configured.startswith("sqlite"):  # the database file itself, WAL included
        engine_for(configured).dispose()
        path = Path(configured.removeprefix("sqlite:///"))
        files = [path, path.with_name(path.name + "-wal")]
        raw = b"".join(file.read_bytes() for file in files if file.exists())
        assert KEPT_SECRET.encode() not in raw
    with session_scope() as db:
        stored = db.scalar(
            select(Credential).where(Credential.dialect == "tencent", Credential.key_id == KEPT_ID)
        )
        sealed = stored.secret_sealed
        assert sealed and KEPT_SECRET.encode() not in sealed and stored.secret_hash is None
        assert credentials.signing_key(stored) == KEPT_SECRET
    key = credentials.server_key()
    with pytest.raises(InvalidTag):
        credentials.unseal(os.urandom(32), "tencent", KEPT_ID, sealed)  # another server key
    with pytest.raises(InvalidTag):
        credentials.unseal(key, "tencent", "another-key-id", sealed)  # moved to another row
    with pytest.raises(InvalidTag):
        credentials.unseal(key, "alibaba", KEPT_ID, sealed)

    assert _run(capsys, "account", "credential", "remove", created["api_id"],
                "--dialect", "tencent", "--key-id", KEPT_ID)[0] == 0  # fmt: skip
    with session_scope() as db:
        assert credentials.find(db, Dialect.TENCENT, KEPT_ID) is None


def test_the_server_key_file_is_private_and_the_environment_wins(
    configured: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = credentials.server_key()
    key_file = get_settings().data_dir / credentials.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    credentials.server_key.cache_clear()
    assert credentials.server_key() == key, "the same key after a restart"

    given = os.urandom(32)
    monkeypatch.setenv("FACESRV_SECRET_KEY", base64.urlsafe_b64encode(given).decode())
    get_settings.cache_clear()
    credentials.server_key.cache_clear()
    assert credentials.server_key() == given
    monkeypatch.setenv("FACESRV_SECRET_KEY", base64.urlsafe_b64encode(b"short").decode())
    get_settings.cache_clear()
    credentials.server_key.cache_clear()
    with pytest.raises(ValueError, match="32 bytes"):
        credentials.server_key()
