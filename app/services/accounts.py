"""Accounts: creation, the write lock, quotas and their usage.

An account is a tenant; how clients get in is its credentials (`app.services.credentials`),
one per dialect. `api_id` is the account's handle for operators and logs: its first SenseTime
api_id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from app.db.models import Account, Credential, Faceset, Group, Person, new_public_id
from app.db.session import session_scope
from app.domain import Dialect
from app.services import credentials

QUOTA_NAMES = (
    "groups",
    "persons",
    "facesets",
    "persons_per_group",
    "faces_per_person",
    "faces_per_faceset",
)
HANDLE_CHARS = 32  # accounts.api_id
RATE_LIMIT_RE = re.compile(r"^(\d+)q/(\d+)s$")


@dataclass(frozen=True)
class RateLimit:
    calls: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = RATE_LIMIT_RE.match(text.strip())
        if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
            raise ValueError(f"rate limit {text!r} is not of the form 50q/10s")
        return cls(int(match.group(1)), int(match.group(2)))


def parse_quota(text: str, base: dict[str, int] | None = None) -> dict[str, int]:
    """`groups=10,persons=80` on top of `base`; unknown names or bad numbers are refused."""
    quota = dict(base or {})
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in QUOTA_NAMES or not value.strip().isdigit():
            raise ValueError(
                f"quota item {item!r}: expected NAME=NUMBER, NAME one of {QUOTA_NAMES}"
            )
        quota[name] = int(value)
    return quota


def create_account(
    session: Session,
    *,
    name: str,
    rate_limit: str,
    quota: dict[str, int],
    expires_at: datetime | None = None,
    allowed_endpoints: list[str] | None = None,
    api_id: str | None = None,
    api_secret: str | None = None,
) -> tuple[Account, str]:
    """Create an account with its SenseTime credential, generated or as given.

    Returns the account and the secret, which is never stored in clear.
    """
    RateLimit.parse(rate_limit)
    missing = set(QUOTA_NAMES) - set(quota)
    if missing:
        raise ValueError(f"quota lacks {sorted(missing)}")
    handle = api_id if api_id is not None and len(api_id) <= HANDLE_CHARS else new_public_id()
    account = Account(
        api_id=handle,
        name=name,
        rate_limit=rate_limit,
        # Stored in UTC: SQLite keeps no offset, and every reader treats stored times as UTC.
        expires_at=expires_at.astimezone(UTC) if expires_at else None,
        allowed_endpoints=allowed_endpoints,
        **{f"quota_{key}": value for key, value in quota.items()},
    )
    session.add(account)
    session.flush()
    issued = credentials.add_credential(
        session, account, Dialect.SENSETIME, api_id or handle, api_secret
    )
    return account, issued.secret


def find_account(session: Session, handle: str) -> Account | None:
    """By the account's handle, or by any of its credentials' key ids (what operators know)."""
    account = session.scalar(select(Account).where(Account.api_id == handle))
    if account is not None:
        return account
    by_key = select(Credential.account_id).where(Credential.key_id == handle)
    account_ids = set(session.scalars(by_key))
    return session.get(Account, account_ids.pop()) if len(account_ids) == 1 else None


# A no-op write to a column no key or index holds. Writing the primary key, even to itself, made
# SQLite check every table that references accounts for the account's rows: a read of all its
# faces and log rows (50 ms at a million) at the start of every write.
_accounts = Account.__table__
_LOCK_ACCOUNT = (
    update(_accounts)
    .where(_accounts.c.id == bindparam("account_id"))
    .values(disabled=_accounts.c.disabled)
)


# The write transaction this context (thread or task) holds: (account id, session).
_held_write: ContextVar[tuple[int, Session] | None] = ContextVar("held_write", default=None)


@contextmanager
def account_write(account_id: int) -> Iterator[Session]:
    """The one way into a write transaction on an account's entities.

    Its first statement locks the account row, which serialises the account's writers until
    commit: on PostgreSQL that row lock makes quota checks race-free and keeps the change log's
    commit order equal to its seq order; on SQLite it takes the database write lock before any
    read, so concurrent writers queue instead of failing with "database is locked".

    Re-entrant: inside an open write on the same account it joins that transaction, so a use
    case made of several writes (a Tencent person created with its face and groups) commits or
    rolls back as one.
    """
    held = _held_write.get()
    if held is not None:
        if held[0] != account_id:
            raise RuntimeError("a write on one account may not open a write on another")
        yield held[1]
        return
    with session_scope() as session:
        session.execute(_LOCK_ACCOUNT, {"account_id": account_id})
        token = _held_write.set((account_id, session))
        try:
            yield session
        finally:
            _held_write.reset(token)


def quota_of(account: Account) -> dict[str, int]:
    return {name: getattr(account, f"quota_{name}") for name in QUOTA_NAMES}


def usage_of(session: Session, account_id: int) -> dict[str, int]:
    def count(model: type[Group] | type[Person] | type[Faceset]) -> int:
        return (
            session.scalar(
                select(func.count()).select_from(model).where(model.account_id == account_id)
            )
            or 0
        )

    return {"groups": count(Group), "persons": count(Person), "facesets": count(Faceset)}
