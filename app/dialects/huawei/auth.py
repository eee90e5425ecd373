"""Huawei authentication: the API gateway's AK/SK signature, or an `X-Auth-Token`.

The SDK always signs (`Authorization: SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<h1;h2>,
Signature=<hex>`, `X-Sdk-Date: 20261121T131709Z`). The check recomputes the gateway's
canonical request from what arrived:

    METHOD \\n /path/with/trailing/slash/ \\n sorted, encoded query \\n
    name:value of each signed header \\n signed header names \\n SHA-256 of the body

(the body hash is `X-Sdk-Content-Sha256` when the client sent one: the SDK sends
`UNSIGNED-PAYLOAD` for multipart bodies, which the gateway accepts, so an uploaded file is not
covered by the signature), signs `SDK-HMAC-SHA256 \\n date \\n SHA-256(canonical request)` with
the SK and compares in constant time. `X-Sdk-Date` may differ from the server's clock by at most
`CLOCK_SKEW_S` (15 minutes, the gateway's window). The `project_id` in the path (and
`X-Project-Id`, when sent) must be the credential's.

`X-Auth-Token` is for curl-style callers: an operator issues one with
`facesrv account credential add API_ID --dialect huawei-token --attribute project_id=...`; the
token is printed once and stored hashed, like a SenseTime secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Depends, Path, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.deps import Refused, admit, unauthenticated_body
from app.api.params import Params
from app.api.routing import Operations, error_response
from app.db.models import Account
from app.dialects.huawei.errors import HuaweiError, gateway_refusal
from app.domain import Dialect
from app.services import credentials

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
CLOCK_SKEW_S = 900
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()
_AUTHORIZATION_RE = re.compile(
    rf"{ALGORITHM} Access=([^,\s]+), SignedHeaders=([^,\s]+), Signature=([0-9a-fA-F]+)"
)
IMAGE_FIELD = "image_file"


@dataclass(frozen=True)
class Caller:
    account: Account
    params: Params


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_request(request: Request, signed_headers: list[str], body: bytes) -> str | None:
    """The gateway's canonical request of what arrived; None if a signed header is missing."""
    segments = [_encode(segment) for segment in request.scope["path"].split("/")]
    path = "/".join(segments)
    path = path if path.endswith("/") else path + "/"
    query = request.scope.get("query_string", b"").decode("utf-8", "replace")
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    canonical_query = "&".join(f"{_encode(key)}={_encode(value)}" for key, value in pairs)
    lines = []
    for name in signed_headers:
        value = request.headers.get(name)
        if value is None:
            return None
        lines.append(f"{name}:{value.strip()}")
    payload = request.headers.get("x-sdk-content-sha256") or (
        hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_SHA256
    )
    return (
        "\n".join(
            [request.method.upper(), path, canonical_query, *lines, "", ";".join(signed_headers)]
        )
        + f"\n{payload}"
    )


def _signed_date(request: Request) -> datetime:
    try:
        signed = datetime.strptime(request.headers.get("x-sdk-date", ""), DATE_FORMAT)
    except ValueError:
        raise Refused(gateway_refusal("X-Sdk-Date is missing or malformed")) from None
    signed = signed.replace(tzinfo=UTC)
    if abs((datetime.now(UTC) - signed).total_seconds()) > CLOCK_SKEW_S:
        raise Refused(gateway_refusal("the request has expired (X-Sdk-Date)"))
    return signed


def _project_matches(request: Request, attributes: dict[str, str] | None) -> bool:
    project = (attributes or {}).get("project_id")
    sent = request.path_params.get("project_id")
    header = request.headers.get("x-project-id")
    return project is not None and sent == project and header in (None, project)


def check_signature(request: Request, authorization: str, body: bytes) -> Account:
    match = _AUTHORIZATION_RE.fullmatch(authorization.strip())
    access_key = match.group(1) if match else ""

    def verify(db: Session) -> Account:
        if match is None:
            raise Refused(gateway_refusal("the Authorization header is malformed"))
        signed_headers = match.group(2).lower().split(";")
        signed_at = _signed_date(request)
        found = credentials.opened_by(db, Dialect.HUAWEI, access_key)
        key = credentials.signing_key(found[0]) if found else None
        canonical = canonical_request(request, signed_headers, body)
        if found is None or key is None or canonical is None:
            raise Refused(gateway_refusal("verify aksk signature fail"))
        text = "\n".join(
            [
                ALGORITHM,
                signed_at.strftime(DATE_FORMAT),
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        expected = hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match.group(3).lower()):
            raise Refused(gateway_refusal("verify aksk signature fail"))
        if not _project_matches(request, found[0].attributes):
            raise Refused(gateway_refusal("the project_id is not the credential's"))
        return found[1]

    return admit(request, access_key, verify)


def check_token(request: Request, token: str) -> Account:
    key_id, _, secret = token.partition(".")
    refusal = HuaweiError(403, "FRS.0002", "The authentication token is abnormal.")

    def verify(db: Session) -> Account:
        found = credentials.opened_by(db, Dialect.HUAWEI_TOKEN, key_id)
        if found is None or not credentials.secret_matches(found[0], secret):
            raise Refused(refusal)
        if not _project_matches(request, found[0].attributes):
            raise Refused(refusal)
        return found[1]

    return admit(request, key_id, verify)


ProjectId = Annotated[
    str,
    Path(description="the project the credential belongs to (its `project_id` attribute)"),
]


async def authenticate(request: Request, project_id: ProjectId) -> Caller:
    """The body is part of what the signature covers, so it is read first, under the bound on
    unauthenticated reads every dialect shares. `project_id` is declared here (every route has
    it) so that the spec lists it; `_project_matches` checks it."""
    del project_id  # checked from request.path_params, with the X-Project-Id header
    body = await unauthenticated_body(request)
    token = request.headers.get("x-auth-token")
    authorization = request.headers.get("authorization")
    if authorization:
        account = await run_in_threadpool(check_signature, request, authorization, body)
    elif token:
        account = await run_in_threadpool(check_token, request, token)
    else:
        raise gateway_refusal("no Authorization and no X-Auth-Token header")
    params = Params.from_query(request).with_read_body(request, body, IMAGE_FIELD.__eq__)
    return Caller(account, params)


CallerDep = Annotated[Caller, Depends(authenticate)]

# How the OpenAPI spec describes the two ways in (either one opens every operation); the names
# are prefixed so that they cannot collide with another dialect's in the one spec.
SECURITY_SCHEMES = {
    "huawei_token": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Auth-Token",
        "description": "a token an operator issued (`facesrv account credential add API_ID "
        "--dialect huawei-token --attribute project_id=...`), stored hashed; it opens only its "
        "project's paths (FRS.0002 otherwise)",
    },
    "huawei_signature": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": f"the API gateway's AK/SK signature, as the SDK sends it: `{ALGORITHM} "
        "Access=<AK>, SignedHeaders=<h1;h2>, Signature=<hex>` with an `X-Sdk-Date: "
        f"YYYYMMDDTHHMMSSZ` header (at most {CLOCK_SKEW_S // 60} minutes off). The signature is "
        "the hex "
        f"HMAC-SHA256(SK, `{ALGORITHM}\\n<X-Sdk-Date>\\nhex SHA-256(canonical request)`), the "
        "canonical request being the method, the path with a trailing slash, the sorted "
        "encoded query, each signed header `name:value`, the signed header names and the "
        "body's SHA-256 (or `X-Sdk-Content-Sha256`, e.g. `UNSIGNED-PAYLOAD` for multipart). "
        "APIG.0301 when it does not verify.",
    },
}


def _error(description: str, *codes: str) -> dict:
    example = {"error_code": codes[0], "error_msg": "what was wrong"}
    return error_response(
        f"{description}: `error_code` is {', '.join(codes)}",
        example,
    )


ERROR_RESPONSES: dict[int | str, dict] = {
    400: _error(
        "a wrong request, image, face set or face",
        *("FRS.0011", "FRS.0012", "FRS.0013", "FRS.0014", "FRS.0015", "FRS.0016", "FRS.0017"),
        *("FRS.0020", "FRS.0301", "FRS.0302", "FRS.0304", "FRS.0402", "FRS.0403", "FRS.0404"),
    ),
    401: _error("the AK/SK signature is missing or does not verify (the gateway's)", "APIG.0301"),
    403: _error("the token is refused, or the account disabled", "FRS.0002", "FRS.0202"),
    429: _error("over the rate limit (the gateway's)", "APIG.0308"),
    500: _error("an internal failure", "FRS.0018"),
}


def operations(router: APIRouter) -> Operations:
    either = [{"huawei_token": []}, {"huawei_signature": []}]
    return Operations(router, "huawei", either, ERROR_RESPONSES)
