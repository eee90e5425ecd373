"""Tencent's signature: `Authorization: base64(HMAC-SHA1(SecretKey, plain) + plain)`.

`plain` is `a=<AppId>&b=<bucket>&k=<SecretId>&e=<expiry>&t=<now>&r=<random>&f=` from the Python
SDK and `a=<AppId>&k=<SecretId>&e=<now+100>&t=<now>&r=<random>&u=0&f=` from the Node SDK: the
fields are read by name, so both (and any order) are accepted. The check, in order:

    4  no Authorization header          5  not base64, or no a/k/e/t in the plain text
    10 AppId of no credential           11 SecretId of no credential
    12 SecretId of another AppId        14 HMAC differs (constant-time compare)
    9  expired: now > e + skew, or signed in the future: t > now + skew
    13 replay: this very signature was accepted before
    6  the body's `appid` (or `bucket`) is not the signature's

`CLOCK_SKEW_S` (300 s, Tencent Cloud API 3.0's own allowance) absorbs clocks that disagree; the
Python SDK signs for 30 s, the Node SDK for 100 s. Every signature is accepted once: the
signature does not cover the body, so a captured one would otherwise open any request until it
expires. Both official SDKs sign every call afresh; a client that reuses one signature (the
vendor called them "multi-use") gets code 13 from its second call.

Failures count towards the failed-authentication throttle (app.api.deps.admit) per client
address and SecretId, like every dialect's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.deps import Refused, admit, get_limiter
from app.api.params import Params
from app.api.routing import Operations, error_response
from app.config import get_settings
from app.db.models import Account
from app.dialects.tencent.errors import SIGNATURE_CODES, Code, TencentError, http_status
from app.domain import Dialect
from app.services import credentials

CLOCK_SKEW_S = 300
DIGEST_BYTES = 20  # SHA-1
MAX_AUTHORIZATION_CHARS = 4096
# Multipart parts that carry image bytes; every other part is text, whatever its filename.
IMAGE_FIELDS = frozenset({"image", "imageA", "imageB"})


def is_image_field(name: str) -> bool:
    return name in IMAGE_FIELDS or name.startswith("images[")


@dataclass(frozen=True)
class Signature:
    digest: bytes
    plain: bytes
    app_id: str
    secret_id: str
    bucket: str | None
    expires_at: int
    signed_at: int


def parse_signature(header: str | None) -> Signature:
    if not header or not header.strip():
        raise TencentError(Code.SIGNATURE_EMPTY, "the Authorization header is empty")
    if len(header) > MAX_AUTHORIZATION_CHARS:
        raise TencentError(Code.SIGNATURE_MALFORMED, "the signature is too long")
    try:
        raw = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise TencentError(Code.SIGNATURE_MALFORMED, "the signature is not base64") from None
    digest, plain = raw[:DIGEST_BYTES], raw[DIGEST_BYTES:]
    try:
        fields = dict(parse_qsl(plain.decode("ascii"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise TencentError(Code.SIGNATURE_MALFORMED, "the signed text is not ASCII") from None
    app_id, secret_id = fields.get("a", ""), fields.get("k", "")
    expires, signed = fields.get("e", ""), fields.get("t", "")
    if len(digest) < DIGEST_BYTES or not app_id or not secret_id:
        raise TencentError(Code.SIGNATURE_MALFORMED, "the signature lacks a, k, e or t")
    if not (expires.isdigit() and signed.isdigit() and len(expires) < 12 and len(signed) < 12):
        raise TencentError(Code.SIGNATURE_MALFORMED, "the signature's e and t must be times")
    return Signature(digest, plain, app_id, secret_id, fields.get("b"), int(expires), int(signed))


def _refused(code: Code, message: str) -> Refused:
    return Refused(TencentError(code, message))


def check_signature(request: Request, signature: Signature) -> Account:
    def verify(db: Session) -> Account:
        found = credentials.opened_by(db, Dialect.TENCENT, signature.secret_id)
        if found is None:
            known_app = credentials.credentials_with(Dialect.TENCENT, "app_id", signature.app_id)
            if db.scalar(known_app.limit(1)) is None:
                raise _refused(Code.APPID_UNKNOWN, "no such AppId")
            raise _refused(Code.SECRETID_UNKNOWN, "no such SecretId")
        credential, account = found
        if (credential.attributes or {}).get("app_id") != signature.app_id:
            raise _refused(Code.APPID_SECRETID_MISMATCH, "the SecretId is not of this AppId")
        key = credentials.signing_key(credential)
        expected = hmac.new((key or "").encode(), signature.plain, hashlib.sha1).digest()
        if key is None or not hmac.compare_digest(expected, signature.digest):
            raise _refused(Code.SIGNATURE_INVALID, "signature mismatch")
        now = int(time.time())
        if now > signature.expires_at + CLOCK_SKEW_S:
            raise _refused(Code.SIGNATURE_EXPIRED, "the signature has expired")
        if signature.signed_at > now + CLOCK_SKEW_S:
            raise _refused(Code.SIGNATURE_EXPIRED, "the signature is dated in the future")
        if not get_limiter().first_use(
            db, signature.digest + signature.plain, signature.expires_at + CLOCK_SKEW_S
        ):
            raise _refused(Code.REPLAY, "this signature was used before")
        return account

    return admit(request, signature.secret_id, verify)


@dataclass(frozen=True)
class Caller:
    account: Account
    params: Params


async def authenticate(request: Request) -> Caller:
    """The signature is a header: checked before the body is read."""
    signature = parse_signature(request.headers.get("authorization"))
    account = await run_in_threadpool(check_signature, request, signature)
    params = await Params.from_query(request).with_body(
        request, get_settings().body_timeout_s, image_field=is_image_field
    )
    app_id = params.text("appid")
    if app_id is not None and app_id.strip() != signature.app_id:
        raise TencentError(Code.SIGNATURE_TARGET_MISMATCH, "appid is not the signature's AppId")
    bucket = params.text("bucket")
    if bucket is not None and signature.bucket is not None and bucket != signature.bucket:
        raise TencentError(Code.SIGNATURE_TARGET_MISMATCH, "bucket is not the signature's")
    return Caller(account, params)


CallerDep = Annotated[Caller, Depends(authenticate)]

# How the OpenAPI spec describes this authentication; the name is prefixed so that it cannot
# collide with another dialect's in the one spec.
SECURITY_SCHEMES = {
    "tencent_signature": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "Tencent Youtu signature, made afresh for every call: "
        "`base64(HMAC-SHA1(SecretKey, plain) + plain)`, `plain` being "
        "`a=<AppId>&b=<bucket>&k=<SecretId>&e=<expiry>&t=<now>&r=<random>&f=` (Python SDK) or "
        "`a=<AppId>&k=<SecretId>&e=<expiry>&t=<now>&r=<random>&u=0&f=` (Node SDK), fields in "
        f"any order; `e` and `t` are Unix times, allowed {CLOCK_SKEW_S} s of clock skew. Each "
        "signature is accepted once (code 13 after). The body's `appid` (and `bucket`), when "
        "sent, must be the signature's (code 6). `facesrv account credential add` issues the "
        "AppId, SecretId and SecretKey.",
    },
}


def _error(description: str, *codes: Code) -> dict:
    example = {"data": {}, "code": int(codes[0]), "message": "what was wrong"}
    listed = ", ".join(f"{int(code)} ({code.name.lower()})" for code in codes)
    return error_response(
        f"{description}: `code` is {listed}; `data` may say more (`fail_flag`, `ret_codes`)",
        example,
    )


# The seed names no HTTP status; errors.http_status chooses these. Clients read `code`.
ERROR_RESPONSES: dict[int | str, dict] = {
    400: _error(
        "a wrong parameter, image or entity, or a full limit",
        *(code for code in Code if http_status(code) == 400),
    ),
    401: _error(
        "the signature is missing, malformed, wrong, expired or replayed", *sorted(SIGNATURE_CODES)
    ),  # fmt: skip
    403: _error(
        "the account is refused or over its rate", Code.ACCOUNT_REFUSED, Code.TOO_FREQUENT
    ),  # fmt: skip
    413: _error("the body is too large", Code.BODY_TOO_LARGE),
    500: _error("an internal failure", Code.INTERNAL),
}


def operations(router: APIRouter) -> Operations:
    return Operations(router, "tencent", [{"tencent_signature": []}], ERROR_RESPONSES)
