"""Credentials: one per dialect an account may use, and the server key that seals signing keys.

- SenseTime clients send their secret itself, so it is stored as a salted SHA-256 and compared
  in constant time: a 128-bit random secret needs no slow hash against offline guessing.
- The HMAC dialects (Tencent, Huawei, Alibaba) sign requests; checking a signature needs the
  signing key itself, so it is sealed with AES-256-GCM under the server key, with the dialect and
  key id as associated data: a sealed key copied to another row does not open.
- The server key comes from FACESRV_SECRET_KEY (base64 of 32 bytes) or, when that is unset, from
  `<data dir>/secret.key`, created on first use with mode 0600. Without it the sealed keys in
  a copy of the database are unreadable; lose it and they must be set again.

Given values are accepted (an operator moving off the cloud keeps the keys hard-coded in its
clients), as are generated ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db.models import Account, Credential
from app.domain import Dialect

KEY_FILE = "secret.key"
MAX_CREDENTIAL_CHARS = 128
# The client sends the secret itself: kept hashed.
HASHED_DIALECTS = frozenset({Dialect.SENSETIME, Dialect.HUAWEI_TOKEN})


class CredentialError(ValueError):
    """A credential that cannot be created as asked (taken, malformed)."""


@dataclass(frozen=True)
class Issued:
    """A credential as created: the only time its secret is shown."""

    dialect: Dialect
    key_id: str
    secret: str
    attributes: dict[str, str]


def _tencent_app_id() -> str:
    """A Tencent AppId looks like 1251000000: ten digits."""
    return str(1_250_000_000 + secrets.randbelow(10_000_000))


# What a dialect's credential names besides its key, generated when the operator gives none.
GENERATED_ATTRIBUTES: dict[Dialect, dict[str, Callable[[], str]]] = {
    Dialect.TENCENT: {"app_id": _tencent_app_id},
    Dialect.HUAWEI: {"project_id": lambda: secrets.token_hex(16)},  # 32 hex, as Huawei's
}
# Attributes that name a tenant: another account's credential may not carry the same value.
TENANT_ATTRIBUTES: dict[Dialect, str] = {Dialect.TENCENT: "app_id"}


def _load_key(settings_key: str | None, data_dir: Path) -> bytes:
    if settings_key:
        key = base64.urlsafe_b64decode(settings_key.encode())
        if len(key) != 32:
            raise ValueError("FACESRV_SECRET_KEY must be the base64 of 32 bytes")
        return key
    path = data_dir / KEY_FILE
    try:
        return base64.urlsafe_b64decode(path.read_bytes().strip())
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    encoded = base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256))
    try:  # O_EXCL: of two processes starting at once, one writes and both read its key
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return base64.urlsafe_b64decode(path.read_bytes().strip())
    with os.fdopen(descriptor, "wb") as file:
        file.write(encoded + b"\n")
    return base64.urlsafe_b64decode(encoded)


@lru_cache(maxsize=1)
def server_key() -> bytes:
    settings = get_settings()
    return _load_key(settings.secret_key, settings.data_dir)


def _associated(dialect: str, key_id: str) -> bytes:
    return f"{dialect}\n{key_id}".encode()


def seal(key: bytes, dialect: str, key_id: str, secret: str) -> bytes:
    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(key).encrypt(nonce, secret.encode(), _associated(dialect, key_id))


def unseal(key: bytes, dialect: str, key_id: str, sealed: bytes) -> str:
    """The signing key; `InvalidTag` with another server key or another row's blob."""
    box = AESGCM(key)
    return box.decrypt(sealed[:12], sealed[12:], _associated(dialect, key_id)).decode()


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def _checked(name: str, value: str) -> str:
    if not value or len(value) > MAX_CREDENTIAL_CHARS or not value.isascii():
        raise CredentialError(f"{name} must be 1 to {MAX_CREDENTIAL_CHARS} ASCII characters")
    if not value.isprintable() or value != value.strip():
        raise CredentialError(f"{name} must be printable, without surrounding spaces")
    return value


def _set_secret(credential: Credential, secret: str) -> None:
    if credential.dialect in HASHED_DIALECTS:
        credential.secret_salt = secrets.token_hex(16)
        credential.secret_hash = _hash(credential.secret_salt, secret)
        credential.secret_sealed = None
    else:
        credential.secret_sealed = seal(server_key(), credential.dialect, credential.key_id, secret)
        credential.secret_salt = credential.secret_hash = None


def add_credential(
    db: Session,
    account: Account,
    dialect: Dialect,
    key_id: str | None = None,
    secret: str | None = None,
    attributes: dict[str, str] | None = None,
) -> Issued:
    """A new credential, with the given key id and secret or freshly generated ones."""
    key_id = _checked("key id", key_id) if key_id is not None else secrets.token_hex(16)
    secret = _checked("secret", secret) if secret is not None else secrets.token_hex(16)
    taken = select(Credential.id).where(Credential.dialect == dialect, Credential.key_id == key_id)
    if db.scalar(taken) is not None:
        raise CredentialError(f"a {dialect} credential {key_id!r} already exists")
    attributes = {name: _checked(name, value) for name, value in (attributes or {}).items()}
    if dialect is Dialect.HUAWEI_TOKEN and "project_id" not in attributes:
        attributes["project_id"] = _huawei_project(db, account)
    for name, generate in GENERATED_ATTRIBUTES.get(dialect, {}).items():
        attributes.setdefault(name, generate())
    tenant = TENANT_ATTRIBUTES.get(dialect)
    if tenant is not None:
        owners = set(db.scalars(credentials_with(dialect, tenant, attributes[tenant])))
        if owners - {account.id}:
            raise CredentialError(f"{tenant} {attributes[tenant]!r} belongs to another account")
    credential = Credential(
        account_id=account.id, dialect=dialect.value, key_id=key_id, attributes=attributes or None
    )
    _set_secret(credential, secret)
    db.add(credential)
    db.flush()
    return Issued(dialect, key_id, secret, attributes)


def _huawei_project(db: Session, account: Account) -> str:
    """A token opens the project of the account's AK/SK credential, unless told another."""
    projects = {
        (credential.attributes or {}).get("project_id")
        for credential in of_account(db, account.id)
        if credential.dialect == Dialect.HUAWEI
    }
    if len(projects) != 1 or None in projects:
        raise CredentialError("give --attribute project_id=... (no single Huawei project to use)")
    return str(projects.pop())


def credentials_with(dialect: Dialect, name: str, value: str) -> Select[tuple[int]]:
    """The accounts whose `dialect` credentials carry attribute `name` = `value`."""
    return select(Credential.account_id).where(
        Credential.dialect == dialect, Credential.attributes[name].as_string() == value
    )


def rotate_secret(db: Session, credential: Credential, secret: str | None = None) -> str:
    """A new secret for the credential; the old one stops working at commit."""
    secret = _checked("secret", secret) if secret is not None else secrets.token_hex(16)
    _set_secret(credential, secret)
    return secret


def find(db: Session, dialect: Dialect, key_id: str) -> Credential | None:
    query = select(Credential).where(Credential.dialect == dialect, Credential.key_id == key_id)
    return db.scalar(query)


# Built once: authentication runs it on every request, one query for the credential and account.
_OPENED_BY = (
    select(Credential, Account)
    .join(Account, Account.id == Credential.account_id)
    .where(Credential.dialect == bindparam("dialect"), Credential.key_id == bindparam("key_id"))
)


def opened_by(db: Session, dialect: Dialect, key_id: str) -> tuple[Credential, Account] | None:
    """The credential with this key id and the account it opens, if any."""
    row = db.execute(_OPENED_BY, {"dialect": dialect.value, "key_id": key_id}).first()
    return None if row is None else (row[0], row[1])


def of_account(db: Session, account_id: int) -> list[Credential]:
    query = select(Credential).where(Credential.account_id == account_id)
    return list(db.scalars(query.order_by(Credential.id)))


def secret_matches(credential: Credential, secret: str) -> bool:
    """For the hashed dialects: is this the secret? Constant time in the secret."""
    if credential.secret_salt is None or credential.secret_hash is None:
        return False
    return hmac.compare_digest(_hash(credential.secret_salt, secret), credential.secret_hash)


def signing_key(credential: Credential) -> str | None:
    """For the HMAC dialects: the key to recompute signatures with; None if it cannot open."""
    if credential.secret_sealed is None:
        return None
    try:
        return unseal(server_key(), credential.dialect, credential.key_id, credential.secret_sealed)
    except InvalidTag:
        return None
