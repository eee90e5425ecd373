"""Alibaba accounts, SDK calls and hand-signed requests for the dialect's tests.

`call` sends a request class of the official `aliyunsdkgreen` through `AcsClient`, unmodified,
repointed with `port` and `set_endpoint`, retries off. `signed` builds the headers the SDK
sends and signs them with the SDK core's own composer, so tests can also send a body whose
Content-MD5 lies, or a stale Date.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import time
from dataclasses import dataclass
from email.utils import formatdate

import httpx
from aliyunsdkcore.auth.algorithm import sha_hmac1
from aliyunsdkcore.auth.composer.roa_signature_composer import compose_string_to_sign
from aliyunsdkcore.client import AcsClient

from app.db.models import Account
from app.db.session import session_scope
from app.domain import Dialect
from app.services import credentials
from tests.conftest import Credentials, make_account

_serial = itertools.count(1)
REGION = "cn-shanghai"


@dataclass(frozen=True)
class AlibabaAccount:
    access_key_id: str
    secret: str
    sensetime: Credentials


def alibaba_account(**overrides: object) -> AlibabaAccount:
    sensetime = make_account(**overrides)
    key_id = f"LTAI{secrets.token_hex(8)}{next(_serial)}"
    secret = secrets.token_urlsafe(22)
    with session_scope() as db:
        account = db.query(Account).filter_by(api_id=sensetime.api_id).one()
        credentials.add_credential(db, account, Dialect.ALIBABA, key_id, secret)
    return AlibabaAccount(key_id, secret, sensetime)


def client(account: AlibabaAccount, port: int, secret: str | None = None) -> AcsClient:
    return AcsClient(
        account.access_key_id, secret or account.secret, REGION, port=port, auto_retry=False
    )


def call(sdk: AcsClient, request_class: type, body: dict) -> dict:
    """One SDK call with a JSON body; the parsed answer (the SDK raises on non-2xx)."""
    request = request_class()
    request.set_endpoint("127.0.0.1")
    request.set_content(json.dumps(body).encode())
    return json.loads(sdk.do_action_with_exception(request))


def signed(
    http: httpx.Client,
    account: AlibabaAccount,
    path: str,
    body: bytes,
    *,
    md5_of: bytes | None = None,
    date: float | None = None,
) -> httpx.Response:
    """A POST as the SDK builds it, its Content-MD5 that of `md5_of` (default: the body)."""
    headers = {
        "Accept": "application/json",
        "Content-MD5": base64.b64encode(
            hashlib.md5(md5_of if md5_of is not None else body).digest()
        ).decode(),
        "Content-Type": "application/octet-stream",
        "Date": formatdate(date if date is not None else time.time(), usegmt=True),
        "x-acs-version": "2018-05-09",
        "x-acs-region-id": REGION,
        "x-acs-signature-method": "HMAC-SHA1",
        "x-acs-signature-version": "1.0",
    }
    queries = {"RegionId": REGION}
    text = compose_string_to_sign("POST", dict(queries), path, headers)
    signature = sha_hmac1.get_sign_string(text, account.secret)
    headers["Authorization"] = f"acs {account.access_key_id}:{signature}"
    return http.post(path, params=queries, content=body, headers=headers)


def gateway_error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert list(body) == ["Code", "Message", "RequestId"], body
    return response.status_code, body["Code"]
