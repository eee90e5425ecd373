"""Alibaba's ROA signature: `Authorization: acs <AccessKeyId>:<base64 HMAC-SHA1(secret, s)>`.

    s = METHOD \\n Accept \\n Content-MD5 \\n Content-Type \\n Date \\n
        x-acs-* headers, lower-cased and sorted, as `name:value\\n`
        path ? query sorted by name, `name=value` joined by `&`, values not URL-encoded

The check recomputes `s` from what arrived and compares in constant time; then `Date` must be
within `CLOCK_SKEW_S` (15 minutes, the gateway's window) of the server's clock, and the body's
MD5 must be its `Content-MD5` (the signature covers the header, the header covers the body).
The body is read first, under the bound on unauthenticated reads every dialect shares.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.deps import Refused, admit, unauthenticated_body
from app.api.params import Params
from app.api.routing import Operations, error_response
from app.db.models import Account
from app.dialects.alibaba.errors import GatewayError
from app.domain import Dialect
from app.services import credentials

CLOCK_SKEW_S = 900
SCHEME = "acs "


@dataclass(frozen=True)
class Caller:
    account: Account
    params: Params


def string_to_sign(request: Request) -> str:
    headers = request.headers
    fixed = [request.method.upper()] + [
        headers.get(name, "") for name in ("accept", "content-md5", "content-type", "date")
    ]
    acs = sorted((name, value) for name, value in headers.items() if name.startswith("x-acs-"))
    query = request.scope.get("query_string", b"").decode("utf-8", "replace")
    pairs = sorted(parse_qsl(query, keep_blank_values=True), key=lambda pair: pair[0])
    resource = request.scope["path"]
    if pairs:
        resource += "?" + "&".join(f"{name}={value}" for name, value in pairs)
    return "\n".join(fixed) + "\n" + "".join(f"{n}:{v}\n" for n, v in acs) + resource


def _date_in_window(request: Request) -> None:
    try:
        sent = parsedate_to_datetime(request.headers.get("date", ""))
    except (TypeError, ValueError):
        raise Refused(
            GatewayError(400, "InvalidTimeStamp.Format", "Date is not RFC 1123")
        ) from None
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    if abs((datetime.now(UTC) - sent).total_seconds()) > CLOCK_SKEW_S:
        raise Refused(GatewayError(400, "InvalidTimeStamp.Expired", "Date is out of the window"))


def check_signature(request: Request, authorization: str, body: bytes) -> Account:
    access_key, _, signature = authorization.removeprefix(SCHEME).partition(":")

    def verify(db: Session) -> Account:
        if not authorization.startswith(SCHEME) or not access_key or not signature:
            raise Refused(GatewayError(400, "IncompleteSignature", "Authorization is malformed"))
        found = credentials.opened_by(db, Dialect.ALIBABA, access_key)
        key = credentials.signing_key(found[0]) if found else None
        if found is None or key is None:
            raise Refused(GatewayError(404, "InvalidAccessKeyId.NotFound", "no such AccessKeyId"))
        text = string_to_sign(request)
        digest = hmac.new(key.encode(), text.encode(), hashlib.sha1).digest()
        if not hmac.compare_digest(base64.b64encode(digest).decode(), signature.strip()):
            # The gateway's wording: the SDK compares what follows the colon with its own
            # string to sign, and says "InvalidAccessKeySecret" when they agree.
            message = (
                "Specified signature is not matched with our calculation. "
                f"server string to sign is:{text}"
            )
            raise Refused(GatewayError(400, "SignatureDoesNotMatch", message))
        _date_in_window(request)
        declared = request.headers.get("content-md5")
        if body or declared is not None:
            actual = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324 - ROA's
            if declared is None or not hmac.compare_digest(actual, declared.strip()):
                message = "Content-MD5 is not the body's"
                raise Refused(GatewayError(400, "ContentMD5NotMatched", message))
        return found[1]

    return admit(request, access_key, verify)


ClientInfo = Annotated[
    str | None,
    Query(
        alias="clientInfo",
        description='the calling client as JSON (`{"userId", "userNick", "userType"}`; '
        "the SDK's `set_ClientInfo` spells it `ClientInfo`): accepted, signed and ignored",
    ),
]


async def authenticate(request: Request, client_info: ClientInfo = None) -> Caller:
    """`clientInfo` is declared here, where every operation has it, so that the spec lists it:
    the SDK sends it in the query string of every call (and signs it), the server keeps none."""
    del client_info
    body = await unauthenticated_body(request)
    authorization = request.headers.get("authorization", "")
    account = await run_in_threadpool(check_signature, request, authorization, body)
    return Caller(account, Params.from_query(request).with_read_body(request, body))


CallerDep = Annotated[Caller, Depends(authenticate)]

# How the OpenAPI spec describes this authentication; the name is prefixed so that it cannot
# collide with another dialect's in the one spec.
SECURITY_SCHEMES = {
    "alibaba_signature": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`acs <AccessKeyId>:<Signature>`, the Signature being base64 "
        "HMAC-SHA1(AccessKeySecret, string to sign): `METHOD\\nAccept\\nContent-MD5\\n"
        "Content-Type\\nDate\\n`, then each `x-acs-*` header lower-cased and sorted as "
        "`name:value\\n`, then the path and the query sorted by name (`?a=1&b=2`, values not "
        "URL-encoded). Every `x-acs-*` header sent is signed: the SDK sends `x-acs-version` "
        "(2018-05-09), `x-acs-signature-method: HMAC-SHA1`, `x-acs-signature-version: 1.0` and "
        "`x-acs-region-id`, the server requires none of them. `Date` (RFC "
        f"1123) must be within {CLOCK_SKEW_S // 60} minutes of the server's clock and "
        "`Content-MD5` (base64 MD5) must be the body's. `facesrv account credential add` "
        "issues the AccessKey pair.",
    },
}


def _error(description: str, *codes: str) -> dict:
    example = {"Code": codes[0], "Message": "what was wrong", "RequestId": "…"}
    return error_response(
        f"the gateway refused the request ({description}): `Code` is {', '.join(codes)}",
        example,
    )


ERROR_RESPONSES: dict[int | str, dict] = {
    200: {
        "description": 'the operation\'s answer, `{"code": 200, "requestId", "data": '
        '{"code": 200, ...}}`; or its business failure, still HTTP 200, with Green\'s `code` '
        "400 (bad request), 404 (no such person, group or face), 480 (download failed), 588 "
        "(quota exceeded), 589 (image too large), 590 (bad image format) or 592 (download "
        "timeout), `msg` saying why and `data` empty",
        "content": {
            "application/json": {
                "example": {"code": 404, "msg": "no such person", "requestId": "…", "data": {}}
            }
        },
    },
    400: _error(
        "signature, AccessKey, Date, Content-MD5 or throttling",
        *("SignatureDoesNotMatch", "IncompleteSignature", "InvalidTimeStamp.Expired"),
        *("InvalidTimeStamp.Format", "ContentMD5NotMatched", "InvalidAccessKeyId.Inactive"),
        *("Throttling.User", "RequestTimeout"),
    ),
    403: _error("the account may not call this", "Forbidden"),
    404: _error("no such AccessKeyId", "InvalidAccessKeyId.NotFound"),
    413: _error("the body is too large", "RequestEntityTooLarge"),
    500: _error("an internal failure", "InternalError"),
}


def operations(router: APIRouter) -> Operations:
    return Operations(router, "alibaba", [{"alibaba_signature": []}], ERROR_RESPONSES)
