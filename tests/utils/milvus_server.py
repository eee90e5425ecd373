"""A real Milvus standalone server for tests and benchmarks: the `milvus` package's binary
(the C++ server of the container image, with its embedded etcd and local storage), run as its
own process on free ports, in its own data folder, stopped (and waited for) at the end."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from milvus import MilvusServer


class RunningMilvus:
    """One Milvus server process; `restart` keeps its data and ports."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.server = MilvusServer()
        self.server.set_base_dir(str(base_dir))
        self.started_seconds = 0.0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.listen_port}"

    @property
    def pid(self) -> int:
        assert self.server.server_proc is not None
        return self.server.server_proc.pid

    def start(self) -> None:
        started = time.perf_counter()
        self.server.start()
        # Pinned from now on: a restart must come back where the clients point.
        # The next start reuses the config written now (same ports): the package would resolve
        # them again, refusing ports that client connections left in TIME_WAIT.
        self.server.config.resolve = lambda: None
        self.started_seconds = time.perf_counter() - started

    def stop(self) -> None:
        self.server.stop()  # SIGTERM, then SIGKILL after a second: its graceful stop takes minutes
        _wait_port_free(self.server.listen_port)

    def restart(self) -> None:
        self.stop()
        self.start()


def _wait_port_free(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.2)


@contextmanager
def milvus_server(base_dir: Path) -> Iterator[RunningMilvus]:
    running = RunningMilvus(base_dir)
    running.start()
    try:
        yield running
    finally:
        running.stop()
