"""The Milvus backend against the store and against FAISS: same answers, rebuilt when wiped,
exact under concurrent writers in two processes, `facesrv index rebuild`, its metrics, two
deployments on one Milvus, a Milvus restart while serving.

These run whatever --vector-backend says (each picks its backends itself), on both databases,
on milvus-lite or (--milvus server) on a real Milvus server.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from milvus_lite.server_manager import server_manager_instance
from prometheus_client import REGISTRY
from sqlalchemy import select

from app.cli import main
from app.db.migrate import upgrade
from app.db.models import Account, Face, Faceset
from app.db.session import session_scope
from app.domain import Kind
from app.index.changelog import CollectionKey
from app.index.milvus import IndexSpec, MilvusCollections, account_prefix, serve_lite
from app.index.milvus_registry import MilvusRegistry
from app.index.registry import get_registry
from app.services.upkeep import prune_account_log
from tests.conftest import Credentials, forget_process_state, make_account
from tests.photos import celeba_identities
from tests.servers import Server
from tests.test_operability import metric_value
from tests.utils.api import detect_face, post, reply
from tests.utils.milvus_server import RunningMilvus


def call(client: TestClient, creds: Credentials, path: str, **body: object) -> dict:
    return reply(post(client, path, creds, **body))


@pytest.fixture
def milvus(configured: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This test on the Milvus backend (the conftest's milvus-lite folder of its database)."""
    monkeypatch.setenv("FACESRV_VECTOR_BACKEND", "milvus")
    forget_process_state()
    yield
    forget_process_state()


@pytest.fixture
def people(client: TestClient, account: Credentials) -> list[list[str]]:
    """Five identities with three detected faces each."""
    identities = list(celeba_identities().values())[:5]
    return [[detect_face(client, account, image) for image in images[:3]] for images in identities]


def _registry() -> MilvusRegistry:
    registry = get_registry()
    assert isinstance(registry, MilvusRegistry)
    return registry


def _account_id(creds: Credentials) -> int:
    with session_scope() as db:
        return db.scalar(select(Account.id).where(Account.api_id == creds.api_id))


def _answers(client: TestClient, creds: Credentials, probes: list[str], faceset: str, group: str):  # noqa: ANN202
    """Every probe's search (top 5) and identification (top 5) answers, as the client sees them."""
    return [
        (
            call(client, creds, "/face/search", face_id=probe, faceset_id=faceset, top=5)[
                "candidates"
            ],
            call(client, creds, "/face/identification", face_id=probe, group_id=group, top=5)[
                "candidates"
            ],
        )
        for probe in probes
    ]


def test_milvus_gives_the_answers_of_faiss(
    client: TestClient,
    account: Credentials,
    people: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same data, both backends in one test: same candidates, order and rendered confidence."""
    enrolled = [face for trio in people for face in trio[:2]]
    faceset = call(client, account, "/faceset/create", name="fs", face_id=enrolled)["faceset_id"]
    persons = [
        call(client, account, "/person/create", name=f"p{i}", face_id=trio[:2])["person_id"]
        for i, trio in enumerate(people)
    ]
    group = call(client, account, "/group/create", name="g", person_id=persons)["group_id"]
    probes = [trio[2] for trio in people] + [people[0][0]]

    answers = {}
    for backend in ("faiss", "milvus"):
        monkeypatch.setenv("FACESRV_VECTOR_BACKEND", backend)
        forget_process_state()
        answers[backend] = _answers(client, account, probes, faceset, group)
    for faiss_answer, milvus_answer in zip(answers["faiss"], answers["milvus"], strict=True):
        assert milvus_answer == faiss_answer
    searched, identified = answers["milvus"][0]
    assert searched[0]["face_id"] in people[0][:2] and len(searched) == 5
    assert identified and identified[0]["person_id"] == persons[0]


def _collections_of(creds: Credentials) -> set[str]:
    """The Milvus collections of one account (the folder is shared by the tests' accounts)."""
    registry = _registry()
    prefix = account_prefix(registry.store, registry.model, _account_id(creds))
    return {
        name for name in _registry().milvus.client.list_collections() if name.startswith(prefix)
    }


def _wipe(registry: MilvusRegistry) -> None:
    client = registry.milvus.client
    for name in client.list_collections():
        for alias in client.list_aliases(name).get("aliases", []):
            client.drop_alias(alias)
        client.drop_collection(name)


def _restart_milvus(server: RunningMilvus | None) -> None:
    """Restart Milvus (the server process, or milvus-lite's in-process engine)."""
    if server is not None:
        server.restart()
    else:
        server_manager_instance.release_server(_registry().milvus.uri)


def test_a_wiped_milvus_is_rebuilt_from_the_store_and_a_restart_reuses_it(
    milvus: None,
    client: TestClient,
    account: Credentials,
    people: list[list[str]],
    milvus_server: RunningMilvus | None,
) -> None:
    (a1, a2, a3), (b1, *_) = people[:2]
    faceset = call(client, account, "/faceset/create", name="f", face_id=[a1, a2, b1])["faceset_id"]
    first = call(client, account, "/face/search", face_id=a3, faceset_id=faceset, top=3)
    assert [c["face_id"] for c in first["candidates"]][:2] in ([a1, a2], [a2, a1])

    _wipe(_registry())  # every collection gone, while this worker still trusts what it knew
    call(client, account, "/faceset/remove_face", faceset_id=faceset, face_id=a1)
    again = call(client, account, "/face/search", face_id=a3, faceset_id=faceset, top=3)
    assert [c["face_id"] for c in again["candidates"]] == [
        c["face_id"] for c in first["candidates"] if c["face_id"] != a1
    ]
    _wipe(_registry())
    stale = call(client, account, "/face/search", face_id=a3, faceset_id=faceset, top=3)
    assert stale["candidates"] == again["candidates"], "searched a missing collection: rebuilt"

    # A restart of facesrv and of Milvus: nothing known, collections kept but released.
    _restart_milvus(milvus_server)
    get_registry.cache_clear()
    built = _registry().milvus.client.list_collections()
    restarted = call(client, account, "/face/search", face_id=a3, faceset_id=faceset, top=3)
    assert restarted["candidates"] == again["candidates"]
    if milvus_server is None:
        assert set(_registry().milvus.client.list_collections()) == set(built), "reused"
    # else: a Milvus 2.3 server forgets collection properties when it restarts, the positions
    # among them, so it cannot prove its collections current: they are rebuilt (docs/matching.md)


def test_a_collection_idle_through_a_prune_is_rebuilt(
    milvus: None, client: TestClient, account: Credentials, people: list[list[str]]
) -> None:
    (a1, a2, _), (b1, *_) = people[:2]
    faceset = call(client, account, "/faceset/create", name="f", face_id=[a1])["faceset_id"]
    assert call(client, account, "/face/search", face_id=a1, faceset_id=faceset)["_code"] == 200
    call(client, account, "/faceset/add_face", faceset_id=faceset, face_id=[a2, b1])
    call(client, account, "/faceset/remove_face", faceset_id=faceset, face_id=[a1])
    assert prune_account_log(_account_id(account), datetime.now(UTC) + timedelta(seconds=1)) > 0
    get_registry.cache_clear()  # another worker, which never replayed those changes

    body = call(client, account, "/face/search", face_id=a1, faceset_id=faceset, top=5)
    assert sorted(c["face_id"] for c in body["candidates"]) == sorted([a2, b1]), "a1 is gone"


def test_index_rebuild_makes_a_new_generation_with_the_same_answers(
    milvus: None,
    client: TestClient,
    account: Credentials,
    people: list[list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    faces = [trio[0] for trio in people]
    faceset = call(client, account, "/faceset/create", name="f", face_id=faces)["faceset_id"]
    before = call(client, account, "/face/search", face_id=people[1][1], faceset_id=faceset)
    old = _collections_of(account)
    capsys.readouterr()

    assert main(["index", "rebuild", "--account", account.api_id]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["faceset"] == faceset and lines[0]["faces"] == len(faces)
    assert lines[-1] == {"backend": "milvus", "collections": 1, "faces": len(faces)}
    after = call(client, account, "/face/search", face_id=people[1][1], faceset_id=faceset)
    assert after["candidates"] == before["candidates"]
    assert len(_collections_of(account)) == 1 and not old & _collections_of(account)


def test_milvus_calls_and_syncs_are_metered(
    milvus: None,
    client: TestClient,
    account: Credentials,
    people: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FACESRV_METRICS_TOKEN", "scrape-me")
    forget_process_state()
    faceset = call(client, account, "/faceset/create", name="f", face_id=people[0])["faceset_id"]
    call(client, account, "/face/search", face_id=people[0][0], faceset_id=faceset)
    text = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).text
    assert metric_value(text, "facesrv_milvus_duration_seconds_count", operation="search") >= 1
    assert metric_value(text, "facesrv_milvus_syncs_total", outcome="built") >= 1
    assert metric_value(text, "facesrv_milvus_sync_rows_total") >= 0


def _milvus_calls(operation: str) -> float:
    return (
        REGISTRY.get_sample_value("facesrv_milvus_duration_seconds_count", {"operation": operation})
        or 0.0
    )


def test_a_sync_asks_milvus_of_the_searched_collection_only(
    milvus: None, client: TestClient, account: Credentials, people: list[list[str]]
) -> None:
    """After a change in an account of many collections, a search syncs its own collection:
    as many Milvus calls with 1 collection as with 6."""
    facesets = [
        call(client, account, "/faceset/create", name=f"f{i}", face_id=trio)["faceset_id"]
        for i, trio in enumerate(people + people[:1])
    ]
    for faceset in facesets:
        call(client, account, "/face/search", face_id=people[0][0], faceset_id=faceset)
    call(client, account, "/faceset/remove_face", faceset_id=facesets[0], face_id=people[0][0])
    described, listed = _milvus_calls("describe"), _milvus_calls("list")
    found = call(client, account, "/face/search", face_id=people[1][0], faceset_id=facesets[1])
    assert found["candidates"][0]["face_id"] == people[1][0]
    assert (_milvus_calls("describe") - described, _milvus_calls("list") - listed) == (1, 0)
    emptied = call(client, account, "/face/search", face_id=people[0][0], faceset_id=facesets[0])
    assert people[0][0] not in [c["face_id"] for c in emptied["candidates"]]


def test_the_sweep_drops_the_milvus_copies_of_deleted_collections(
    milvus: None, client: TestClient, account: Credentials, people: list[list[str]]
) -> None:
    kept, deleted = (
        call(client, account, "/faceset/create", name=name, face_id=people[0])["faceset_id"]
        for name in ("kept", "deleted")
    )
    for faceset in (kept, deleted):
        call(client, account, "/face/search", face_id=people[0][0], faceset_id=faceset)
    before = _collections_of(account)
    assert len(before) == 2
    call(client, account, "/faceset/delete", faceset_id=deleted)
    with session_scope() as db:
        assert _registry().sweep(db) == 1
        assert _registry().sweep(db) == 0
    assert len(_collections_of(account)) == 1 and _collections_of(account) < before
    found = call(client, account, "/face/search", face_id=people[0][1], faceset_id=kept)
    assert found["candidates"][0]["face_id"] in people[0]


@pytest.mark.slow
def test_a_removed_face_never_returns_under_two_processes_sharing_milvus(
    configured: str, tmp_path: Path, milvus_server: RunningMilvus | None
) -> None:
    """Two server processes on one store and one Milvus; one adds and removes a face over and
    over while both search: a face removed is never found again, a face added is found at once."""
    # A Milvus server, or a milvus-lite folder served as `facesrv serve` does for its workers.
    uri = milvus_server.uri if milvus_server else serve_lite(str(tmp_path / "shared-milvus.db"))
    env = {"FACESRV_VECTOR_BACKEND": "milvus", "FACESRV_MILVUS_URI": uri}
    servers = [Server(configured, tmp_path / name, env=env) for name in ("a", "b")]
    try:
        writer, reader = (server.client() for server in servers)
        creds = make_account()
        identities = list(celeba_identities().values())
        steady = [detect_face(writer, creds, images[0]) for images in identities[:4]]
        toggled = detect_face(writer, creds, identities[4][0])
        faceset = reply(post(writer, "/faceset/create", creds, name="f", face_id=steady))
        faceset_id = faceset["faceset_id"]
        stop, seen_after_remove = threading.Event(), []

        def search_forever(client: object) -> None:  # loads and syncs concurrently with writes
            while not stop.is_set():
                post(client, "/face/search", creds, face_id=steady[0], faceset_id=faceset_id)

        searchers = [
            threading.Thread(target=search_forever, args=(server.client(),), daemon=True)
            for server in servers
        ]
        for searcher in searchers:
            searcher.start()
        try:
            for _ in range(12):
                for op, present in (("add_face", True), ("remove_face", False)):
                    assert (
                        reply(
                            post(
                                writer,
                                f"/faceset/{op}",
                                creds,
                                faceset_id=faceset_id,
                                face_id=toggled,
                            )
                        )["status"]
                        == "OK"
                    )
                    for client in (reader, writer):
                        found = reply(
                            post(
                                client,
                                "/face/search",
                                creds,
                                face_id=toggled,
                                faceset_id=faceset_id,
                                top=10,
                            )
                        )["candidates"]
                        here = toggled in [c["face_id"] for c in found]
                        if here != present:
                            seen_after_remove.append((op, client is reader))
        finally:
            stop.set()
            for searcher in searchers:
                searcher.join(30)
        assert not seen_after_remove
        final = reply(post(reader, "/face/search", creds, face_id=toggled, faceset_id=faceset_id))
        assert toggled not in [c["face_id"] for c in final["candidates"]]
    finally:
        for server in servers:
            server.stop()
        if milvus_server is None:
            server_manager_instance.release_server(str(tmp_path / "shared-milvus.db"))


def _store_with_one_faceset(url: str, faces: list[Path]) -> tuple[Credentials, str, list[str]]:
    """A fresh store at `url` (its own identity), its first account and faceset of `faces`."""
    upgrade(url)
    os.environ["FACESRV_DATABASE_URL"] = url
    forget_process_state()
    from app.main import create_app

    creds = make_account()
    with TestClient(create_app()) as client:
        ids = [detect_face(client, creds, image) for image in faces]
        faceset = call(client, creds, "/faceset/create", name="f", face_id=ids)["faceset_id"]
    return creds, faceset, ids


def test_two_deployments_sharing_one_milvus_never_see_each_others_collections(
    milvus: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two fresh stores: both have account 1 and faceset 1, on one Milvus. Each is served its
    own faces only, through removals in the other."""
    monkeypatch.setenv("FACESRV_DATABASE_URL", "")  # restored by monkeypatch at the end
    identities = list(celeba_identities().values())
    stores = {}
    for name, chosen in (("a", identities[:3]), ("b", identities[3:6])):
        url = f"sqlite:///{tmp_path / name}.db"
        stores[name] = (url, *_store_with_one_faceset(url, [images[0] for images in chosen]))
    from app.main import create_app

    for name, (url, creds, faceset, ids) in stores.items():
        os.environ["FACESRV_DATABASE_URL"] = url
        forget_process_state()
        with TestClient(create_app()) as client:
            if name == "b":  # a removal in b must not reach a
                call(client, creds, "/faceset/remove_face", faceset_id=faceset, face_id=ids[0])
                ids = ids[1:]
            found = call(client, creds, "/face/search", face_id=ids[0], faceset_id=faceset, top=10)
            assert sorted(c["face_id"] for c in found["candidates"]) == sorted(ids)
    url, creds, faceset, ids = stores["a"]
    os.environ["FACESRV_DATABASE_URL"] = url
    forget_process_state()
    with TestClient(create_app()) as client:
        found = call(client, creds, "/face/search", face_id=ids[0], faceset_id=faceset, top=10)
    assert sorted(c["face_id"] for c in found["candidates"]) == sorted(ids)
    forget_process_state()


def test_a_collection_past_the_stores_log_is_rebuilt_not_trusted(
    milvus: None, client: TestClient, account: Credentials, people: list[list[str]]
) -> None:
    """A database restored from an older backup: Milvus holds a position the store never
    reached, so what it holds cannot be trusted as current."""
    (a1, a2, _), (b1, *_) = people[:2]
    faceset = call(client, account, "/faceset/create", name="f", face_id=[a1, a2])["faceset_id"]
    call(client, account, "/face/search", face_id=a1, faceset_id=faceset)
    registry = _registry()
    with session_scope() as db:
        row = db.scalar(select(Faceset.id).where(Faceset.public_id == faceset))
    base = registry._base(_account_id(account), CollectionKey(Kind.FACESET, row))
    name, seq = registry.milvus.state(base)
    registry.milvus.delete(name, np.asarray([_face_row(a2)]))  # what the "future" did
    registry.milvus.upsert(name, np.asarray([_face_row(b1)]), np.ones((1, 512), np.float32))
    registry.milvus.mark(name, seq + 1000)
    get_registry.cache_clear()  # a worker starting on the restored database

    found = call(client, account, "/face/search", face_id=a1, faceset_id=faceset, top=5)
    assert sorted(c["face_id"] for c in found["candidates"]) == sorted([a1, a2])
    assert _registry().milvus.state(base)[0] != name, "a new generation, from the store"


def _face_row(public_id: str) -> int:
    with session_scope() as db:
        return db.scalar(select(Face.id).where(Face.public_id == public_id))


def test_threads_opening_one_milvus_lite_folder_at_once_all_connect(tmp_path: Path) -> None:
    """The first searches after a start (a request and an asynchronous task, say) may open the
    engine at once; milvus-lite left alone lets one of them fail on its folder's lock."""
    folder = str(tmp_path / "lite.db")
    barrier = threading.Barrier(4)
    opened: list[MilvusCollections] = []
    failures: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(MilvusCollections(folder, 8, IndexSpec(), "clock"))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        assert all(collections.client.list_collections() == [] for collections in opened)
    finally:
        server_manager_instance.release_server(folder)


@pytest.mark.milvus_server
def test_a_milvus_restart_fails_searches_cleanly_then_answers_the_same(
    milvus: None,
    client: TestClient,
    account: Credentials,
    people: list[list[str]],
    milvus_server: RunningMilvus,
) -> None:
    faces = [trio[0] for trio in people]
    faceset = call(client, account, "/faceset/create", name="f", face_id=faces)["faceset_id"]
    probe = {"face_id": people[0][1], "faceset_id": faceset, "top": 10}
    before = call(client, account, "/face/search", **probe)

    milvus_server.stop()
    try:
        down = post(client, "/face/search", account, face_id=people[0][1], faceset_id=faceset)
        assert down.status_code == 503, down.text
        assert down.json()["status"] == "SERVICE_UNAVAILABLE"
        assert "Milvus" in down.json()["reason"] and down.headers["Retry-After"] == "5"
        # A write meanwhile lands in the store; Milvus catches up when it is back.
        call(client, account, "/faceset/remove_face", faceset_id=faceset, face_id=faces[-1])
    finally:
        milvus_server.start()
    after = call(client, account, "/face/search", **probe)
    assert after["candidates"] == [c for c in before["candidates"] if c["face_id"] != faces[-1]]
