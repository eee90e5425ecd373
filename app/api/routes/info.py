"""/info/* endpoints about the account itself."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import CallerDep
from app.db.models import as_utc
from app.db.session import session_scope
from app.services.accounts import quota_of, usage_of

router = APIRouter()


@router.api_route("/info/api", methods=["GET", "POST"])
def info_api(caller: CallerDep) -> dict:
    account = caller.account
    body: dict = {"status": "OK", "rate_limit": account.rate_limit}
    if account.expires_at is not None:
        body["expiration_date"] = as_utc(account.expires_at).isoformat(timespec="seconds")
    with session_scope() as db:
        usage = usage_of(db, account.id)
    body["quota"] = quota_of(account)
    body["usage"] = usage
    return body
