"""`facesrv enroll`: real CelebA photos into persons, groups and facesets, in-process and over HTTP.

Every check reads the result back through the SenseTime API (the persons, their faces, and an
identification of a photo the run did not see), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from app.cli import main
from app.config import REPO_ROOT
from app.db.models import Account, Face, Person
from app.db.session import session_scope
from app.errors import ApiError
from app.tools.enroll import (
    PlanError,
    QuotaRefused,
    Remote,
    Store,
    enroll,
    read_plan,
)
from tests.conftest import DEFAULT_QUOTA, Credentials, make_account
from tests.photos import CELEBA, celeba_mosaic, identity_photos
from tests.servers import Server
from tests.utils.api import post

PEOPLE = 3  # identities, each with 2 photos enrolled and a third held out for identification


def _identities() -> list[list[str]]:
    return [list(identity_photos(3, skip=index)) for index in range(PEOPLE)]


def person_folders(root: Path) -> dict[str, list[str]]:
    """root/person-N/photo.jpg for PEOPLE identities, 2 photos each; returns name -> held-out
    photo names (the third)."""
    held_out = {}
    for index, photos in enumerate(_identities()):
        folder = root / f"person-{index}"
        folder.mkdir(parents=True)
        for name in photos[:2]:
            shutil.copy(CELEBA / "images" / name, folder / name)
        held_out[folder.name] = photos[2:]
    return held_out


def grey_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (160, 200), (128, 128, 128)).save(out, "JPEG")
    return out.getvalue()


def persons_by_name(client: TestClient | httpx.Client, creds: Credentials) -> dict[str, str]:
    response = post(client, "/info/list_persons", creds)
    return {row["name"]: row["person_id"] for row in response.json()["persons"]}


def face_ids(client: TestClient | httpx.Client, creds: Credentials, person_id: str) -> list[str]:
    return post(client, "/info/person", creds, person_id=person_id).json()["face_ids"]


def group_id(client: TestClient | httpx.Client, creds: Credentials, name: str) -> str:
    groups = post(client, "/info/list_groups", creds).json()["groups"]
    (found,) = [row["group_id"] for row in groups if row["name"] == name]
    return found


def identified(
    client: TestClient | httpx.Client, creds: Credentials, group: str, photo: str
) -> str:
    """The person the group's identification names first for a photo the run did not enrol."""
    data = (CELEBA / "images" / photo).read_bytes()
    response = client.post("/face/detection", params=creds.query, files={"file": data})
    face = response.json()["faces"][0]["face_id"]
    result = post(client, "/face/identification", creds, face_id=face, group_id=group).json()
    assert result["status"] == "OK", result
    return result["candidates"][0]["person_id"]


def assert_enrolled(
    client: TestClient | httpx.Client,
    creds: Credentials,
    held_out: dict[str, list[str]],
    group: str,
    faces_each: int = 2,
) -> None:
    persons = persons_by_name(client, creds)
    assert set(persons) == set(held_out)
    for name, person_id in persons.items():
        assert len(face_ids(client, creds, person_id)) == faces_each, name
    group_key = group_id(client, creds, group)
    for name, photos in held_out.items():
        assert identified(client, creds, group_key, photos[0]) == persons[name]


def test_a_folder_of_persons_through_the_cli(
    client: TestClient, account: Credentials, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    held_out = person_folders(tmp_path / "photos")
    errors = tmp_path / "errors.tsv"
    argv = ["enroll", str(tmp_path / "photos"), "--account", account.api_id, "--group", "staff"]
    assert main([*argv, "--errors", str(errors)]) == 0
    out = capsys.readouterr().out
    assert f"photos: {2 * PEOPLE} listed, {2 * PEOPLE} enrolled, 0 already enrolled" in out
    assert f"created: persons {PEOPLE}, groups 1, facesets 0" in out
    assert_enrolled(client, account, held_out, "staff")
    assert errors.read_text() == "path\tperson\tstatus\treason\n"

    assert main([*argv, "--errors", str(errors)]) == 0  # a rerun: nothing new, nothing twice
    assert f"0 enrolled, {2 * PEOPLE} already enrolled" in capsys.readouterr().out
    assert_enrolled(client, account, held_out, "staff")


def test_a_table_with_groups_and_facesets(
    client: TestClient, account: Credentials, tmp_path: Path
) -> None:
    """A TSV naming each photo's person, group and faceset; paths relative to the table."""
    held_out = {}
    rows = []
    (tmp_path / "pics").mkdir()
    for index, photos in enumerate(_identities()):
        held_out[f"Person {index}"] = photos[2:]
        for name in photos[:2]:
            shutil.copy(CELEBA / "images" / name, tmp_path / "pics" / name)
            rows.append((f"pics/{name}", f"Person {index}", "team" if index else "", "gallery"))
    table = tmp_path / "photos.tsv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(("image", "person", "group", "faceset"))
        writer.writerows(rows)
    entries = read_plan(table, group="everyone")  # the column wins where it is not empty
    assert {entry.group for entry in entries} == {"team", "everyone"}
    summary = enroll(entries, Store(account.api_id), errors_path=tmp_path / "e.tsv")
    assert (summary.enrolled, summary.failures) == (2 * PEOPLE, [])
    assert dict(summary.created) == {"persons": PEOPLE, "groups": 2, "facesets": 1}
    persons = persons_by_name(client, account)
    assert set(persons) == set(held_out)
    team = post(client, "/info/group", account, group_id=group_id(client, account, "team"))
    assert {p["name"] for p in team.json()["persons"]} == {"Person 1", "Person 2"}
    facesets = post(client, "/info/list_facesets", account).json()["facesets"]
    (gallery,) = [row["faceset_id"] for row in facesets if row["name"] == "gallery"]
    in_gallery = post(client, "/info/faceset", account, faceset_id=gallery).json()["face_ids"]
    enrolled = [face for pid in persons.values() for face in face_ids(client, account, pid)]
    assert sorted(in_gallery) == sorted(enrolled)
    for name, photos in held_out.items():
        if name != "Person 0":
            assert (
                identified(client, account, group_id(client, account, "team"), photos[0])
                == (persons[name])
            )


def test_csv_tables_and_bad_plans(tmp_path: Path) -> None:
    """No store needed: how PATH is read, and what is refused before anything runs."""
    (tmp_path / "t.csv").write_text("Image,Person\na.jpg,Ann\nsub/b.jpg,Bob\n")
    entries = read_plan(tmp_path / "t.csv", faceset="all")
    assert [(e.path, e.person, e.faceset) for e in entries] == [
        (tmp_path / "a.jpg", "Ann", "all"),
        (tmp_path / "sub" / "b.jpg", "Bob", "all"),
    ]
    (tmp_path / "bad.csv").write_text("file,name\na.jpg,Ann\n")
    with pytest.raises(PlanError, match="no column image, person"):
        read_plan(tmp_path / "bad.csv")
    with pytest.raises(PlanError, match="no such folder or file"):
        read_plan(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlanError, match="no photos"):
        read_plan(tmp_path / "empty")


def test_a_limited_run_resumes_where_it_stopped(
    client: TestClient, account: Credentials, tmp_path: Path
) -> None:
    held_out = person_folders(tmp_path / "photos")
    entries = read_plan(tmp_path / "photos", group="staff")
    first = enroll(entries, Store(account.api_id), errors_path=tmp_path / "e.tsv", limit=4)
    assert (first.enrolled, first.left) == (4, 2 * PEOPLE - 4)
    second = enroll(entries, Store(account.api_id), errors_path=tmp_path / "e.tsv")
    assert (second.enrolled, second.skipped, second.failures) == (2 * PEOPLE - 4, 4, [])
    assert_enrolled(client, account, held_out, "staff")

    # A rerun naming a new group puts the persons enrolled before in it, adding no face.
    entries = read_plan(tmp_path / "photos", group="visitors")
    third = enroll(entries, Store(account.api_id), errors_path=tmp_path / "e.tsv")
    assert (third.enrolled, third.joined, dict(third.created)) == (0, PEOPLE, {"groups": 1})
    assert_enrolled(client, account, held_out, "visitors")


@pytest.mark.slow
def test_a_killed_run_resumes_without_duplicates(
    client: TestClient, account: Credentials, configured: str, tmp_path: Path
) -> None:
    """SIGKILL in the middle of a run (one worker, a photo per transaction), then a rerun."""
    held_out = person_folders(tmp_path / "photos")
    command = [sys.executable, "-m", "app", "enroll", str(tmp_path / "photos"), "--quiet",
               "--account", account.api_id, "--group", "staff", "--workers", "1", "--batch", "1",
               "--errors", str(tmp_path / "e.tsv")]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=os.environ.copy())
    with session_scope() as db:
        owner = db.scalar(select(Account.id).where(Account.api_id == account.api_id))
    deadline = time.monotonic() + 120
    enrolled = 0
    while enrolled < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
        with session_scope() as db:
            held = select(func.count()).where(Face.person_id.is_not(None), Face.account_id == owner)
            enrolled = db.scalar(held) or 0
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert 2 <= enrolled < 2 * PEOPLE, f"the kill came too late: {enrolled} enrolled"
    summary = enroll(
        read_plan(tmp_path / "photos", group="staff"),
        Store(account.api_id),
        errors_path=tmp_path / "e.tsv",
    )
    assert summary.skipped >= 2 and summary.skipped + summary.enrolled == 2 * PEOPLE
    assert_enrolled(client, account, held_out, "staff")
    with session_scope() as db:
        assert db.scalar(select(func.count()).where(Person.account_id == owner)) == PEOPLE


def test_bad_photos_are_reported_and_the_rest_enrols(
    client: TestClient, account: Credentials, tmp_path: Path
) -> None:
    held_out = person_folders(tmp_path / "photos")
    extra = tmp_path / "photos" / "person-0"
    (extra / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no photo")
    (extra / "grey.jpg").write_bytes(grey_jpeg())
    (tmp_path / "photos" / "crowd").mkdir()
    (tmp_path / "photos" / "crowd" / "two.jpg").write_bytes(celeba_mosaic(2, 1))
    errors = tmp_path / "errors.tsv"
    entries = read_plan(tmp_path / "photos", group="staff")
    summary = enroll(entries, Store(account.api_id), errors_path=errors, single_face_only=True)
    assert summary.enrolled == 2 * PEOPLE
    by_photo = {failure.shown: failure.status for failure in summary.failures}
    assert by_photo == {
        "person-0/corrupt.jpg": "CORRUPT_IMAGE",
        "person-0/grey.jpg": "NO_FACE",
        "crowd/two.jpg": "SEVERAL_FACES",
    }
    with errors.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert {row["path"]: row["status"] for row in rows} == by_photo
    text = "\n".join(summary.lines())
    assert "3 failed" in text and "NO_FACE 1" in text and "person-0/grey.jpg" in text
    assert_enrolled(client, account, {**held_out}, "staff")

    # Without --single-face-only the crowd photo gives its largest face; the others fail again.
    again = enroll(entries, Store(account.api_id), errors_path=errors)
    assert (again.enrolled, again.skipped, len(again.failures)) == (1, 2 * PEOPLE, 2)
    assert len(face_ids(client, account, persons_by_name(client, account)["crowd"])) == 1


def test_quota_is_refused_up_front(
    client: TestClient, configured: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    person_folders(tmp_path / "photos")
    quota = {**DEFAULT_QUOTA, "faces_per_person": 1, "persons": 2}
    creds = make_account(quota=quota)
    with pytest.raises(QuotaRefused) as refused:
        enroll(read_plan(tmp_path / "photos"), Store(creds.api_id), errors_path=tmp_path / "e")
    message = str(refused.value)
    assert "quota 'persons' is 2: the account would have 3 (1 over)" in message
    assert "quota 'faces_per_person' is 1: person 'person-0' would have 2 (1 over)" in message
    argv = ["enroll", str(tmp_path / "photos"), "--account", creds.api_id, "--quiet"]
    assert main([*argv, "--errors", str(tmp_path / "e.tsv")]) == 2
    assert "facesrv account create" in capsys.readouterr().err
    assert persons_by_name(client, creds) == {}  # nothing was written
    # What --limit leaves out is not counted: one photo fits.
    assert main([*argv, "--errors", str(tmp_path / "e.tsv"), "--limit", "1"]) == 0
    assert list(persons_by_name(client, creds)) == ["person-0"]
    with session_scope() as db:
        owner = db.scalar(select(Account.id).where(Account.api_id == creds.api_id))
        assert db.scalar(select(func.count()).where(Face.account_id == owner)) == 1


@pytest.mark.slow
def test_over_http_against_a_running_server(configured: str, tmp_path: Path) -> None:
    """--url mode: the SenseTime API of a real server process; a rerun skips what it holds."""
    held_out = person_folders(tmp_path / "photos")
    (tmp_path / "photos" / "person-1" / "grey.jpg").write_bytes(grey_jpeg())
    creds = make_account()
    server = Server(configured, tmp_path / "server")
    try:
        entries = read_plan(tmp_path / "photos", group="staff")
        remote = Remote(server.base_url, creds.api_id, creds.api_secret)
        summary = enroll(entries, remote, errors_path=tmp_path / "e.tsv")
        assert summary.enrolled == 2 * PEOPLE
        assert [(f.shown, f.status) for f in summary.failures] == [("person-1/grey.jpg", "NO_FACE")]
        assert dict(summary.created) == {"persons": PEOPLE, "groups": 1}
        with server.client() as http:
            assert_enrolled(http, creds, held_out, "staff")
        # The rerun skips every enrolled photo, and puts their faces in the faceset it names.
        entries = read_plan(tmp_path / "photos", group="staff", faceset="all")
        remote = Remote(server.base_url, creds.api_id, creds.api_secret)
        again = enroll(entries, remote, errors_path=tmp_path / "e.tsv")
        assert (again.enrolled, again.skipped, again.joined) == (0, 2 * PEOPLE, 2 * PEOPLE)
        with server.client() as http:
            assert_enrolled(http, creds, held_out, "staff")
            facesets = post(http, "/info/list_facesets", creds).json()["facesets"]
            (every,) = [row["faceset_id"] for row in facesets if row["name"] == "all"]
            in_all = post(http, "/info/faceset", creds, faceset_id=every).json()["face_ids"]
            persons = persons_by_name(http, creds).values()
            assert sorted(in_all) == sorted(f for p in persons for f in face_ids(http, creds, p))
            wrong = Remote(server.base_url, creds.api_id, "not-the-secret")
            with pytest.raises(ApiError) as refused:  # before any photo: the /info/api call
                enroll(entries, wrong, errors_path=tmp_path / "e.tsv")
            assert refused.value.http_status == 401
    finally:
        server.stop()


def test_a_refusal_inside_a_batch_is_that_photos_alone(
    client: TestClient, configured: str, tmp_path: Path
) -> None:
    """A quota another client filled after the up-front check: the batch's transaction fails,
    and its photos are written one by one, so only the refused one is reported."""
    person_folders(tmp_path / "photos")
    creds = make_account(quota={**DEFAULT_QUOTA, "faces_per_person": 1})
    store = Store(creds.api_id)
    entries = read_plan(tmp_path / "photos")  # person-0 a, person-0 b, person-1 a, ...
    ready = []
    for entry in entries[:3]:
        data = entry.path.read_bytes()
        ready.append((entry, store.detect(entry, data, entry.path.name, False)))
    made, outcomes = store.write_batch(ready)
    assert made == {"persons": 2}
    assert [None if error is None else error.status for error in outcomes] == [
        None,
        "QUOTA_EXCEEDED",
        None,
    ]
    persons = persons_by_name(client, creds)
    assert {name: len(face_ids(client, creds, pid)) for name, pid in persons.items()} == {
        "person-0": 1,
        "person-1": 1,
    }
