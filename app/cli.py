"""`facesrv`: serve, manage accounts, migrate the store, install the model pack."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from sqlalchemy import func, select

from app.config import get_settings
from app.db.migrate import upgrade
from app.db.models import Account, as_utc
from app.db.session import session_scope
from app.services.accounts import RateLimit, create_account, parse_quota


def _expires(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
        )
        print(json.dumps({"api_id": account.api_id, "api_secret": secret}))
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


def cmd_account_disable(args: argparse.Namespace) -> int:
    upgrade(get_settings().database_url)
    with session_scope() as db:
        account = db.scalar(select(Account).where(Account.api_id == args.api_id))
        if account is None:
            print(f"no account {args.api_id}", file=sys.stderr)
            return 1
        account.disabled = True
    print(json.dumps({"api_id": args.api_id, "disabled": True}))
    return 0


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    upgrade(get_settings().database_url)
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


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.api.http_protocol import PROTOCOL
    from app.vision.install import check_models

    settings = get_settings()
    problems = check_models(settings.model_manifest, settings.models_dir)
    if problems:
        print("facesrv: the model pack is not ready:", *problems, sep="\n  ", file=sys.stderr)
        print("Run `facesrv models install` first.", file=sys.stderr)
        return 2
    upgrade(settings.database_url)
    ensure_first_account()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers or settings.workers,
        log_level=settings.log_level,
        http=PROTOCOL,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facesrv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server (migrates the store first)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(run=cmd_serve)

    account = commands.add_parser("account", help="manage API accounts").add_subparsers(
        dest="action", required=True
    )
    create = account.add_parser("create", help="create an account and print its credentials")
    create.add_argument("--name", required=True)
    create.add_argument("--rate-limit", type=lambda text: RateLimit.parse(text) and text)
    create.add_argument("--quota", help="e.g. groups=10,persons=80,faces_per_person=10")
    create.add_argument("--expires", type=_expires, help="ISO 8601, e.g. 2027-01-01T00:00:00+08:00")
    create.add_argument("--endpoints", type=_endpoints, help="allow only these paths, comma-joined")
    create.set_defaults(run=cmd_account_create)
    account.add_parser("list", help="list accounts").set_defaults(run=cmd_account_list)
    disable = account.add_parser("disable", help="disable an account")
    disable.add_argument("api_id")
    disable.set_defaults(run=cmd_account_disable)

    db = commands.add_parser("db", help="the entity store").add_subparsers(
        dest="action", required=True
    )
    db.add_parser("upgrade", help="apply migrations").set_defaults(run=cmd_db_upgrade)

    models = commands.add_parser("models", help="the model pack").add_subparsers(
        dest="action", required=True
    )
    models.add_parser("install", help="fetch, extract and verify the pinned models").set_defaults(
        run=cmd_models_install
    )
    models.add_parser("check", help="verify installed models").set_defaults(run=cmd_models_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"facesrv: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
