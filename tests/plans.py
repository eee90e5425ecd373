"""Query plans of the statements the app runs, on either database.

Background jobs run beside requests and partly under their write lock: a statement of theirs
that reads a whole table is a stall that grows with the store. Tests capture what a job ran
and ask the database how it would read each statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event


@contextmanager
def statements_on(engine: Engine, table: str) -> Iterator[list[tuple[str, Any]]]:
    """Collect the SELECT and DELETE statements that name `table`, with their parameters."""
    statements: list[tuple[str, Any]] = []

    def capture(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        if table in statement and statement.lstrip().startswith(("SELECT", "DELETE")):
            statements.append((statement, parameters[0] if many else parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def query_plans(engine: Engine, statements: list[tuple[str, Any]]) -> list[str]:
    """Each statement's plan as one line. PostgreSQL is told to avoid sequential scans, so a
    full read shows up as one even on the tiny tables of a test."""
    sqlite = engine.dialect.name == "sqlite"
    explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
    with engine.connect() as connection:
        if not sqlite:
            connection.exec_driver_sql("SET enable_seqscan = off")
        return [
            " ".join(str(row[-1]) for row in connection.exec_driver_sql(explain + sql, parameters))
            for sql, parameters in statements
        ]


def reads_whole(table: str, plan: str) -> bool:
    return f"SCAN {table}" in plan or f"Seq Scan on {table}" in plan
