"""Schema migrations, run by `facesrv db upgrade` and on every `facesrv serve` start."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from app.config import REPO_ROOT
from app.db.session import safe_url


class DatabaseUnavailable(RuntimeError):
    """The database URL is malformed or names a database that cannot be reached."""

    def __init__(self, database_url: str, error: Exception) -> None:
        lines = str(error).strip().splitlines()
        detail = lines[0] if lines else type(error).__name__
        if isinstance(error, ArgumentError | ImportError):  # malformed, or another database's
            hint = "FACESRV_DATABASE_URL takes sqlite:///path or postgresql://user@host/db"
        else:
            hint = "is the server running, and the URL's host, port, user and database right?"
        super().__init__(f"database {safe_url(database_url)}: {detail} ({hint})")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str) -> None:
    try:
        command.upgrade(alembic_config(database_url), "head")
    except (SQLAlchemyError, ImportError) as error:  # ImportError: a driver we do not ship
        raise DatabaseUnavailable(database_url, error) from error
