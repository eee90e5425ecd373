"""Shared fixtures: every store-backed test runs on SQLite and on PostgreSQL.

PostgreSQL comes from FACESRV_TEST_POSTGRES_URL (default: the local server, database `test`);
each test session works in a fresh database it creates and drops. When the server cannot be
reached the PostgreSQL variants are skipped, unless FACESRV_REQUIRE_POSTGRES=1 (as in CI), which
turns that into a failure.
"""

from __future__ import annotations

import gc
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url

from app.api.deps import get_limiter
from app.api.pools import get_pools
from app.config import REPO_ROOT, get_settings
from app.db.migrate import upgrade
from app.db.models import AuthFailureWindow
from app.db.session import session_scope
from app.index.registry import get_registry
from app.services.accounts import create_account, parse_quota
from app.services.credentials import server_key
from tests.servers import Server

if TYPE_CHECKING:
    from tests.utils.milvus_server import RunningMilvus

# The research photo set (CelebA dev subset with identities, MTFL): the facesrv shared data folder,
# beside the checkout. A fresh clone has none; what needs it skips with RESEARCH_PHOTOS_MISSING
# (tests/test_model_pack_photos.py covers the main behaviours on the model pack's photos).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
RESEARCH_PHOTOS_MISSING = (
    f"research photo set not found at {SHARED_DATA}: it comes from the facesrv shared data folder "
    "(../shared/data beside the checkout, see README 'Tests'); CI always has it"
)
POSTGRES_URL = os.environ.get(
    "FACESRV_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = "redis://127.0.0.1:6379/0"  # the local Redis of the developers' guide and CI
DEFAULT_QUOTA = parse_quota(get_settings().default_quota)
# Tests keep the operator's model pack where the README's first command put it.
os.environ.setdefault("FACESRV_MODELS_DIR", str(get_settings().models_dir))


def research_photos_present(*parts: str) -> bool:
    """Whether SHARED_DATA/parts exists (the whole folder when no parts are given)."""
    return SHARED_DATA.joinpath(*parts).exists()


def require_research_photos(*parts: str) -> None:
    """Skip the running test (or fixture) with the one reason when SHARED_DATA/parts is absent.

    Call it inside tests and fixtures, never at import: a module must collect without the data.
    """
    if not research_photos_present(*parts):
        pytest.skip(RESEARCH_PHOTOS_MISSING)


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for the duration, dropped after.

    When the server cannot be reached the test skips, unless FACESRV_REQUIRE_POSTGRES=1 (as in
    CI), which turns that into a failure.
    """
    admin_url = make_url(POSTGRES_URL)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001 - any connection failure means "not reachable"
        message = f"PostgreSQL not reachable at {POSTGRES_URL}: {error}"
        if os.environ.get("FACESRV_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from app.db.session import engine_for

        engine_for(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    with fresh_postgres_database("facesrv_test") as url:
        yield url
        from app.db.session import engine_for

        engine_for.cache_clear()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'facesrv.db'}"


_migrated: set[str] = set()


@pytest.fixture(params=["sqlite", "postgresql"], scope="session")
def database_url(request: pytest.FixtureRequest) -> str:
    url = request.getfixturevalue(f"{request.param}_url")
    if url not in _migrated:
        upgrade(url)
        _migrated.add(url)
    return url


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--vector-backend",
        choices=["faiss", "milvus"],
        default=os.environ.get("FACESRV_TEST_VECTOR_BACKEND", "faiss"),
        help="FACESRV_VECTOR_BACKEND of the tests (default: FACESRV_TEST_VECTOR_BACKEND or faiss)",
    )
    parser.addoption(
        "--milvus",
        choices=["lite", "server"],
        default=os.environ.get("FACESRV_TEST_MILVUS", "lite"),
        help="where the Milvus backend's tests keep their collections: a milvus-lite folder per "
        "database, or one real Milvus server the session starts (the `milvus` package)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under --vector-backend milvus, leave out the tests of FAISS's own machinery (snapshot
    files, one index per worker); without --milvus server, those that need a Milvus server:
    deselected, not skipped, since CI fails on any skip."""
    left_out = set()
    if config.getoption("--vector-backend") == "milvus":
        left_out.add("faiss_only")
    if config.getoption("--milvus") != "server":
        left_out.add("milvus_server")
    kept = [item for item in items if not left_out & {mark.name for mark in item.iter_markers()}]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


@pytest.fixture(scope="session")
def vector_backend(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--vector-backend")


@pytest.fixture(scope="session")
def milvus_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningMilvus | None]:
    """Under --milvus server: one real Milvus server process for the session (its own data
    folder and free ports), stopped at the end. Both databases' stores share it, as two
    deployments would: their collections' names keep them apart."""
    if request.config.getoption("--milvus") != "server":
        yield None
        return
    from tests.utils.milvus_server import milvus_server as start_milvus

    with start_milvus(tmp_path_factory.mktemp("milvus-server")) as running:
        yield running


@pytest.fixture
def milvus_uri(
    milvus_server: RunningMilvus | None, tmp_path: Path
) -> Iterator[Callable[[str], str]]:
    """FACESRV_MILVUS_URI of a database under test (by its URL): the session's Milvus server,
    or a milvus-lite folder of the test's own (a lite engine shared across tests was released
    under a later test by the finaliser of an earlier test's client), whose in-process engine
    is stopped when the test ends (not at exit, after pytest closed the streams it logs to)."""
    if milvus_server is not None:
        yield lambda _database_url: milvus_server.uri
        return
    folders: set[str] = set()

    def lite_folder(database_url: str) -> str:
        folder = str(tmp_path / f"{database_url.split(':')[0].split('+')[0]}.db")
        folders.add(folder)
        return folder

    yield lite_folder
    if folders and "milvus_lite.server_manager" in sys.modules:
        from milvus_lite.server_manager import server_manager_instance

        for folder in folders:
            server_manager_instance.release_server(folder)


def forget_process_state() -> None:
    """Per-process caches hold settings and indexes tied to one database; tests switch them."""
    get_settings.cache_clear()
    get_limiter.cache_clear()
    get_registry.cache_clear()
    get_pools.cache_clear()
    server_key.cache_clear()
    # Finalise what was dropped (Milvus clients, their channels) now, not at some later
    # allocation inside another test (a deep-recursion test cannot report their finalisers).
    gc.collect()


@pytest.fixture
def configured(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    vector_backend: str,
    milvus_uri: Callable[[str], str],
) -> Iterator[str]:
    """Point the settings at the backends under test for the duration of one test."""
    monkeypatch.setenv("FACESRV_DATABASE_URL", database_url)
    monkeypatch.setenv("FACESRV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FACESRV_VECTOR_BACKEND", vector_backend)
    monkeypatch.setenv("FACESRV_MILVUS_URI", milvus_uri(database_url))
    forget_process_state()
    with session_scope() as db:  # no failed authentications left over from an earlier test
        db.execute(delete(AuthFailureWindow))
    yield database_url
    forget_process_state()


@dataclass(frozen=True)
class Credentials:
    api_id: str
    api_secret: str

    @property
    def query(self) -> dict[str, str]:
        return {"api_id": self.api_id, "api_secret": self.api_secret}


def make_account(**overrides: object) -> Credentials:
    options: dict = {
        "name": "test",
        "rate_limit": "1000q/10s",
        "quota": dict(DEFAULT_QUOTA),
    }
    options.update(overrides)
    with session_scope() as db:
        account, secret = create_account(db, **options)
        return Credentials(account.api_id, secret)


@pytest.fixture
def account(configured: str) -> Credentials:
    return make_account()


@pytest.fixture
def client(configured: str) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def faces(client: TestClient, account: Credentials) -> Callable[[int], list[str]]:
    """Fresh face ids of the test's account, `faces(n)` at a time, from real detection."""
    from tests.utils.api import detect_faces

    return lambda count: detect_faces(client, account, count)


@pytest.fixture
def browser() -> Iterator:
    """Headless Chromium with the network cut off (tests/utils/browser.py)."""
    from tests.utils.browser import offline_browser

    with offline_browser() as launched:
        yield launched


@pytest.fixture
def live_server(configured: str, tmp_path: Path) -> Iterator[Server]:
    """The app under uvicorn in its own process, on the database under test."""
    running = Server(configured, tmp_path / "server")
    try:
        yield running
    finally:
        running.stop()
