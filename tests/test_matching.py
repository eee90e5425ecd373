"""Verification, search, identification, training and /info/task on real faces, both databases."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Row, event, func, select, update

from app.config import get_settings
from app.db.models import Account, Face, Faceset, IndexChange
from app.db.session import engine_for, session_scope
from app.domain import ChangeOp, Kind
from app.index import changelog
from app.index.changelog import CollectionKey
from app.index.faiss_registry import FaissRegistry
from app.index.registry import get_registry
from app.index.vectors import HAMMING
from app.services.upkeep import prune_account_log, prune_change_log
from tests.conftest import Credentials, make_account
from tests.photos import celeba_identities
from tests.plans import query_plans, reads_whole, statements_on
from tests.utils.api import detect_face, post, reply


def call(client: TestClient, creds: Credentials, path: str, **body: object) -> dict:
    return reply(post(client, path, creds, **body))


@pytest.fixture
def people(client: TestClient, account: Credentials) -> dict[str, list[str]]:
    """Four identities with three detected faces each, in the test's own account."""
    identities = list(celeba_identities().items())[:4]
    return {
        identity: [detect_face(client, account, image) for image in images[:3]]
        for identity, images in identities
    }


def test_verification_same_and_different(
    client: TestClient, account: Credentials, people: dict[str, list[str]]
) -> None:
    (a1, a2, _), (b1, _, _) = list(people.values())[:2]
    same = call(client, account, "/face/verification", face_id=a1, face2_id=a2)
    assert list(same)[1:] == [
        "same_person",
        "confidence",
        "face_id",
        "face2_id",
        "status",
        "request_id",
    ]
    assert same["same_person"] is True and same["confidence"] > 0.7
    other = call(client, account, "/face/verification", face_id=a1, face2_id=b1)
    assert other["same_person"] is False and other["confidence"] < 0.5
    itself = call(client, account, "/face/verification", face_id=a1, face2_id=a1)
    assert itself["confidence"] == 1


def test_verification_against_a_person(
    client: TestClient, account: Credentials, people: dict[str, list[str]]
) -> None:
    (a1, a2, a3), (b1, _, _) = list(people.values())[:2]
    person = call(client, account, "/person/create", name="a", face_id=[a1, a2])["person_id"]
    body = call(client, account, "/face/verification", face_id=a3, person_id=person)
    assert list(body)[1:6] == ["same_person", "confidence", "face_id", "person_id", "status"]
    assert body["same_person"] is True
    assert (
        call(client, account, "/face/verification", face_id=b1, person_id=person)["same_person"]
        is False
    )
    empty = call(client, account, "/person/create", name="empty")["person_id"]
    assert (
        call(client, account, "/face/verification", face_id=a3, person_id=empty)["status"]
        == "EMPTY_PERSON"
    )


def test_verification_errors(
    client: TestClient, account: Credentials, people: dict[str, list[str]]
) -> None:
    a1 = next(iter(people.values()))[0]
    unknown = "0" * 32
    assert (
        call(client, account, "/face/verification", face_id=unknown, face2_id=a1)["status"]
        == "INVALID_FACE"
    )
    assert (
        call(client, account, "/face/verification", face_id=a1, face2_id=unknown)["status"]
        == "INVALID_FACE2"
    )
    assert (
        call(client, account, "/face/verification", face_id=a1, person_id=unknown)["status"]
        == "INVALID_PERSON"
    )
    missing = call(client, account, "/face/verification", face_id=a1)
    assert missing["_code"] == 400 and missing["status"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize("exact_max", ["50000", "0"], ids=["exact", "code-scan"])
def test_search_in_a_faceset(
    client: TestClient,
    account: Credentials,
    people: dict[str, list[str]],
    exact_max: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both index kinds: exact search, and the sign-code scan used past EXACT_INDEX_MAX."""
    monkeypatch.setenv("FACESRV_EXACT_INDEX_MAX", exact_max)
    get_settings.cache_clear()
    get_registry.cache_clear()
    faces = [face for trio in people.values() for face in trio[:2]]
    faceset = call(client, account, "/faceset/create", name="fs", face_id=faces)["faceset_id"]
    query = faces[0]
    body = call(client, account, "/face/search", face_id=query, faceset_id=faceset, top=3)
    assert list(body)[1:] == ["candidates", "face_id", "status", "request_id"]
    candidates = body["candidates"]
    assert len(candidates) == 3
    assert candidates[0] == {"face_id": query, "confidence": 1}
    assert candidates[1]["face_id"] == faces[1]  # the same person's other photo
    assert [c["confidence"] for c in candidates] == sorted(
        (c["confidence"] for c in candidates), reverse=True
    )
    # Removed faces never come back; added ones are found at once.
    call(client, account, "/faceset/remove_face", faceset_id=faceset, face_id=query)
    after = call(client, account, "/face/search", face_id=query, faceset_id=faceset, top=10)
    assert query not in [c["face_id"] for c in after["candidates"]]
    call(client, account, "/faceset/add_face", faceset_id=faceset, face_id=query)
    again = call(client, account, "/face/search", face_id=query, faceset_id=faceset, top=1)
    assert again["candidates"] == [{"face_id": query, "confidence": 1}]


def test_search_in_face_ids_and_faceset_wins(
    client: TestClient, account: Credentials, people: dict[str, list[str]]
) -> None:
    (a1, a2, a3), (b1, b2, _) = list(people.values())[:2]
    body = call(client, account, "/face/search", face_id=a3, face_ids=f"{b1},{a1},{b2}", top=2)
    assert [c["face_id"] for c in body["candidates"]][0] == a1
    assert len(body["candidates"]) == 2
    faceset = call(client, account, "/faceset/create", name="b", face_id=[b1, b2])["faceset_id"]
    both = call(client, account, "/face/search", face_id=a3, face_ids=[a1, a2], faceset_id=faceset)
    assert {c["face_id"] for c in both["candidates"]} == {b1, b2}


def test_search_errors(
    client: TestClient, account: Credentials, people: dict[str, list[str]]
) -> None:
    a1 = next(iter(people.values()))[0]
    empty = call(client, account, "/faceset/create", name="empty")["faceset_id"]
    assert (
        call(client, account, "/face/search", face_id=a1, faceset_id=empty)["status"]
        == "EMPTY_FACESET"
    )
    assert (
        call(client, account, "/face/search", face_id=a1, faceset_id="0" * 32)["status"]
        == "INVALID_FACESET"
    )
    assert (
        call(client, account, "/face/search", face_id="0" * 32, face_ids=[a1])["status"]
        == "INVALID_FACE"
    )
    top = call(client, account, "/face/search", face_id=a1, face_ids=[a1], top=11)
    assert top["status"] == "INVALID_ARGUMENT"
    assert top["reason"] == "argument 'top': not in range(1..10)"


def test_identification(
    client: TestClient, account: Credentials, people: dict[str, list[str]]
) -> None:
    trios = list(people.values())
    persons = [
        call(client, account, "/person/create", name=f"p{i}", face_id=trio[:2])["person_id"]
        for i, trio in enumerate(trios[:3])
    ]
    group = call(client, account, "/group/create", name="g", person_id=persons)["group_id"]
    body = call(client, account, "/face/identification", face_id=trios[1][2], group_id=group)
    assert list(body)[1:] == ["candidates", "face_id", "group_id", "status", "request_id"]
    assert body["candidates"][0]["person_id"] == persons[1]
    assert body["candidates"][0]["name"] == "p1"
    assert all(c["confidence"] > 0.6 for c in body["candidates"])
    stranger = call(client, account, "/face/identification", face_id=trios[3][2], group_id=group)
    assert stranger["candidates"] == []
    # Membership changes show at once: remove the person from the group, it is no longer found.
    call(client, account, "/group/remove_person", group_id=group, person_id=persons[1])
    gone = call(client, account, "/face/identification", face_id=trios[1][2], group_id=group)
    assert persons[1] not in [c["person_id"] for c in gone["candidates"]]
    # A face added to a member person is found through the group at once.
    call(client, account, "/person/add_face", person_id=persons[0], face_id=trios[3][0])
    moved = call(client, account, "/face/identification", face_id=trios[3][2], group_id=group)
    assert [c["person_id"] for c in moved["candidates"]][:1] == [persons[0]]


def test_identification_errors(
    client: TestClient, account: Credentials, people: dict[str, list[str]]
) -> None:
    a1 = next(iter(people.values()))[0]
    empty_group = call(client, account, "/group/create", name="e")["group_id"]
    assert (
        call(client, account, "/face/identification", face_id=a1, group_id=empty_group)["status"]
        == "EMPTY_GROUP"
    )
    faceless = call(client, account, "/person/create", name="nobody")["person_id"]
    call(client, account, "/group/add_person", group_id=empty_group, person_id=faceless)
    assert (
        call(client, account, "/face/identification", face_id=a1, group_id=empty_group)["status"]
        == "EMPTY_GROUP"
    )
    assert (
        call(client, account, "/face/identification", face_id=a1, group_id="0" * 32)["status"]
        == "INVALID_GROUP"
    )
    assert (
        call(client, account, "/face/identification", face_id=a1, group_id=empty_group, top=6)[
            "status"
        ]
        == "INVALID_ARGUMENT"
    )


def test_training_checks_every_id(
    client: TestClient, account: Credentials, people: dict[str, list[str]]
) -> None:
    a1, a2, _ = next(iter(people.values()))
    person = call(client, account, "/person/create", name="a", face_id=[a1])["person_id"]
    faceset = call(client, account, "/faceset/create", name="f", face_id=[a1, a2])["faceset_id"]
    group = call(client, account, "/group/create", name="g", person_id=person)["group_id"]
    ok = call(
        client,
        account,
        "/face/training",
        face_id=a1,
        person_id=person,
        faceset_id=faceset,
        group_id=group,
    )
    assert ok["_code"] == 200 and ok["status"] == "OK"
    unknown = "0" * 32
    for key, status in [
        ("face_id", "INVALID_FACE"),
        ("person_id", "INVALID_PERSON"),
        ("faceset_id", "INVALID_FACESET"),
        ("group_id", "INVALID_GROUP"),
    ]:
        assert call(client, account, "/face/training", **{key: [unknown]})["status"] == status
    assert call(client, account, "/face/training")["status"] == "INVALID_ARGUMENT"


@pytest.mark.faiss_only
@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_an_unreadable_snapshot_is_rebuilt_from_the_store(
    client: TestClient,
    account: Credentials,
    people: dict[str, list[str]],
    damage: str,
    tmp_path: Path,
) -> None:
    a1, a2, _ = next(iter(people.values()))
    faceset = call(client, account, "/faceset/create", name="f", face_id=[a1, a2])["faceset_id"]
    assert call(client, account, "/face/training", faceset_id=faceset)["status"] == "OK"
    (snapshot,) = (tmp_path / "data" / "index").glob("faceset-*.faiss")
    data = snapshot.read_bytes()
    snapshot.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00" * 4096)
    get_registry.cache_clear()  # as after a restart

    body = call(client, account, "/face/search", face_id=a2, faceset_id=faceset, top=2)
    assert body["_code"] == 200
    assert [c["face_id"] for c in body["candidates"]] == [a2, a1]
    assert not snapshot.exists(), "the damaged snapshot is dropped"
    assert call(client, account, "/face/training", faceset_id=faceset)["status"] == "OK"
    assert snapshot.exists()


@pytest.mark.faiss_only
def test_operator_index_settings_win_over_a_snapshot(
    client: TestClient,
    account: Credentials,
    people: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faces = [face for trio in people.values() for face in trio[:2]]
    faceset = call(client, account, "/faceset/create", name="fs", face_id=faces)["faceset_id"]
    assert call(client, account, "/face/training", faceset_id=faceset)["status"] == "OK"
    monkeypatch.setenv("FACESRV_EXACT_INDEX_MAX", "0")
    monkeypatch.setenv("FACESRV_INDEX_RERANK", "3")
    get_settings.cache_clear()
    get_registry.cache_clear()  # as after a restart with new settings

    body = call(client, account, "/face/search", face_id=faces[2], faceset_id=faceset, top=2)
    assert [c["face_id"] for c in body["candidates"]] == [faces[2], faces[3]]
    (index,) = get_registry()._indexes.values()
    assert (index.kind, index.rerank) == (HAMMING, 3)


def _faceset_row_id(public_id: str) -> int:
    with session_scope() as db:
        return db.scalar(select(Faceset.id).where(Faceset.public_id == public_id))


@pytest.mark.faiss_only
def test_a_cold_load_blocks_no_search_of_another_collection(
    client: TestClient,
    account: Credentials,
    people: dict[str, list[str]],
    configured: str,
    tmp_path: Path,
) -> None:
    """The loader is held inside its members query; searches of other collections, of its own
    account and of another, must still be answered meanwhile."""
    faces = [face for trio in people.values() for face in trio]
    other = make_account()
    other_face = detect_face(client, other, next(iter(celeba_identities().values()))[0])
    cold = call(client, account, "/faceset/create", name="cold", face_id=faces[:6])["faceset_id"]
    warm = call(client, account, "/faceset/create", name="warm", face_id=faces[6:])["faceset_id"]
    elsewhere = call(client, other, "/faceset/create", name="x", face_id=other_face)["faceset_id"]
    own, stranger = _account_id(account), _account_id(other)
    registry = FaissRegistry(tmp_path / "worker", exact_max=50_000)
    searches = [(own, _faceset_row_id(warm)), (stranger, _faceset_row_id(elsewhere))]

    def search(account_id: int, faceset_id: int, sizes: list[int]) -> None:
        with session_scope() as db:
            sizes.append(len(registry.get(db, account_id, CollectionKey(Kind.FACESET, faceset_id))))

    for account_id, faceset_id in searches:  # warm: loaded before the cold load starts
        search(account_id, faceset_id, [])
    loaded: list[int] = []
    loader = threading.Thread(target=search, args=(own, _faceset_row_id(cold), loaded))
    entered, release = threading.Event(), threading.Event()

    def hold(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if threading.current_thread() is loader and "faceset_faces" in statement:
            entered.set()
            release.wait(30)

    engine = engine_for(configured)
    event.listen(engine, "before_cursor_execute", hold)
    answered: list[int] = []
    try:
        loader.start()
        assert entered.wait(10), "the loader never reached its members query"
        for account_id, faceset_id in searches:
            searcher = threading.Thread(
                target=search, args=(account_id, faceset_id, answered), daemon=True
            )
            searcher.start()
            searcher.join(5)
        still_loading = loader.is_alive()
    finally:
        release.set()
        loader.join(30)
        event.remove(engine, "before_cursor_execute", hold)
    assert still_loading
    assert answered == [6, 1], "a search waited for another collection's cold load"
    assert loaded == [6]


def _prune_everything(creds: Credentials) -> None:
    """Prune the account's whole log, as FACESRV_INDEX_LOG_DAYS would once it is old enough."""
    assert prune_account_log(_account_id(creds), datetime.now(UTC) + timedelta(seconds=1)) > 0


@pytest.mark.faiss_only
def test_an_index_idle_through_a_prune_rebuilds_from_the_store(
    client: TestClient, account: Credentials, people: dict[str, list[str]], tmp_path: Path
) -> None:
    """Another worker's index, loaded before changes it never replayed were pruned."""
    (a1, a2, _), (b1, *_) = list(people.values())[:2]
    faceset = call(client, account, "/faceset/create", name="f", face_id=[a1])["faceset_id"]
    other_worker = FaissRegistry(tmp_path / "other-worker", exact_max=50_000)
    with session_scope() as db:
        row = db.scalar(select(Faceset).where(Faceset.public_id == faceset))
        assert row is not None
        account_id, faceset_row = row.account_id, row.id
        assert len(other_worker.get(db, account_id, CollectionKey(Kind.FACESET, faceset_row))) == 1
    assert (
        call(client, account, "/faceset/add_face", faceset_id=faceset, face_id=[a2, b1])["status"]
        == "OK"
    )
    assert (
        call(client, account, "/faceset/remove_face", faceset_id=faceset, face_id=[a1])["status"]
        == "OK"
    )
    _prune_everything(account)

    with session_scope() as db:
        index = other_worker.get(db, account_id, CollectionKey(Kind.FACESET, faceset_row))
        rows = dict(db.execute(select(Face.public_id, Face.id)).all())
    _, found = index.search(np.ones((1, 512), np.float32), 10)
    assert sorted(found[0][found[0] >= 0]) == sorted([rows[a2], rows[b1]]), "a1 is gone"


@pytest.mark.faiss_only
def test_a_snapshot_older_than_the_pruned_log_is_rebuilt(
    client: TestClient, account: Credentials, people: dict[str, list[str]], tmp_path: Path
) -> None:
    (a1, a2, _), (b1, *_) = list(people.values())[:2]
    faceset = call(client, account, "/faceset/create", name="f", face_id=[a1, b1])["faceset_id"]
    assert call(client, account, "/face/training", faceset_id=faceset)["status"] == "OK"
    (snapshot,) = (tmp_path / "data" / "index").glob("faceset-*.faiss")
    assert (
        call(client, account, "/faceset/add_face", faceset_id=faceset, face_id=[a2])["status"]
        == "OK"
    )
    assert (
        call(client, account, "/faceset/remove_face", faceset_id=faceset, face_id=[b1])["status"]
        == "OK"
    )
    _prune_everything(account)
    get_registry.cache_clear()  # as after a restart

    body = call(client, account, "/face/search", face_id=a2, faceset_id=faceset, top=3)
    assert [c["face_id"] for c in body["candidates"]] == [a2, a1]
    assert not snapshot.exists(), "the outdated snapshot is dropped"


def _faceset_and_group(
    client: TestClient, account: Credentials, people: dict[str, list[str]]
) -> tuple[list[str], str, str, str]:
    """A faceset of one identity's three faces, and a group of a person holding another's face.

    Returns the four face ids, the faceset, the person and the group; four "add" log rows.
    """
    (a1, a2, a3), (b1, *_) = list(people.values())[:2]
    faceset = call(client, account, "/faceset/create", name="f", face_id=[a1, a2, a3])["faceset_id"]
    person = call(client, account, "/person/create", name="p", face_id=[b1])["person_id"]
    group = call(client, account, "/group/create", name="g", person_id=person)["group_id"]
    return [a1, a2, a3, b1], faceset, person, group


def test_pruning_keeps_recent_rows_and_one_marker_per_collection(
    client: TestClient,
    account: Credentials,
    people: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (a1, _, _, b1), faceset, person, group = _faceset_and_group(client, account, people)

    def log() -> list[tuple[str, int]]:
        with session_scope() as db:
            query = (
                select(IndexChange.op, func.count())
                .join(Account, Account.id == IndexChange.account_id)
                .where(Account.api_id == account.api_id)
                .group_by(IndexChange.op)
            )
            return sorted((op, count) for op, count in db.execute(query))

    assert log() == [("add", 4)]
    prune_change_log()  # FACESRV_INDEX_LOG_DAYS (7) have not passed: nothing goes
    assert log() == [("add", 4)]
    monkeypatch.setenv("FACESRV_INDEX_LOG_DAYS", "-1")  # every row counts as old
    get_settings.cache_clear()
    prune_change_log()
    assert log() == [(ChangeOp.PRUNED, 2)]  # the faceset's and the group's
    prune_change_log()  # nothing new: the markers stay as they are
    assert log() == [(ChangeOp.PRUNED, 2)]
    body = call(client, account, "/face/search", face_id=a1, faceset_id=faceset, top=3)
    assert [c["face_id"] for c in body["candidates"]][0] == a1
    body = call(client, account, "/face/identification", face_id=b1, group_id=group)
    assert [c["person_id"] for c in body["candidates"]] == [person]


def _account_id(creds: Credentials) -> int:
    with session_scope() as db:
        account_id = db.scalar(select(Account.id).where(Account.api_id == creds.api_id))
        assert account_id is not None
        return account_id


def _log_of(account_id: int) -> list[Row]:
    columns = IndexChange.__table__.c
    query = (
        select(columns.seq, columns.collection, columns.collection_id, columns.face_id, columns.op)
        .where(columns.account_id == account_id)
        .order_by(columns.seq)
    )
    with session_scope() as db:
        return list(db.execute(query))


def _age_log(account_id: int, through_seq: int) -> None:
    """Date the account's log rows up to `through_seq` a month back."""
    with session_scope() as db:
        db.execute(
            update(IndexChange)
            .where(IndexChange.account_id == account_id, IndexChange.seq <= through_seq)
            .values(created_at=datetime.now(UTC) - timedelta(days=30))
        )


def test_pruning_goes_in_batches_and_replaces_each_collections_marker(
    client: TestClient,
    account: Credentials,
    people: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (a1, a2, a3, _), faceset, _, _ = _faceset_and_group(client, account, people)
    assert (
        call(client, account, "/faceset/remove_face", faceset_id=faceset, face_id=[a1])["status"]
        == "OK"
    )
    account_id = _account_id(account)
    log = _log_of(account_id)
    assert [row.op for row in log] == ["add"] * 4 + ["remove"]
    seqs = [row.seq for row in log]
    of_faceset = (log[0].collection, log[0].collection_id)
    of_group = (log[3].collection, log[3].collection_id)
    deleted_per_transaction: list[int] = []
    prune = changelog.prune_rows

    def counting_prune(*args: Any) -> int:
        deleted_per_transaction.append(prune(*args))
        return deleted_per_transaction[-1]

    monkeypatch.setattr(changelog, "prune_rows", counting_prune)

    def markers() -> list[tuple[tuple[str, int], int]]:
        rows = [row for row in _log_of(account_id) if row.op == ChangeOp.PRUNED]
        return [((row.collection, row.collection_id), row.face_id) for row in rows]

    week_ago = datetime.now(UTC) - timedelta(days=7)
    _age_log(account_id, seqs[3])  # the adds; the remove is recent
    assert prune_account_log(account_id, week_ago, batch=2) == 4
    assert max(deleted_per_transaction) == 2, "no transaction deletes more than a batch"
    assert sorted(markers()) == sorted([(of_faceset, seqs[2]), (of_group, seqs[3])])
    assert [row.op for row in _log_of(account_id) if row.op != ChangeOp.PRUNED] == ["remove"]

    _age_log(account_id, seqs[4])  # now the remove too; the markers stay recent
    assert prune_account_log(account_id, week_ago, batch=2) == 1
    assert sorted(markers()) == sorted([(of_faceset, seqs[4]), (of_group, seqs[3])])
    assert prune_account_log(account_id, week_ago, batch=2) == 0
    body = call(client, account, "/face/search", face_id=a2, faceset_id=faceset, top=3)
    assert [c["face_id"] for c in body["candidates"]] == [a2, a3]


def test_a_prune_pass_reads_the_log_through_its_indexes(
    client: TestClient,
    account: Credentials,
    people: dict[str, list[str]],
    configured: str,
) -> None:
    """Pruning must not read the whole log: it runs beside requests, and partly under their lock."""
    (a1, a2, a3), (b1, *_) = list(people.values())[:2]
    faceset = call(client, account, "/faceset/create", name="f", face_id=[a1, a2])["faceset_id"]
    call(client, account, "/faceset/add_face", faceset_id=faceset, face_id=[a3, b1])
    account_id = _account_id(account)
    _age_log(account_id, _log_of(account_id)[-1].seq)
    engine = engine_for(configured)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    with statements_on(engine, "index_changes") as first:
        assert prune_account_log(account_id, tomorrow, batch=3) == 4
    call(client, account, "/faceset/remove_face", faceset_id=faceset, face_id=[a1])
    _age_log(account_id, _log_of(account_id)[-1].seq)
    with statements_on(engine, "index_changes") as second:
        assert prune_account_log(account_id, tomorrow, batch=3) == 1  # replaces the marker
    statements = first + second
    assert len(statements) >= 6
    for (statement, _), plan in zip(statements, query_plans(engine, statements), strict=True):
        # From a seq on (the prefix, the replay) or among the markers, never the whole log.
        bounded = "seq>" in plan.replace(" ", "") or "ix_index_changes_markers" in plan
        assert bounded and not reads_whole("index_changes", plan), (statement, plan)


def test_accounts_do_not_see_each_other(
    client: TestClient, account: Credentials, people: dict[str, list[str]]
) -> None:
    a1, a2, _ = next(iter(people.values()))
    faceset = call(client, account, "/faceset/create", name="f", face_id=[a1])["faceset_id"]
    other = make_account()
    mine = detect_face(client, other, next(iter(celeba_identities().values()))[0])
    assert (
        call(client, other, "/face/verification", face_id=mine, face2_id=a1)["status"]
        == "INVALID_FACE2"
    )
    assert (
        call(client, other, "/face/search", face_id=mine, faceset_id=faceset)["status"]
        == "INVALID_FACESET"
    )
    assert (
        call(client, other, "/face/search", face_id=a2, face_ids=[mine])["status"] == "INVALID_FACE"
    )


def _wait_for_task(client: TestClient, creds: Credentials, task_id: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = client.get("/info/task", params={**creds.query, "task_id": task_id}).json()
        if body["task_status"] in ("done", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} still {body['task_status']}")


def test_async_is_opt_in_and_returns_the_synchronous_body(
    client: TestClient, account: Credentials, people: dict[str, list[str]]
) -> None:
    a1, a2, _ = next(iter(people.values()))
    sync = call(client, account, "/face/verification", face_id=a1, face2_id=a2)
    assert sync["_code"] == 200
    response = client.post(
        "/face/verification", json={**account.query, "face_id": a1, "face2_id": a2, "async": 1}
    )
    assert response.status_code == 202
    accepted = response.json()
    assert list(accepted)[:3] == ["status", "task_id", "task_status"]
    assert accepted["task_status"] == "pending"
    done = _wait_for_task(client, account, accepted["task_id"])
    assert list(done)[:4] == ["status", "task_id", "task_status", "result"]
    assert done["task_status"] == "done"
    assert {k: v for k, v in done["result"].items()} == {
        k: v for k, v in sync.items() if k not in ("_code", "request_id")
    }
    failed = client.post(
        "/face/search", json={**account.query, "face_id": "0" * 32, "face_ids": [a1], "async": "1"}
    ).json()
    result = _wait_for_task(client, account, failed["task_id"])
    assert result["task_status"] == "failed"
    assert result["result"]["status"] == "INVALID_FACE"
    assert (
        client.get("/info/task", params={**account.query, "task_id": "0" * 32}).json()["status"]
        == "INVALID_TASK"
    )
    other = make_account()
    assert (
        client.get("/info/task", params={**other.query, "task_id": accepted["task_id"]}).json()[
            "status"
        ]
        == "INVALID_TASK"
    )


def test_operator_threshold_makes_big_calls_async(
    client: TestClient,
    account: Credentials,
    people: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.config import get_settings

    faces = [face for trio in people.values() for face in trio]
    faceset = call(client, account, "/faceset/create", name="f", face_id=faces)["faceset_id"]
    monkeypatch.setenv("FACESRV_ASYNC_THRESHOLD", "5")
    get_settings.cache_clear()
    response = client.post(
        "/face/search", json={**account.query, "face_id": faces[0], "faceset_id": faceset}
    )
    assert response.status_code == 202
    small = client.post(
        "/face/search", json={**account.query, "face_id": faces[0], "face_ids": faces[:2]}
    )
    assert small.status_code == 200
    # Done before the test's settings go: a task left running would search under the next's.
    assert _wait_for_task(client, account, response.json()["task_id"])["task_status"] == "done"
