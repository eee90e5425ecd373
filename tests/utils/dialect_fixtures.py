"""Fixtures every vendor dialect's tests share: one real server per test module and database,
an allow-listed photo site, an HTTP client. A dialect's conftest imports them and adds its own
`account` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import forget_process_state, research_photos_present
from tests.photos import celeba_bytes, identity_photos
from tests.servers import Server
from tests.utils.milvus_server import RunningMilvus
from tests.utils.photo_server import PhotoServer


@pytest.fixture(scope="module")
def server(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    vector_backend: str,
    milvus_server: RunningMilvus | None,
) -> Iterator[Server]:
    """The tests make credentials in-process, so this process points at the same store and
    server key (data folder) while the server runs. The server runs the backend under test:
    FAISS, a milvus-lite folder of its own, or the session's Milvus server."""
    data_dir = tmp_path_factory.mktemp("dialect")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACESRV_DATABASE_URL", database_url)
        patch.setenv("FACESRV_DATA_DIR", str(data_dir))
        forget_process_state()
        env = {
            "FACESRV_URL_ALLOWLIST": "127.0.0.2/32",  # where `photos` listens
            "FACESRV_FETCH_TIMEOUT": "2",
            "FACESRV_AUTH_FAILURE_LIMIT": "100000q/60s",  # signature tests fail on purpose
            "FACESRV_VECTOR_BACKEND": vector_backend,
            # milvus-lite: a folder of the server's own; this process may open the default one.
            "FACESRV_MILVUS_URI": milvus_server.uri
            if milvus_server
            else str(data_dir / "server-milvus.db"),
        }
        running = Server(database_url, data_dir, env=env)
        try:
            yield running
        finally:
            running.stop()
            forget_process_state()


@pytest.fixture(scope="module")
def photos() -> Iterator[PhotoServer]:
    """The photos of `identity_photos` on 127.0.0.2 (allow-listed); /slow never answers.

    Without the research photo set the site serves only what tests add; tests that name a CelebA
    photo skip when they do."""
    server = PhotoServer("127.0.0.2")
    for skip in range(2 if research_photos_present("celeba-dev") else 0):
        for name in identity_photos(3, skip):
            server.routes[f"/{name}"] = (200, {"Content-Type": "image/jpeg"}, celeba_bytes(name))
    yield server
    server.close()


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client
