"""The entity store: typed SQLAlchemy 2 models.

Public ids are 32 lowercase hex characters (the seed's shape) and live beside integer primary keys,
which keep joins, foreign keys and the vector index compact. Every entity row carries its
`account_id`: accounts are tenants, and every query the services run is scoped by it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from app.domain import TaskStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def new_public_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


MAX_KEY_CHARS = 128  # the longest client-chosen id any vendor documents is 64

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for big tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    api_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    name: Mapped[str] = mapped_column(String(255))
    rate_limit: Mapped[str] = mapped_column(String(32))
    quota_groups: Mapped[int] = mapped_column(Integer)
    quota_persons: Mapped[int] = mapped_column(Integer)
    quota_facesets: Mapped[int] = mapped_column(Integer)
    quota_persons_per_group: Mapped[int] = mapped_column(Integer)
    quota_faces_per_person: Mapped[int] = mapped_column(Integer)
    quota_faces_per_faceset: Mapped[int] = mapped_column(Integer)
    # None means every endpoint; otherwise a list of paths such as ["/info/api", "/face/detection"].
    allowed_endpoints: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Credential(Base):
    """One way into an account through one dialect: SenseTime api_id/api_secret, Tencent
    SecretId/SecretKey, Huawei AK/SK, Alibaba AccessKeyId/AccessKeySecret.

    A secret the client sends as is (SenseTime) is kept as a salted hash. A signing key (the
    HMAC dialects) must be known to recompute signatures, so it is kept sealed: AES-256-GCM
    under the server key (`app.services.credentials`), bound to its dialect and key id.
    """

    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    dialect: Mapped[str] = mapped_column(String(16))
    key_id: Mapped[str] = mapped_column(String(128))
    secret_salt: Mapped[str | None] = mapped_column(String(32), nullable=True)
    secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # What else the dialect names a caller by, e.g. {"app_id": "1251..."} or {"project_id": ...}
    attributes: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("dialect", "key_id", name="uq_credentials_dialect_key"),)


class RateWindow(Base):
    """Calls counted per account and fixed window, shared by every worker through the database."""

    __tablename__ = "rate_windows"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, default=0)


class AuthFailureWindow(Base):
    """Failed authentications per key ("address:<ip>" or "api_id:<id>") and fixed window.

    Keyed by text, not by account: unknown api_ids are throttled exactly like known ones.
    """

    __tablename__ = "auth_failure_windows"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)


class SignatureUse(Base):
    """A signature seen once, kept until it expires: a second use is a replay.

    `key` is a hash of the signature (any length and byte fits); `expires_at` is in epoch
    seconds, past which the signature is refused as stale anyway and the row can go.
    """

    __tablename__ = "signature_uses"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class Image(Base):
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    user_data: Mapped[str | None] = mapped_column(Text, nullable=True)
    exif_orientation: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Only kept when the operator turns FACESRV_KEEP_IMAGES on (to re-embed after a model change).
    data: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The url it was downloaded from, when it was (Alibaba shows a face's url).
    source_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class MemberHolder:
    """What persons, groups and facesets share: `app.services.membership` treats them alike.

    `key` is an id the client chose (Tencent and Alibaba clients name their persons and groups,
    Huawei clients their face sets), unique per account and kind, beside the server's public id,
    so every door finds the one row by the id it uses.
    """

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str | None] = mapped_column(String(MAX_KEY_CHARS), nullable=True)
    name: Mapped[str] = mapped_column(Text)
    user_data: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @declared_attr.directive
    def __table_args__(cls) -> tuple:  # noqa: N805 - SQLAlchemy calls it on the class
        return (Index(f"uq_{cls.__tablename__}_account_key", "account_id", "key", unique=True),)


class Person(MemberHolder, Base):
    __tablename__ = "persons"


class Face(Base):
    __tablename__ = "faces"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    image_id: Mapped[int | None] = mapped_column(
        ForeignKey("images.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # A face belongs to at most one person, so the membership is a column.
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("persons.id", ondelete="SET NULL"), nullable=True, index=True
    )
    rect_left: Mapped[int] = mapped_column(Integer)
    rect_top: Mapped[int] = mapped_column(Integer)
    rect_right: Mapped[int] = mapped_column(Integer)
    rect_bottom: Mapped[int] = mapped_column(Integer)
    eye_dist: Mapped[int] = mapped_column(Integer)
    landmarks21: Mapped[list[list[float]]] = mapped_column(JSON)
    landmarks106: Mapped[list[list[float]]] = mapped_column(JSON)
    attributes: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
    emotions: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, L2-normalised
    # The recognition model that made `embedding` (`ModelSpec.identity`: file@sha256 prefix).
    # A server only compares embeddings of its own model (app.services.embeddings).
    embedding_model: Mapped[str] = mapped_column(String(128))
    # The face's embedding by another model, with that model: the next one while `facesrv
    # reembed` prepares a model change, the previous one after it switched the account, so a
    # server still running the old model keeps answering until it is restarted on the new one.
    alt_embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    alt_embedding_model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Past this a face is only valid while it belongs to a person or a faceset.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class FaceThumbnail(Base):
    """A small JPEG crop of a face, kept (unless `FACESRV_THUMBNAILS` is off) for the web
    console; a table apart so that reading faces never drags the picture along."""

    __tablename__ = "face_thumbnails"

    face_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True
    )
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)


class Group(MemberHolder, Base):
    __tablename__ = "groups"


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(
        ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Faceset(MemberHolder, Base):
    __tablename__ = "facesets"

    # A face library's (Huawei's face set's) own limit on its faces, beside the account quota,
    # and the types of the fields its faces may carry ({"age": "integer", ...}); None: none.
    capacity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    field_types: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)


class FacesetFace(Base):
    __tablename__ = "faceset_faces"

    faceset_id: Mapped[int] = mapped_column(
        ForeignKey("facesets.id", ondelete="CASCADE"), primary_key=True
    )
    face_id: Mapped[int] = mapped_column(
        ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # What the client says of the face in this library: the id of its photo in the client's
    # system, and field values typed by the library's `field_types`.
    external_image_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    external_fields: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class IndexChange(Base):
    """Append-only log of membership changes that affect matching.

    Each worker's in-memory vector indexes replay this log (per account, in `seq` order) before
    answering, so a face added by any worker is searchable everywhere as soon as the add returned.
    Writers hold their account's row lock, so within one account commit order equals `seq` order.
    """

    __tablename__ = "index_changes"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    collection: Mapped[str] = mapped_column(String(16))  # "faceset" or "group"
    collection_id: Mapped[int] = mapped_column(BigInteger)
    # 0 with op "drop" (the whole collection); with op "pruned", the last seq pruned before it.
    face_id: Mapped[int] = mapped_column(BigInteger)
    op: Mapped[str] = mapped_column(String(8))  # "add", "remove", "drop" or "pruned"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        Index("ix_index_changes_account_seq", "account_id", "seq"),
        # Pruning replaces a collection's marker: this finds it without reading the account's log.
        Index(
            "ix_index_changes_markers",
            "account_id",
            "collection",
            "collection_id",
            sqlite_where=text("op = 'pruned'"),
            postgresql_where=text("op = 'pruned'"),
        ),
    )


class StoreIdentity(Base):
    """Which store this is: one row, made with the schema (migration 0011).

    Derived copies kept outside the database (Milvus collections) carry it in their names, so
    two deployments sharing one Milvus never open each other's collections, and a copy made
    from another store (or a database restored or re-created) is never taken for this one's.
    """

    __tablename__ = "store_identity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1: one row
    uuid: Mapped[str] = mapped_column(String(32))


class Task(Base):
    """An opt-in asynchronous call; kept in the store so a restart cannot lose it."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    endpoint: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.PENDING.value, index=True)
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # The worker process running it and its last sign of life: a task whose owner went quiet
    # (killed, restarted) is marked failed instead of staying "processing" forever.
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
