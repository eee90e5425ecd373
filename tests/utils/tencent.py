"""Tencent accounts, signatures and clients for the dialect's tests.

`sign` builds the `Authorization` value as the vendor's SDKs do (written here from the rules of
../shared/wire-compat.md, not taken from the SDK, so tests can also forge every broken form);
`sdk` returns the official `qcloud_image.Client`, unmodified, pointed at a test server through
its configuration (`Conf._Conf__SERVICE_ADDR`, the one place it keeps the host).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import secrets
import time
from dataclasses import dataclass

import httpx
import pytest
from qcloud_image import Client
from qcloud_image.conf import Conf

from app.db.models import Account
from app.db.session import session_scope
from app.domain import Dialect
from app.services import credentials
from tests.conftest import Credentials, make_account

_serial = itertools.count(1)


@dataclass(frozen=True)
class TencentAccount:
    app_id: str
    secret_id: str
    secret_key: str
    sensetime: Credentials  # the same account through the SenseTime door


def tencent_account(**overrides: object) -> TencentAccount:
    """A new account with a Tencent credential (AppId, SecretId, SecretKey) beside SenseTime's."""
    sensetime = make_account(**overrides)
    serial = next(_serial)
    app_id = str(1_251_000_000 + secrets.randbelow(10**6) * 100 + serial % 100)
    secret_id, secret_key = f"AKID{secrets.randbelow(10**12):012d}x{serial}", f"key-{serial}"
    with session_scope() as db:
        account = db.query(Account).filter_by(api_id=sensetime.api_id).one()
        credentials.add_credential(
            db, account, Dialect.TENCENT, secret_id, secret_key, {"app_id": app_id}
        )
    return TencentAccount(app_id, secret_id, secret_key, sensetime)


def sign(
    account: TencentAccount,
    *,
    node: bool = False,
    expires_in: int = 30,
    now: int | None = None,
    key: str | None = None,
    app_id: str | None = None,
    secret_id: str | None = None,
) -> str:
    """The Python SDK's signature (`a, b, k, e, t, r, f`), or the Node SDK's (`u=0`, no `b`)."""
    now = int(time.time()) if now is None else now
    a, k = app_id or account.app_id, secret_id or account.secret_id
    r = secrets.randbelow(10**9)
    if node:
        plain = f"a={a}&k={k}&e={now + expires_in}&t={now}&r={r}&u=0&f="
    else:
        plain = f"a={a}&b=bucket&k={k}&e={now + expires_in}&t={now}&r={r}&f="
    digest = hmac.new((key or account.secret_key).encode(), plain.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest + plain.encode()).decode()


def post(
    http: httpx.Client,
    path: str,
    account: TencentAccount,
    body: dict | None = None,
    *,
    authorization: str | None = None,
    files: dict | None = None,
    node: bool = True,
) -> httpx.Response:
    """A call as the vendor's other SDKs build it: JSON `{appid, ...}`, signed; or multipart."""
    headers = {
        "Authorization": sign(account, node=node) if authorization is None else authorization,
        "Host": "recognition.image.myqcloud.com",
    }
    payload = {"appid": account.app_id, **(body or {})}
    if files is not None:
        data = {name: str(value) for name, value in payload.items()}
        return http.post(path, data=data, files=files, headers=headers)
    return http.post(path, json=payload, headers=headers)


def code_of(response: httpx.Response) -> int:
    body = response.json()
    assert list(body)[:3] == ["data", "code", "message"], body
    assert isinstance(body["data"], dict) and isinstance(body["message"], str), body
    return body["code"]


def fails(response: httpx.Response, code: int, http: int) -> dict:
    """Assert the vendor's error envelope with `code`, sent with HTTP status `http`."""
    assert (code_of(response), response.status_code) == (code, http), response.text
    return response.json()["data"]


def sdk(account: TencentAccount, base_url: str, monkeypatch: pytest.MonkeyPatch) -> Client:
    """The official Python SDK as a user configures it, repointed at `base_url`."""
    monkeypatch.setattr(Conf, "_Conf__SERVICE_ADDR", base_url.removeprefix("http://"))
    return Client(account.app_id, account.secret_id, account.secret_key, "bucket")
