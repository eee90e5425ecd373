"""Migrations from an empty database on SQLite and PostgreSQL, matching the models exactly."""

from __future__ import annotations

import uuid
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from app.db.migrate import upgrade
from app.db.models import Base
from tests.conftest import POSTGRES_URL


def _assert_migrated(url: str) -> None:
    upgrade(url)
    upgrade(url)  # a second run is a no-op
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert set(Base.metadata.tables) <= set(inspect(connection).get_table_names())
            context = MigrationContext.configure(connection)
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_sqlite_from_empty(tmp_path: Path) -> None:
    _assert_migrated(f"sqlite:///{tmp_path / 'fresh.db'}")


def test_postgresql_from_empty(postgresql_url: str) -> None:
    admin = create_engine(make_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    name = f"facesrv_migrate_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        _assert_migrated(make_url(POSTGRES_URL).set(database=name).render_as_string(False))
    finally:
        from app.db.session import engine_for

        engine_for.cache_clear()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
