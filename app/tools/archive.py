"""`facesrv export` / `facesrv import`: accounts and everything they own, in one portable archive.

Why it is built the way it is:

- **Generic over the schema.** Tables and columns are reflected from the database, not listed
  here, so a column a later migration adds (say `faces.embedding_model`) travels without a
  code change. Account data is every table linked to `accounts` through foreign keys (directly
  by `account_id`, or through a parent such as `group_members` -> `groups`), dumped in
  dependency order so the import can insert it back in that order with foreign keys on.
- **Portable.** The archive is a tar (gzip when the name ends in .gz / .tgz) holding
  `manifest.json` and one JSON Lines file per table; each row is an object keyed by column
  name, bytes are base64, times ISO 8601 UTC, JSON columns JSON. Column kinds are in the
  manifest, so a reader decodes without guessing and SQLite and PostgreSQL read each other's.
- **Versioned.** `format_version` picks the reader (`READERS`); an archive newer than this
  code is refused rather than half read.
- **Ids are kept, row ids included.** Public ids are columns and travel anyway; the Tencent,
  Alibaba and Huawei face and face-set ids are bijections of row ids (`app.services.face_ids`),
  so rows keep their primary keys and PostgreSQL's sequences are moved past them afterwards.
  Hence an import refuses any row whose primary key or unique value the target already holds.
- **Derived data stays out.** The index change log and snapshots are caches of the stored
  memberships: a worker with no snapshot and no log builds a collection's index from the store
  on its first search. Snapshot files left in the target's data folder under an imported
  collection's id are deleted, since they would describe another store. Rate and
  authentication-failure windows and replay guards are transient.
- **Secrets.** SenseTime secrets and Huawei tokens are salted hashes: they travel as they are
  and open anywhere. HMAC signing keys are sealed under the server key, which the target does
  not share, so by default they are unsealed into the archive and sealed again under the
  target's key on import: the archive then holds signing keys in the clear and is written
  mode 0600. Without secrets, the sealed blobs travel instead and open only under the same
  server key (a restore onto the same server, or one given its FACESRV_SECRET_KEY).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    UniqueConstraint,
    event,
    insert,
    select,
    text,
    tuple_,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import __version__
from app.db.models import as_utc
from app.db.session import make_engine
from app.domain import Kind
from app.index.changelog import CollectionKey
from app.services import credentials
from app.services.accounts import find_account

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNING_KEYS = "secrets/signing_keys.jsonl"
BATCH = 1000

# Tables that hold no account data worth carrying, and why.
SKIPPED = {
    "alembic_version": "the schema's own bookkeeping: the target is migrated by its own facesrv",
    "index_changes": "derived: indexes are rebuilt from the stored memberships on first search",
    "rate_windows": "transient call counts",
    "auth_failure_windows": "transient failed-authentication counts, not per account",
    "signature_uses": "transient replay guard, not per account",
    "store_identity": "which store this is: the target keeps its own (its Milvus names carry it)",
}
# What the vector backend keeps outside the store is keyed by collection kind and row id.
COLLECTIONS = {"groups": Kind.GROUP, "facesets": Kind.FACESET}


class ArchiveError(ValueError):
    """An archive that cannot be written or read as asked; the message says what to do."""


@dataclass
class ExportReport:
    path: str
    accounts: list[str]
    rows: dict[str, int]
    signing_keys: str  # "in the clear" or "sealed"
    signing_keys_in_clear: int = 0  # unsealed into the archive: it must be protected
    signing_keys_unopened: int = 0  # sealed keys the server key could not open: kept sealed


@dataclass
class ImportReport:
    accounts: list[str]
    rows: dict[str, int]
    signing_keys_resealed: int = 0
    # Sealed under another server key: they will not open here until set again.
    signing_keys_foreign: int = 0
    snapshots_removed: int = 0
    warnings: list[str] = field(default_factory=list)


# -- column kinds: how a value is written into JSON and read back -------------------------------


def column_kind(column: Column) -> str:
    """A portable name for a column's type; JSON is tested first (it is no String)."""
    kind = column.type
    for cls, name in (
        (JSON, "json"),
        (LargeBinary, "bytes"),
        (DateTime, "datetime"),
        (Date, "date"),
        (Boolean, "bool"),
        (Integer, "int"),
        (Float, "float"),
        (Numeric, "float"),
    ):
        if isinstance(kind, cls):
            return name
    return "str"


def encode(kind: str, value: Any) -> Any:  # noqa: ANN401 - any column's value
    if value is None:
        return None
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind == "datetime":
        return as_utc(value).astimezone(UTC).isoformat()
    if kind == "date":
        return value.isoformat()
    if kind == "float":
        return float(value)
    return value


def decode(kind: str, value: Any) -> Any:  # noqa: ANN401 - any column's value
    if value is None:
        return None
    if kind == "bytes":
        return base64.b64decode(value)
    if kind == "datetime":
        return as_utc(datetime.fromisoformat(value)).astimezone(UTC)
    if kind == "date":
        return date.fromisoformat(value)
    return value


# -- engines ------------------------------------------------------------------------------------


def _engine(url: str, begin: str) -> Engine:
    """An engine of its own whose transactions really begin at once.

    pysqlite defers BEGIN to the first write, so an export's reads would each see another
    moment of the store and an import's checks would not hold a lock; SQLAlchemy's recipe
    takes over BEGIN (`begin` is "BEGIN" for a read snapshot, "BEGIN IMMEDIATE" to write).
    On PostgreSQL an export reads under REPEATABLE READ: one snapshot for every table.
    """
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _manual(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql(begin)

    elif begin == "BEGIN":
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    return engine


def _reflect(connection: Connection) -> MetaData:
    metadata = MetaData()
    metadata.reflect(bind=connection)
    return metadata


def server_key_id(key: bytes) -> str:
    """Names a server key without revealing it, so an import knows whether sealed blobs open."""
    return hashlib.sha256(b"facesrv server key id\n" + key).hexdigest()[:16]


# -- export -------------------------------------------------------------------------------------


def account_scopes(metadata: MetaData, account_ids: list[int]) -> dict[str, ColumnElement[bool]]:
    """Per account-data table, in dependency order, the condition that picks the accounts' rows.

    A table belongs to accounts when one of its foreign keys leads to `accounts` or to a table
    that does; tables that lead nowhere near an account are no account's data.
    """
    scopes: dict[str, ColumnElement[bool]] = {}
    for table in metadata.sorted_tables:
        if table.name in SKIPPED:
            continue
        if table.name == "accounts":
            scopes[table.name] = table.c.id.in_(account_ids)
            continue
        # A key to `accounts` itself first, then keys that are never NULL (a row with a NULL
        # key would be lost through that parent); by column name, so the choice is stable.
        keys = sorted(
            (key for key in table.foreign_keys if key.column.table.name in scopes),
            key=lambda key: (
                key.column.table.name != "accounts",
                key.parent.nullable,
                key.parent.name,
            ),
        )
        if not keys:
            continue
        key = keys[0]
        if key.column.table.name == "accounts":
            scopes[table.name] = key.parent.in_(account_ids)
        else:
            parent_rows = select(key.column).where(scopes[key.column.table.name])
            scopes[table.name] = key.parent.in_(parent_rows.scalar_subquery())
    return scopes


def export_archive(
    path: Path | str,
    database_url: str,
    handles: Iterable[str] = (),
    *,
    with_secrets: bool = True,
    key: bytes | None = None,
) -> ExportReport:
    """Write the named accounts (api_ids or key ids; none named: every account) to `path`."""
    key = credentials.server_key() if key is None else key
    path = Path(path)
    engine = _engine(database_url, "BEGIN")
    try:
        with engine.connect() as connection, connection.begin():
            metadata = _reflect(connection)
            if "accounts" not in metadata.tables:
                raise ArchiveError("the store has no accounts table: run `facesrv db upgrade`")
            accounts = metadata.tables["accounts"]
            account_ids, api_ids = _chosen_accounts(connection, accounts, list(handles))
            scopes = account_scopes(metadata, account_ids)
            with tempfile.TemporaryDirectory(prefix="facesrv-export-") as work:
                report = _write_tables(
                    connection, metadata, scopes, Path(work), with_secrets=with_secrets, key=key
                )
                report.path, report.accounts = str(path), api_ids
                manifest = {
                    "format_version": FORMAT_VERSION,
                    "facesrv_version": __version__,
                    "schema_revision": _revision(connection, metadata),
                    "created_at": datetime.now(UTC).isoformat(),
                    "source_dialect": engine.dialect.name,
                    "accounts": api_ids,
                    "signing_keys": report.signing_keys,
                    "server_key_id": server_key_id(key),
                    "tables": [
                        {
                            "name": name,
                            "file": f"tables/{name}.jsonl",
                            "rows": report.rows[name],
                            "columns": {
                                column.name: column_kind(column)
                                for column in metadata.tables[name].columns
                            },
                        }
                        for name in scopes
                    ],
                    "skipped": {
                        name: SKIPPED.get(name, "holds no account's rows")
                        for name in metadata.tables
                        if name not in scopes
                    },
                }
                (Path(work) / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
                _pack(Path(work), path, [MANIFEST, *(t["file"] for t in manifest["tables"])])
    finally:
        engine.dispose()
    return report


def _chosen_accounts(
    connection: Connection, accounts: Table, handles: list[str]
) -> tuple[list[int], list[str]]:
    if not handles:
        rows = connection.execute(select(accounts.c.id, accounts.c.api_id).order_by(accounts.c.id))
        chosen = [(row.id, row.api_id) for row in rows]
    else:
        session = Session(bind=connection)
        chosen = []
        for handle in handles:
            account = find_account(session, handle)
            if account is None:
                raise LookupError(f"no account {handle}")
            if (account.id, account.api_id) not in chosen:
                chosen.append((account.id, account.api_id))
        session.close()
    return [row[0] for row in chosen], [row[1] for row in chosen]


def _revision(connection: Connection, metadata: MetaData) -> str | None:
    if "alembic_version" not in metadata.tables:
        return None
    return connection.scalar(text("SELECT version_num FROM alembic_version"))


def _write_tables(
    connection: Connection,
    metadata: MetaData,
    scopes: dict[str, ColumnElement[bool]],
    work: Path,
    *,
    with_secrets: bool,
    key: bytes,
) -> ExportReport:
    report = ExportReport("", [], {}, "in the clear" if with_secrets else "sealed")
    (work / "tables").mkdir()
    signing_keys: list[dict[str, Any]] = []
    for name, scope in scopes.items():
        table = metadata.tables[name]
        kinds = {column.name: column_kind(column) for column in table.columns}
        query = select(table).where(scope).order_by(*table.primary_key.columns)
        count = 0
        with (work / "tables" / f"{name}.jsonl").open("w", encoding="utf-8") as out:
            rows = connection.execution_options(yield_per=BATCH).execute(query)
            for row in rows.mappings():
                values = dict(row)
                if name == "credentials" and values.get("secret_sealed") is not None:
                    opened = _unsealed(values, key) if with_secrets else None
                    if opened is not None:
                        signing_keys.append({"id": values["id"], "signing_key": opened})
                        values["secret_sealed"] = None
                    elif with_secrets:
                        report.signing_keys_unopened += 1
                encoded = {column: encode(kinds[column], value) for column, value in values.items()}
                out.write(json.dumps(encoded, ensure_ascii=False, separators=(",", ":")) + "\n")
                count += 1
        report.rows[name] = count
    report.signing_keys_in_clear = len(signing_keys)
    if with_secrets:
        (work / "secrets").mkdir()
        lines = (json.dumps(entry) + "\n" for entry in signing_keys)
        (work / SIGNING_KEYS).write_text("".join(lines))
    return report


def _unsealed(row: dict[str, Any], key: bytes) -> str | None:
    try:
        return credentials.unseal(key, row["dialect"], row["key_id"], bytes(row["secret_sealed"]))
    except InvalidTag:  # sealed under a key this server lost: it travels sealed, as it is
        return None


def _pack(work: Path, path: Path, members: list[str]) -> None:
    """The tar, readable by its owner only (it may hold signing keys), replacing `path` whole."""
    if (work / SIGNING_KEYS).exists():
        members.append(SIGNING_KEYS)
    mode = "w:gz" if path.name.endswith((".gz", ".tgz")) else "w"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
    try:
        with os.fdopen(descriptor, "wb") as file, tarfile.open(fileobj=file, mode=mode) as tar:
            for member in members:
                tar.add(work / member, arcname=member, recursive=False)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


# -- import -------------------------------------------------------------------------------------


def import_archive(
    path: Path | str, database_url: str, *, key: bytes | None = None
) -> ImportReport:
    """Load an archive into the store at `database_url` (migrated to head by the caller)."""
    key = credentials.server_key() if key is None else key
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, OSError) as error:
        raise ArchiveError(f"{path} is not a readable facesrv archive ({error})") from error
    with tar:
        manifest = _manifest(tar, path)
        version = manifest.get("format_version")
        reader = READERS.get(version) if isinstance(version, int) else None
        if reader is None:
            raise ArchiveError(
                f"{path} has archive format_version {version!r}; this facesrv {__version__} "
                f"reads versions {sorted(READERS)}: import it with a newer facesrv"
            )
        return reader(tar, manifest, database_url, key)


def _manifest(tar: tarfile.TarFile, path: Path | str) -> dict[str, Any]:
    try:
        member = tar.extractfile(MANIFEST)
        manifest = json.load(member) if member is not None else None
    except (KeyError, ValueError) as error:
        raise ArchiveError(f"{path} holds no readable {MANIFEST}: not a facesrv archive") from error
    if not isinstance(manifest, dict):
        raise ArchiveError(f"{path}: {MANIFEST} is not an object: not a facesrv archive")
    return manifest


def _lines(tar: tarfile.TarFile, name: str) -> Iterator[dict[str, Any]]:
    member = tar.extractfile(name)
    if member is None:
        raise ArchiveError(f"the archive lacks {name}")
    for line in io.TextIOWrapper(member, encoding="utf-8"):
        if line.strip():
            yield json.loads(line)


def _import_v1(
    tar: tarfile.TarFile, manifest: dict[str, Any], database_url: str, key: bytes
) -> ImportReport:
    tables: list[dict[str, Any]] = manifest["tables"]
    report = ImportReport(list(manifest.get("accounts", [])), {})
    signing_keys: dict[int, str] = {}
    if manifest.get("signing_keys") == "in the clear":
        signing_keys = {entry["id"]: entry["signing_key"] for entry in _lines(tar, SIGNING_KEYS)}
    foreign_key = manifest.get("server_key_id") != server_key_id(key)
    collections: list[tuple[int, CollectionKey]] = []
    engine = _engine(database_url, "BEGIN IMMEDIATE")
    try:
        with engine.connect() as connection, connection.begin():
            metadata = _reflect(connection)
            _check_schema(metadata, tables, manifest.get("schema_revision"))
            for entry in tables:
                table = metadata.tables[entry["name"]]
                kinds: dict[str, str] = entry["columns"]

                def prepared(row: dict[str, Any], kinds: dict[str, str] = kinds) -> dict:
                    return {name: decode(kinds[name], value) for name, value in row.items()}

                count = 0
                for batch in _batches(map(prepared, _lines(tar, entry["file"]))):
                    if table.name == "credentials":
                        _seal_again(batch, signing_keys, key, foreign_key, report)
                    if table.name in COLLECTIONS:
                        collections += [
                            (row["account_id"], CollectionKey(COLLECTIONS[table.name], row["id"]))
                            for row in batch
                        ]
                    _refuse_taken(connection, table, batch)
                    connection.execute(insert(table), batch)
                    count += len(batch)
                report.rows[table.name] = count
            _advance_sequences(connection, [metadata.tables[t["name"]] for t in tables])
    except IntegrityError as error:  # a writer got there between the checks and the insert
        detail = str(error.orig).strip().splitlines()[0]
        raise ArchiveError(
            f"the store refused the archive's rows, nothing imported: {detail}"
        ) from error
    finally:
        engine.dispose()
    report.snapshots_removed = _remove_snapshots(collections)
    if report.signing_keys_foreign:
        report.warnings.append(
            f"{report.signing_keys_foreign} signing keys were sealed under another server key "
            "and will not open here: give this server that FACESRV_SECRET_KEY, or set them "
            "again with `facesrv account rotate-secret`"
        )
    return report


READERS: dict[int, Callable[[tarfile.TarFile, dict[str, Any], str, bytes], ImportReport]] = {
    1: _import_v1,
}


def _check_schema(metadata: MetaData, tables: list[dict[str, Any]], revision: str | None) -> None:
    """Every table and column of the archive must exist here; missing ones take defaults."""
    for entry in tables:
        table = metadata.tables.get(entry["name"])
        missing = [entry["name"]] if table is None else [
            f"{entry['name']}.{name}" for name in entry["columns"] if name not in table.c
        ]  # fmt: skip
        if missing:
            raise ArchiveError(
                f"the archive (schema {revision}) has {', '.join(missing)}, which this store "
                "lacks: upgrade facesrv and run `facesrv db upgrade`, then import again"
            )


def _batches(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _seal_again(
    batch: list[dict[str, Any]],
    signing_keys: dict[int, str],
    key: bytes,
    foreign_key: bool,
    report: ImportReport,
) -> None:
    for row in batch:
        secret = signing_keys.get(row["id"])
        if secret is not None:
            row["secret_sealed"] = credentials.seal(key, row["dialect"], row["key_id"], secret)
            report.signing_keys_resealed += 1
        elif row.get("secret_sealed") is not None and foreign_key:
            report.signing_keys_foreign += 1


def _unique_keys(table: Table) -> list[tuple[str, ...]]:
    """The table's unique column sets, its own names (api_id, public_id) before its row id."""
    keys: list[tuple[str, ...]] = []
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            keys.append(tuple(column.name for column in constraint.columns))
    keys += [
        tuple(column.name for column in index.columns) for index in table.indexes if index.unique
    ]
    keys.append(tuple(column.name for column in table.primary_key.columns))
    return list(dict.fromkeys(key for key in keys if key))


def _refuse_taken(connection: Connection, table: Table, batch: list[dict[str, Any]]) -> None:
    """Refuse, naming it, the first value of the batch the store already holds under a unique
    key: importing over existing data would merge two tenants or renumber vendor ids."""
    for names in _unique_keys(table):
        values = [
            tuple(row.get(name) for name in names)
            for row in batch
            if all(row.get(name) is not None for name in names)
        ]
        if not values:
            continue
        columns = [table.c[name] for name in names]
        if len(columns) == 1:
            condition = columns[0].in_([value[0] for value in values])
        else:
            condition = tuple_(*columns).in_(values)
        taken = connection.execute(select(*columns).where(condition).limit(1)).first()
        if taken is not None:
            what = ", ".join(f"{name} {value!r}" for name, value in zip(names, taken, strict=True))
            raise ArchiveError(
                f"this store already has {table.name} with {what}, nothing imported: import "
                "into an empty store (ids are kept, vendor face ids derive from row ids)"
            )


def _advance_sequences(connection: Connection, tables: list[Table]) -> None:
    """Row ids were given, so the next generated ones must come after them."""
    quote = connection.dialect.identifier_preparer.quote
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or column_kind(pk[0]) != "int":
            continue
        top = connection.scalar(select(pk[0]).order_by(pk[0].desc()).limit(1))
        if top is None:
            continue
        if connection.dialect.name == "postgresql":
            sequence = connection.scalar(
                text("SELECT pg_get_serial_sequence(:table, :column)"),
                {"table": quote(table.name), "column": pk[0].name},
            )
            if sequence is not None:
                connection.execute(
                    text(
                        f"SELECT setval(:seq, GREATEST(:top, (SELECT last_value FROM {sequence})))"
                    ),
                    {"seq": sequence, "top": top},
                )
        elif connection.dialect.name == "sqlite" and _has_sqlite_sequence(connection):
            connection.execute(
                text("UPDATE sqlite_sequence SET seq = MAX(seq, :top) WHERE name = :table"),
                {"top": top, "table": table.name},
            )


def _has_sqlite_sequence(connection: Connection) -> bool:
    found = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    return connection.scalar(text(found)) is not None


def _remove_snapshots(collections: list[tuple[int, CollectionKey]]) -> int:
    """Snapshot files under an imported collection's id describe another store: they go, and
    the collection's index is built from the store on its first search."""
    from app.index.registry import get_registry

    registry = get_registry()
    return sum(registry.discard(account_id, key) for account_id, key in collections)
