"""Matching across real worker processes: consistency after writes, and tasks across a restart."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.db.models import Task
from app.db.session import session_scope
from app.services import tasks
from tests.conftest import make_account
from tests.photos import celeba_identities
from tests.servers import Server
from tests.utils.api import detect_face, post

pytestmark = pytest.mark.slow


@pytest.fixture
def two_servers(configured: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two independent server processes on one database: two workers that share nothing else."""
    first = Server(configured, tmp_path / "a")
    try:
        second = Server(configured, tmp_path / "b")
    except Exception:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def test_a_face_added_in_one_worker_is_found_at_once_in_another(
    two_servers: tuple[Server, Server], configured: str
) -> None:
    creds = make_account()
    first, second = (server.client() for server in two_servers)
    identities = list(celeba_identities().values())
    faces = [detect_face(first, creds, images[0]) for images in identities[:6]]
    probes = [detect_face(first, creds, images[1]) for images in identities[:6]]
    faceset = post(first, "/faceset/create", creds, name="fs", face_id=faces[:1]).json()[
        "faceset_id"
    ]
    # Load the index in the second worker, then change the faceset through the first.
    assert (
        post(second, "/face/search", creds, face_id=probes[0], faceset_id=faceset).json()[
            "candidates"
        ][0]["face_id"]
        == faces[0]
    )
    for face, probe in zip(faces[1:], probes[1:], strict=True):
        assert (
            post(first, "/faceset/add_face", creds, faceset_id=faceset, face_id=face).json()[
                "added_count"
            ]
            == 1
        )
        found = post(second, "/face/search", creds, face_id=probe, faceset_id=faceset, top=1).json()
        assert found["candidates"][0]["face_id"] == face
    # Removal through the second is seen by the first at once.
    post(first, "/face/search", creds, face_id=probes[2], faceset_id=faceset).json()
    post(second, "/faceset/remove_face", creds, faceset_id=faceset, face_id=faces[2]).json()
    after = post(first, "/face/search", creds, face_id=probes[2], faceset_id=faceset, top=10).json()
    assert faces[2] not in [c["face_id"] for c in after["candidates"]]
    # Groups follow person changes made elsewhere too.
    person = post(first, "/person/create", creds, name="p", face_id=faces[3]).json()["person_id"]
    group = post(first, "/group/create", creds, name="g", person_id=person).json()["group_id"]
    assert (
        post(second, "/face/identification", creds, face_id=probes[4], group_id=group).json()[
            "candidates"
        ]
        == []
    )
    post(first, "/person/add_face", creds, person_id=person, face_id=faces[4]).json()
    found = post(second, "/face/identification", creds, face_id=probes[4], group_id=group).json()
    assert [c["person_id"] for c in found["candidates"]] == [person]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_restart_marks_interrupted_tasks_failed(configured: str, tmp_path: Path) -> None:
    creds = make_account()
    with session_scope() as db:
        from app.services.accounts import find_account

        account = find_account(db, creds.api_id)
        assert account is not None
        now = datetime.now(UTC)
        task = Task(
            account_id=account.id,
            endpoint="/face/search",
            params={},
            status="processing",
            owner=f"{tasks.HOST}:{_dead_pid()}",
            heartbeat_at=now,
            expires_at=now + tasks.TASK_LIFETIME,
        )
        db.add(task)
    server = Server(configured, tmp_path / "srv")
    try:
        with server.client() as client:
            body = client.get("/info/task", params={**creds.query, "task_id": task.public_id})
        assert body.json()["task_status"] == "failed"
        assert body.json()["result"]["reason"] == "interrupted by a restart"
    finally:
        server.stop()


def test_async_flow_survives_a_kill(configured: str, tmp_path: Path) -> None:
    """Submit tasks, SIGKILL the server, start it again: every task ends done or failed."""
    creds = make_account()
    server = Server(configured, tmp_path / "srv")
    task_ids = []
    try:
        with server.client() as client:
            identities = list(celeba_identities().values())
            faces = [detect_face(client, creds, images[0]) for images in identities[:8]]
            faceset = post(client, "/faceset/create", creds, name="f", face_id=faces).json()[
                "faceset_id"
            ]
            for face in faces:
                response = client.post(
                    "/face/search",
                    json={**creds.query, "face_id": face, "faceset_id": faceset, "async": 1},
                )
                assert response.status_code == 202
                task_ids.append(response.json()["task_id"])
        server.kill()
        server = Server(configured, tmp_path / "srv2")
        with server.client() as client:
            deadline = time.monotonic() + 30
            while True:
                states = [
                    client.get("/info/task", params={**creds.query, "task_id": task_id}).json()
                    for task_id in task_ids
                ]
                if all(s["task_status"] in ("done", "failed") for s in states):
                    break
                assert time.monotonic() < deadline, states
                time.sleep(0.2)
            for state in states:
                if state["task_status"] == "done":
                    assert state["result"]["candidates"][0]["confidence"] == 1
            # The restarted server takes new tasks as usual.
            response = client.post(
                "/face/search",
                json={**creds.query, "face_id": faces[0], "faceset_id": faceset, "async": 1},
            )
            task_id = response.json()["task_id"]
            deadline = time.monotonic() + 30
            while (
                client.get("/info/task", params={**creds.query, "task_id": task_id}).json()[
                    "task_status"
                ]
                != "done"
            ):
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        server.stop()


def test_index_snapshot_is_used_after_restart(
    configured: str, tmp_path: Path, vector_backend: str
) -> None:
    """FAISS: the snapshot written by training; Milvus: the collection in the milvus-lite
    folder, reopened (not rebuilt from the store); either way the log replays what followed."""
    creds = make_account()
    data_dir = tmp_path / "srv"
    server = Server(configured, data_dir)
    try:
        with server.client() as client:
            identities = list(celeba_identities().values())
            faces = [detect_face(client, creds, images[0]) for images in identities[:4]]
            probe = detect_face(client, creds, identities[1][1])
            faceset = post(client, "/faceset/create", creds, name="f", face_id=faces[:3]).json()[
                "faceset_id"
            ]
            assert (
                post(client, "/face/training", creds, faceset_id=faceset).json()["status"] == "OK"
            )
            snapshots = list((data_dir / "index").glob("faceset-*.faiss"))
            assert len(snapshots) == (1 if vector_backend == "faiss" else 0)
            # A change after the snapshot must survive the restart through the log replay.
            post(client, "/faceset/remove_face", creds, faceset_id=faceset, face_id=faces[1]).json()
            post(client, "/faceset/add_face", creds, faceset_id=faceset, face_id=faces[3]).json()
        server.stop()
        server = Server(configured, data_dir)
        with server.client() as client:
            found = post(
                client, "/face/search", creds, face_id=probe, faceset_id=faceset, top=10
            ).json()
            ids = [c["face_id"] for c in found["candidates"]]
            assert faces[1] not in ids
            assert set(ids) == {faces[0], faces[2], faces[3]}
        if vector_backend == "faiss":
            assert "loaded faceset-" in server.log_text()
        else:
            assert "built Milvus" not in server.log_text()
    finally:
        server.stop()
