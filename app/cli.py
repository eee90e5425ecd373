"""`facesrv`: serve, manage accounts, migrate the store, install the model pack."""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import __version__
from app.config import get_settings
from app.db.migrate import DatabaseUnavailable, upgrade
from app.db.models import Account, as_utc
from app.db.session import safe_url, session_scope
from app.domain import Dialect
from app.services import credentials
from app.services.accounts import RateLimit, create_account, find_account, parse_quota


def _expires(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _attribute(text: str) -> str:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return text


def _endpoints(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def cmd_account_create(args: argparse.Namespace) -> int:
    settings = get_settings()
    upgrade(settings.database_url)
    quota = parse_quota(args.quota or "", parse_quota(settings.default_quota))
    with session_scope() as db:
        account, secret = create_account(
            db,
            name=args.name,
            rate_limit=args.rate_limit or settings.default_rate_limit,
            quota=quota,
            expires_at=args.expires,
            allowed_endpoints=args.endpoints,
            api_id=args.api_id,
            api_secret=args.api_secret,
        )
        api_id = args.api_id or account.api_id
        print(json.dumps({"api_id": api_id, "api_secret": secret}))
    return 0


def cmd_account_list(_args: argparse.Namespace) -> int:
    upgrade(get_settings().database_url)
    with session_scope() as db:
        for account in db.scalars(select(Account).order_by(Account.id)):
            print(
                json.dumps(
                    {
                        "api_id": account.api_id,
                        "name": account.name,
                        "rate_limit": account.rate_limit,
                        "expires_at": as_utc(account.expires_at).isoformat()
                        if account.expires_at
                        else None,
                        "disabled": account.disabled,
                        "allowed_endpoints": account.allowed_endpoints,
                    },
                    ensure_ascii=False,
                )
            )
    return 0


@contextmanager
def _account(handle: str) -> Iterator[tuple[Session, Account]]:
    """The account an operator names by its api_id or any credential's key id."""
    upgrade(get_settings().database_url)
    with session_scope() as db:
        account = find_account(db, handle)
        if account is None:
            raise LookupError(f"no account {handle}")
        yield db, account


def _set_disabled(handle: str, disabled: bool) -> int:
    with _account(handle) as (_db, account):
        account.disabled = disabled
        print(json.dumps({"api_id": account.api_id, "disabled": disabled}))
    return 0


def cmd_account_disable(args: argparse.Namespace) -> int:
    return _set_disabled(args.api_id, True)


def cmd_account_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args.api_id, False)


def cmd_account_delete(args: argparse.Namespace) -> int:
    """The account and everything it owns: its entities, faces, images, logs and credentials."""
    with _account(args.api_id) as (db, account):
        db.delete(account)
        print(json.dumps({"api_id": account.api_id, "deleted": True}))
    return 0


def cmd_account_rotate_secret(args: argparse.Namespace) -> int:
    dialect = Dialect(args.dialect)
    with _account(args.api_id) as (db, account):
        key_id = args.key_id or args.api_id
        credential = credentials.find(db, dialect, key_id)
        if credential is None or credential.account_id != account.id:
            raise LookupError(f"no {dialect} credential {key_id} on this account")
        secret = credentials.rotate_secret(db, credential, args.secret)
        print(json.dumps({"dialect": dialect.value, "key_id": key_id, "secret": secret}))
    return 0


def cmd_credential_add(args: argparse.Namespace) -> int:
    attributes = dict(item.split("=", 1) for item in args.attribute) or None
    with _account(args.api_id) as (db, account):
        issued = credentials.add_credential(
            db, account, Dialect(args.dialect), args.key_id, args.secret, attributes
        )
        shown = {"dialect": issued.dialect.value, "key_id": issued.key_id, "secret": issued.secret}
        if issued.dialect is Dialect.HUAWEI_TOKEN:  # what a caller sends as X-Auth-Token
            shown["token"] = f"{issued.key_id}.{issued.secret}"
        print(json.dumps({**shown, **issued.attributes}))
    return 0


def cmd_credential_list(args: argparse.Namespace) -> int:
    """Never the secrets: they are hashed or sealed, and shown once, when issued."""
    with _account(args.api_id) as (db, account):
        for credential in credentials.of_account(db, account.id):
            print(
                json.dumps(
                    {
                        "dialect": credential.dialect,
                        "key_id": credential.key_id,
                        "attributes": credential.attributes or {},
                        "created_at": as_utc(credential.created_at).isoformat(),
                    }
                )
            )
    return 0


def cmd_credential_remove(args: argparse.Namespace) -> int:
    dialect = Dialect(args.dialect)
    with _account(args.api_id) as (db, account):
        credential = credentials.find(db, dialect, args.key_id)
        if credential is None or credential.account_id != account.id:
            raise LookupError(f"no {dialect} credential {args.key_id} on this account")
        db.delete(credential)
        print(json.dumps({"dialect": dialect.value, "key_id": args.key_id, "removed": True}))
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    """Bulk enrolment (app.tools.enroll); exit 1 when some photos failed, 2 when refused."""
    from pathlib import Path

    from app.errors import ApiError
    from app.tools import enroll as bulk

    entries = bulk.read_plan(Path(args.path), args.group, args.faceset)
    try:
        target = bulk.open_target(args.account, args.url, args.api_id, args.api_secret)
        summary = bulk.enroll(
            entries,
            target,
            errors_path=Path(args.errors),
            workers=args.workers,
            single_face_only=args.single_face_only,
            limit=args.limit,
            progress=not args.quiet,
            batch=args.batch,
        )
    except bulk.QuotaRefused as error:
        print(f"facesrv: {error}\n{bulk.QUOTA_HINT}", file=sys.stderr)
        return 2
    except ApiError as error:  # --url: the server refused the credentials or cannot be reached
        print(f"facesrv: {error.status}: {error}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 1 if summary.failures else 0


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    upgrade(get_settings().database_url)
    return 0


def cmd_index_rebuild(args: argparse.Namespace) -> int:
    """Rebuild every faceset's and group's vectors from the store, in the configured backend:
    Milvus collections get a fresh generation (searches go on against the old one until it is
    ready), FAISS snapshots are rewritten. Prints one JSON line per collection, then a total."""
    from app.index.registry import rebuild_collections

    settings = get_settings()
    upgrade(settings.database_url)
    with session_scope() as db:
        if args.account:
            account = find_account(db, args.account)
            if account is None:
                print(f"facesrv: no account {args.account}", file=sys.stderr)
                return 1
            accounts = [account]
        else:
            accounts = list(db.scalars(select(Account).order_by(Account.id)))
        api_ids = {account.id: account.api_id for account in accounts}
    collections = faces = 0
    for rebuilt in rebuild_collections(list(api_ids)):
        collections += 1
        faces += rebuilt.faces
        line = {
            "api_id": api_ids[rebuilt.account_id],
            rebuilt.key.kind.value: rebuilt.public_id,
            "faces": rebuilt.faces,
            "seconds": round(rebuilt.seconds, 2),
        }
        print(json.dumps(line), flush=True)
    summary = {"backend": settings.vector_backend, "collections": collections, "faces": faces}
    print(json.dumps(summary))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Accounts to one archive (app.tools.archive); prints what went in, never a secret."""
    from app.tools.archive import export_archive

    settings = get_settings()
    upgrade(settings.database_url)
    report = export_archive(
        args.archive, settings.database_url, args.account, with_secrets=not args.without_secrets
    )
    print(json.dumps(vars(report)))
    if report.signing_keys_in_clear:
        print(
            f"facesrv: {args.archive} holds {report.signing_keys_in_clear} signing keys in the "
            "clear: protect it like the server key (or export --without-secrets)",
            file=sys.stderr,
        )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """An archive into this store, which must hold none of its ids (app.tools.archive)."""
    from app.tools.archive import import_archive

    settings = get_settings()
    upgrade(settings.database_url)
    report = import_archive(args.archive, settings.database_url)
    print(json.dumps(vars(report)))
    for warning in report.warnings:
        print(f"facesrv: {warning}", file=sys.stderr)
    return 0


def cmd_models_install(_args: argparse.Namespace) -> int:
    from app.vision.install import install_models

    settings = get_settings()
    install_models(settings.model_manifest, settings.models_dir)
    return 0


def cmd_models_check(_args: argparse.Namespace) -> int:
    from app.vision.install import check_models

    settings = get_settings()
    problems = check_models(settings.model_manifest, settings.models_dir)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def cmd_reembed(args: argparse.Namespace) -> int:
    """Recompute every face's embedding for the manifest's recognition model
    (app.services.reembed); searches keep answering, a killed run resumes where it stopped."""
    from pathlib import Path

    from app.services.reembed import Progress, Reembedder

    settings = get_settings()
    upgrade(settings.database_url)

    from tqdm import tqdm

    bar = tqdm(unit="face", desc="reembed", file=sys.stderr)

    def show(progress: Progress) -> None:
        bar.total = progress.total
        bar.update(progress.done - bar.n)

    runner = Reembedder(
        settings.model_manifest, settings.models_dir, batch_size=args.batch_size, progress=show
    )
    note = runner.report.calibration
    banner = "" if runner.report.calibration_fits else "\n" + "!" * 72 + "\n"
    print(f"{banner}facesrv reembed: target {runner.target}; {note}{banner}", file=sys.stderr)
    try:
        report = runner.run(args.account)
    finally:
        bar.close()
    report_path = Path(args.report) if args.report else settings.data_dir / "reembed-stale.jsonl"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    with report_path.open("w", encoding="utf-8") as handle:
        for stale in report.stale:
            handle.write(json.dumps(vars(stale)) + "\n")
    for stale in report.stale:
        print(
            f"reembed: face {stale.face_id} (account {stale.account}) keeps {stale.model}: "
            f"{stale.reason}",
            file=sys.stderr,
        )
    summary = {
        "model": report.target,
        "computed": report.computed,
        "switched": report.switched,
        "accounts_switched": report.accounts_switched,
        "already_on_model": report.already,
        "stale": [stale.face_id for stale in report.stale],
        "stale_report": str(report_path),
        "calibration": report.calibration,
        "nothing_to_do": report.did_nothing,
    }
    print(json.dumps(summary))
    if not report.calibration_fits:
        print(f"{banner}facesrv reembed: {note}{banner}", file=sys.stderr)
    return 0


def ensure_first_account() -> None:
    """On an empty store, create an account and say its credentials once."""
    settings = get_settings()
    with session_scope() as db:
        if db.scalar(select(func.count()).select_from(Account)):
            return
        account, secret = create_account(
            db,
            name="default",
            rate_limit=settings.default_rate_limit,
            quota=parse_quota(settings.default_quota),
        )
        print(
            "facesrv: created the first account (keep the secret, it is not shown again):\n"
            + json.dumps({"api_id": account.api_id, "api_secret": secret}),
            flush=True,
        )


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port, found before the models load (seconds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is taken (another server?): use --port or FACESRV_PORT"
                )
            return f"cannot listen on {host}:{port}: {error.strerror or error}"
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    settings = get_settings()
    host, port = args.host or settings.host, args.port or settings.port
    problem = port_problem(host, port)
    if problem:
        print(f"facesrv: {problem}", file=sys.stderr)
        return 2
    from app.vision.install import check_models

    problems = check_models(settings.model_manifest, settings.models_dir)
    if problems:
        print(
            f"facesrv: the model pack in {settings.models_dir} is not ready:",
            *problems,
            sep="\n  ",
            file=sys.stderr,
        )
        print("Run `facesrv models install` first (or set FACESRV_MODELS_DIR).", file=sys.stderr)
        return 2
    upgrade(settings.database_url)
    ensure_first_account()
    # Before anything imports prometheus_client: every worker then writes its samples to files
    # there, and /metrics reads them all (app.metrics). A fresh folder per start: no stale pids.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="facesrv-metrics-")
    from app.index.registry import share_engine

    try:
        # milvus-lite opens its folder in one process only: this one opens it and serves it on
        # loopback to every worker, which inherit the URI.
        shared = share_engine(settings)
    except RuntimeError as error:
        print(f"facesrv: {error}", file=sys.stderr)
        return 2
    if shared is not None:
        os.environ["FACESRV_MILVUS_URI"] = shared
        get_settings.cache_clear()
    import uvicorn

    from app.api.http_protocol import PROTOCOL
    from app.api.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=args.workers or settings.workers,
        log_level=settings.log_level,
        log_config=None,  # ours (configure_logging), in every worker too
        access_log=False,  # each request's line comes from app.api.middleware, redacted
        http=PROTOCOL,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="facesrv",
        description=__doc__,
        epilog="Settings come from FACESRV_* environment variables (README, Configuration).",
    )
    parser.add_argument("--version", action="version", version=f"facesrv {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the HTTP server (migrates the store first)",
        description=f"Serve every dialect on one port (store: {safe_url(settings.database_url)})",
    )
    serve.add_argument(
        "--host", help=f"address to listen on (default: FACESRV_HOST, now {settings.host})"
    )
    serve.add_argument(
        "--port", type=int, help=f"port to listen on (default: FACESRV_PORT, now {settings.port})"
    )
    serve.add_argument(
        "--workers",
        type=int,
        help=f"worker processes (default: FACESRV_WORKERS, now {settings.workers})",
    )
    serve.set_defaults(run=cmd_serve)

    enroll = commands.add_parser(
        "enroll",
        help="enrol a folder of persons' photos (or a TSV/CSV of them) as persons, resumably",
    )
    enroll.add_argument("path", help="PATH/PERSON/PHOTO.jpg folders, or a table: image, person"
                        "[, group][, faceset] (.tsv tab-, else comma-separated)")  # fmt: skip
    enroll.add_argument(
        "--account", help="in-process: the account's api_id or a key id (required without --url)"
    )
    enroll.add_argument(
        "--url", help="a running server instead, e.g. http://127.0.0.1:8000 (default: in-process)"
    )
    enroll.add_argument("--api-id", help="with --url: the SenseTime api_id (required with --url)")
    enroll.add_argument("--api-secret", help="with --url: its secret (required with --url)")
    enroll.add_argument(
        "--group", help="put every person in this group, made if missing (default: none)"
    )
    enroll.add_argument(
        "--faceset", help="put every face in this faceset, made if missing (default: none)"
    )
    enroll.add_argument("--single-face-only", action="store_true",
                        help="refuse photos with several faces (default: the largest)")  # fmt: skip
    enroll.add_argument("--errors", default="enroll-errors.tsv",
                        help="where failed photos are listed (default: %(default)s)")  # fmt: skip
    enroll.add_argument("--workers", type=int, help="threads (default: one per core)")
    enroll.add_argument(
        "--limit", type=int, help="enrol at most this many new photos this run (default: all)"
    )
    enroll.add_argument("--batch", type=int, default=16,
                        help="photos per write transaction (default: %(default)s)")  # fmt: skip
    enroll.add_argument("--quiet", action="store_true", help="no progress bar (default: shown)")
    enroll.set_defaults(run=cmd_enroll)

    account = commands.add_parser("account", help="manage API accounts").add_subparsers(
        dest="action", required=True
    )
    create = account.add_parser("create", help="create an account and print its credentials")
    create.add_argument("--name", required=True, help="a label for the operator (required)")
    create.add_argument(
        "--rate-limit",
        type=lambda text: RateLimit.parse(text) and text,
        help=f"calls per window, e.g. 50q/10s (default: {settings.default_rate_limit})",
    )
    create.add_argument(
        "--quota",
        help="limits to change, e.g. groups=10,persons=80 "
        f"(default: FACESRV_DEFAULT_QUOTA, now {settings.default_quota})",
    )
    create.add_argument(
        "--expires",
        type=_expires,
        help="ISO 8601, e.g. 2027-01-01T00:00:00+08:00 (default: never)",
    )
    create.add_argument(
        "--endpoints",
        type=_endpoints,
        help="allow only these paths, comma-joined (default: every endpoint)",
    )
    create.add_argument("--api-id", help="keep a client's existing api_id (default: generated)")
    create.add_argument("--api-secret", help="keep a client's existing secret (default: generated)")
    create.set_defaults(run=cmd_account_create)
    account.add_parser("list", help="list accounts").set_defaults(run=cmd_account_list)
    for name, run, text in (
        ("disable", cmd_account_disable, "refuse every credential of an account"),
        ("enable", cmd_account_enable, "let a disabled account in again"),
        ("delete", cmd_account_delete, "delete an account and everything it owns"),
    ):
        command = account.add_parser(name, help=text)
        command.add_argument("api_id", help="the account's api_id, or any of its key ids")
        command.set_defaults(run=run)
    dialects = [dialect.value for dialect in Dialect]
    rotate = account.add_parser("rotate-secret", help="a new secret for one credential")
    rotate.add_argument("api_id", help="the account's api_id, or any of its key ids")
    rotate.add_argument(
        "--dialect",
        choices=dialects,
        default=Dialect.SENSETIME.value,
        help="whose credential (default: %(default)s)",
    )
    rotate.add_argument("--key-id", help="default: the api_id given")
    rotate.add_argument("--secret", help="the new secret (default: generated)")
    rotate.set_defaults(run=cmd_account_rotate_secret)
    credential = account.add_parser("credential", help="an account's credentials per dialect")
    credential_actions = credential.add_subparsers(dest="credential_action", required=True)
    add = credential_actions.add_parser("add", help="add a credential, given or generated")
    add.add_argument("api_id", help="the account's api_id, or any of its key ids")
    add.add_argument("--dialect", choices=dialects, required=True, help="the door it opens")
    add.add_argument("--key-id", help="SecretId, AK or AccessKeyId (default: generated)")
    add.add_argument("--secret", help="SecretKey, SK or AccessKeySecret (default: generated)")
    add.add_argument(
        "--attribute",
        action="append",
        default=[],
        type=_attribute,
        help="NAME=VALUE, repeatable, e.g. app_id=1251000000 (default: generated where needed)",
    )
    add.set_defaults(run=cmd_credential_add)
    listing = credential_actions.add_parser("list", help="list credentials (never secrets)")
    listing.add_argument("api_id", help="the account's api_id, or any of its key ids")
    listing.set_defaults(run=cmd_credential_list)
    remove = credential_actions.add_parser("remove", help="remove one credential")
    remove.add_argument("api_id", help="the account's api_id, or any of its key ids")
    remove.add_argument("--dialect", choices=dialects, required=True, help="the door it opens")
    remove.add_argument("--key-id", required=True, help="the credential's key id")
    remove.set_defaults(run=cmd_credential_remove)

    db = commands.add_parser("db", help="the entity store").add_subparsers(
        dest="action", required=True
    )
    db.add_parser("upgrade", help="apply migrations").set_defaults(run=cmd_db_upgrade)

    index = commands.add_parser(
        "index", help="the vector indexes (FACESRV_VECTOR_BACKEND)"
    ).add_subparsers(dest="action", required=True)
    rebuild = index.add_parser(
        "rebuild",
        help="rebuild every faceset's and group's index from the store "
        f"(backend: FACESRV_VECTOR_BACKEND, now {settings.vector_backend})",
    )
    rebuild.add_argument("--account", help="only this api_id (or key id) (default: every account)")
    rebuild.set_defaults(run=cmd_index_rebuild)

    export = commands.add_parser(
        "export", help="write accounts and all they own to one archive (a backup)"
    )
    export.add_argument("archive", help="the archive to write (.tar, or .tar.gz to compress)")
    export.add_argument(
        "--account",
        action="append",
        default=[],
        help="an api_id (or key id) to export, repeatable (default: every account)",
    )
    export.add_argument(
        "--without-secrets",
        action="store_true",
        help="keep signing keys sealed, to open only under this server key "
        "(default: unsealed into the archive, sealed again by the import)",
    )
    export.set_defaults(run=cmd_export)
    imported = commands.add_parser("import", help="load an archive into an empty store")
    imported.add_argument("archive", help="an archive written by `facesrv export`")
    imported.set_defaults(run=cmd_import)

    models = commands.add_parser("models", help="the model pack").add_subparsers(
        dest="action", required=True
    )
    models.add_parser("install", help="fetch, extract and verify the pinned models").set_defaults(
        run=cmd_models_install
    )
    models.add_parser("check", help="verify installed models").set_defaults(run=cmd_models_check)

    reembed = commands.add_parser(
        "reembed",
        help="recompute face embeddings after the recognition model changed (resumable)",
        description="Recompute every face's embedding from its kept image for the recognition "
        "model of FACESRV_MODEL_MANIFEST, then switch each account in one transaction; old "
        "embeddings serve searches until then. Faces whose image was not kept are reported.",
    )
    reembed.add_argument("--account", help="only this account's api_id (default: every account)")
    reembed.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="images per batch and transaction (default: %(default)s)",
    )
    reembed.add_argument(
        "--report",
        help="where to list the faces left on their old model, one JSON line each "
        "(default: $FACESRV_DATA_DIR/reembed-stale.jsonl)",
    )
    reembed.set_defaults(run=cmd_reembed)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except LookupError as error:  # no such account or credential
        print(f"facesrv: {error.args[0]}", file=sys.stderr)
        return 1
    except ValueError as error:  # CredentialError too: taken or malformed
        print(f"facesrv: {error}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as error:  # one line, not a traceback
        print(f"facesrv: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
