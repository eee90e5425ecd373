"""Accounts: creation, credentials, quotas and their usage.

API secrets are 128-bit random values, so a salted SHA-256 is as strong as a slow password hash
against offline guessing while costing microseconds per request; comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from app.db.models import Account, Faceset, Group, Person
from app.db.session import session_scope

QUOTA_NAMES = (
    "groups",
    "persons",
    "facesets",
    "persons_per_group",
    "faces_per_person",
    "faces_per_faceset",
)
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


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def secret_matches(account: Account, secret: str) -> bool:
    return hmac.compare_digest(hash_secret(account.secret_salt, secret), account.secret_hash)


def create_account(
    session: Session,
    *,
    name: str,
    rate_limit: str,
    quota: dict[str, int],
    expires_at: datetime | None = None,
    allowed_endpoints: list[str] | None = None,
) -> tuple[Account, str]:
    """Create an account; returns it with its secret, which is never stored in clear."""
    RateLimit.parse(rate_limit)
    missing = set(QUOTA_NAMES) - set(quota)
    if missing:
        raise ValueError(f"quota lacks {sorted(missing)}")
    secret = secrets.token_hex(16)
    salt = secrets.token_hex(16)
    account = Account(
        name=name,
        secret_salt=salt,
        secret_hash=hash_secret(salt, secret),
        rate_limit=rate_limit,
        # Stored in UTC: SQLite keeps no offset, and every reader treats stored times as UTC.
        expires_at=expires_at.astimezone(UTC) if expires_at else None,
        allowed_endpoints=allowed_endpoints,
        **{f"quota_{key}": value for key, value in quota.items()},
    )
    session.add(account)
    session.flush()
    return account, secret


# Built once: every request runs it, and building a statement costs more than running it.
_ACCOUNT_BY_API_ID = select(Account).where(Account.api_id == bindparam("api_id"))


def find_account(session: Session, api_id: str) -> Account | None:
    return session.scalar(_ACCOUNT_BY_API_ID, {"api_id": api_id})


# A no-op write to a column no key or index holds. Writing the primary key, even to itself, made
# SQLite check every table that references accounts for the account's rows: a read of all its
# faces and log rows (50 ms at a million) at the start of every write.
_accounts = Account.__table__
_LOCK_ACCOUNT = (
    update(_accounts)
    .where(_accounts.c.id == bindparam("account_id"))
    .values(disabled=_accounts.c.disabled)
)


@contextmanager
def account_write(account_id: int) -> Iterator[Session]:
    """The one way into a write transaction on an account's entities.

    Its first statement locks the account row, which serialises the account's writers until
    commit: on PostgreSQL that row lock makes quota checks race-free and keeps the change log's
    commit order equal to its seq order; on SQLite it takes the database write lock before any
    read, so concurrent writers queue instead of failing with "database is locked".
    """
    with session_scope() as session:
        session.execute(_LOCK_ACCOUNT, {"account_id": account_id})
        yield session


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
