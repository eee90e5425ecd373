"""Readiness: what must hold before this worker should be sent traffic.

Liveness (/healthz) asks nothing of anyone; readiness (/readyz) asks that the models are loaded
(FaceAnalyzer.load checked every file's sha256 against the manifest), the database answers and
its schema is at the migrations' head. Each problem is one line an operator can act on.
"""

from __future__ import annotations

from functools import lru_cache

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from app.db.migrate import alembic_config
from app.db.session import engine_for, safe_url
from app.services.detection import get_analyzer


@lru_cache(maxsize=1)
def migration_heads() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def models_problem() -> str | None:
    if get_analyzer.cache_info().currsize == 0:
        return "models not loaded yet"
    return None


def database_problem(database_url: str) -> str | None:
    """None when the database answers and its schema is current; else why not."""
    try:
        with engine_for(database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
            current = frozenset(MigrationContext.configure(connection).get_current_heads())
    except Exception as error:  # noqa: BLE001 - whatever stops it, the answer is "not ready"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        where = safe_url(database_url)
        return f"database {where} unreachable: {type(error).__name__}: {first_line}"
    heads = migration_heads()
    if current != heads:
        at = ", ".join(sorted(current)) or "no migration"
        return (
            f"database schema at {at}, migrations head at {', '.join(sorted(heads))}: "
            "run `facesrv db upgrade`"
        )
    return None


def readiness_problems(database_url: str) -> list[str]:
    return [p for p in (models_problem(), database_problem(database_url)) if p is not None]
