"""Huawei accounts, signed requests and SDK clients for the dialect's tests.

`sdk` is the official `FrsClient`, unmodified, repointed with `with_endpoint`. `signed` builds a
request with the SDK core's own `Signer` (what the SDK does on every call), so tests can also
send what the SDK never would: a stale `X-Sdk-Date`, a foreign project, a wrong key.
"""

from __future__ import annotations

import itertools
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkfrs.v2 import FrsClient

from app.db.models import Account
from app.db.session import session_scope
from app.domain import Dialect
from app.services import credentials
from tests.conftest import DEFAULT_QUOTA, Credentials, make_account

_serial = itertools.count(1)


@dataclass(frozen=True)
class HuaweiAccount:
    ak: str
    sk: str
    project_id: str
    token: str  # an X-Auth-Token for the same project
    sensetime: Credentials


def huawei_account(**overrides: object) -> HuaweiAccount:
    """A new account with a Huawei AK/SK and a token; room for many faces per face set."""
    options: dict = {"quota": {**DEFAULT_QUOTA, "faces_per_faceset": 10_000}, **overrides}
    sensetime = make_account(**options)
    serial = next(_serial)
    ak, sk = f"AK{secrets.token_hex(8).upper()}{serial}", f"SK{secrets.token_hex(16)}"
    with session_scope() as db:
        account = db.query(Account).filter_by(api_id=sensetime.api_id).one()
        issued = credentials.add_credential(db, account, Dialect.HUAWEI, ak, sk)
        token = credentials.add_credential(db, account, Dialect.HUAWEI_TOKEN)
    project_id = issued.attributes["project_id"]
    return HuaweiAccount(ak, sk, project_id, f"{token.key_id}.{token.secret}", sensetime)


def sdk(account: HuaweiAccount, base_url: str, project_id: str | None = None) -> FrsClient:
    basic = BasicCredentials(account.ak, account.sk, project_id or account.project_id)
    return FrsClient.new_builder().with_credentials(basic).with_endpoint(base_url).build()


def signed(
    http: httpx.Client,
    account: HuaweiAccount,
    method: str,
    path: str,
    *,
    body: dict | None = None,
    query: list[tuple[str, str]] | None = None,
    date: datetime | None = None,
    sk: str | None = None,
    project_id: str | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    """A request signed as the SDK signs it, at `date` (default now), with `sk`; the body is
    `body` as JSON, or `content` as it is."""
    project = project_id or account.project_id
    host = http.base_url.netloc.decode()
    if content is None:
        content = json.dumps(body).encode() if body is not None else b""
    headers = {
        "Content-Type": "application/json",
        "X-Project-Id": project,
        "X-Sdk-Date": (date or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ"),
        "Host": host,
    }
    request = SdkRequest(
        method=method,
        schema="http",
        host=host,
        resource_path=f"/v2/{project}{path}",
        query_params=list(query or []),
        header_params=headers,
        body=content,
    )
    Signer(BasicCredentials(account.ak, sk or account.sk, project)).sign(request)
    return http.request(
        method, request.uri, headers=request.header_params, content=request.body or b""
    )


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert list(body)[:2] == ["error_code", "error_msg"], body
    return response.status_code, body["error_code"]
