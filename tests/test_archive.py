"""`facesrv export` / `facesrv import`: a store's accounts move between SQLite and PostgreSQL
with every id, search answer and credential intact; what cannot be imported is refused."""

from __future__ import annotations

import base64
import io
import json
import secrets
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.cli import main
from app.config import get_settings
from app.db.migrate import upgrade
from app.db.models import Account, Credential, Face, Faceset, Group, Image, Person
from app.db.session import session_scope
from app.domain import Dialect
from app.services import credentials
from app.tools.archive import FORMAT_VERSION
from tests.conftest import (
    DEFAULT_QUOTA,
    Credentials,
    forget_process_state,
    fresh_postgres_database,
    make_account,
)
from tests.photos import celeba_bytes, identity_photos
from tests.utils import huawei, tencent
from tests.utils.api import detect_face, detect_faces, new_faceset, new_group, new_person, ok, post

ALICE = identity_photos(3)  # one identity: two enrolled photos and a probe
BOB = identity_photos(2, skip=1)


@pytest.fixture
def other_store(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, empty store of the other kind than the one under test."""
    if not database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'target' / 'facesrv.db'}"
        upgrade(url)
        yield url
        return
    with fresh_postgres_database("facesrv_archive") as url:
        upgrade(url)
        yield url


def use_store(monkeypatch: pytest.MonkeyPatch, url: str, data_dir: Path) -> None:
    """Point this process at another store and data folder (so another server key too)."""
    monkeypatch.setenv("FACESRV_DATABASE_URL", url)
    monkeypatch.setenv("FACESRV_DATA_DIR", str(data_dir))
    forget_process_state()


def _account_with_every_door() -> tuple[Credentials, tencent.TencentAccount, huawei.HuaweiAccount]:
    """One account with a SenseTime, Tencent, Huawei AK/SK, Huawei token and Alibaba credential."""
    sensetime = make_account(quota={**DEFAULT_QUOTA, "faces_per_faceset": 100})
    app_id = str(1_251_000_000 + secrets.randbelow(10**6))
    secret_id, secret_key = f"AKID{secrets.token_hex(6)}", f"tk-{secrets.token_hex(8)}"
    ak, sk = f"AK{secrets.token_hex(8).upper()}", f"SK{secrets.token_hex(16)}"
    with session_scope() as db:
        account = db.query(Account).filter_by(api_id=sensetime.api_id).one()
        credentials.add_credential(
            db, account, Dialect.TENCENT, secret_id, secret_key, {"app_id": app_id}
        )
        issued = credentials.add_credential(db, account, Dialect.HUAWEI, ak, sk)
        token = credentials.add_credential(db, account, Dialect.HUAWEI_TOKEN)
        credentials.add_credential(db, account, Dialect.ALIBABA)
    return (
        sensetime,
        tencent.TencentAccount(app_id, secret_id, secret_key, sensetime),
        huawei.HuaweiAccount(
            ak, sk, issued.attributes["project_id"], f"{token.key_id}.{token.secret}", sensetime
        ),
    )


def _body(response: httpx.Response) -> dict:
    """An answer without what differs per call (request ids, timings)."""
    assert response.status_code == 200, response.text
    body = response.json()
    body.pop("request_id", None)
    if isinstance(body.get("data"), dict):  # Tencent's envelope
        body["data"].pop("session_id", None)
        body["data"].pop("time_ms", None)
    return body


def _answers(
    http: TestClient,
    st: Credentials,
    tc: tencent.TencentAccount,
    hw: huawei.HuaweiAccount,
    ids: dict[str, str],
) -> dict[str, object]:
    """What the account's clients see through every door: ids, lists, search and matching."""
    token = {"X-Auth-Token": hw.token}
    probe = {"image": ("probe.jpg", celeba_bytes(ALICE[2]))}
    return {
        "search": _body(
            post(http, "/face/search", st, face_id=ids["probe"], faceset_id=ids["faceset"], top=5)
        ),
        "identification": _body(
            post(http, "/face/identification", st, face_id=ids["probe"], group_id=ids["group"])
        ),
        "persons": _body(http.get("/info/list_persons", params=st.query)),
        "groups": _body(http.get("/info/list_groups", params=st.query)),
        "facesets": _body(http.get("/info/list_facesets", params=st.query)),
        "faceset": _body(
            http.get("/info/faceset", params={**st.query, "faceset_id": ids["faceset"]})
        ),
        "person": _body(http.get("/info/person", params={**st.query, "person_id": ids["alice"]})),
        "face": _body(http.get("/info/face", params={**st.query, "face_id": ids["probe"]})),
        "tencent_faces": _body(tencent.post(http, "/face/getfaceids", tc, {"person_id": "tc1"})),
        "tencent_identify": _body(
            tencent.post(http, "/face/identify", tc, {"group_id": "tg"}, files=probe)
        ),
        "huawei_sets": _body(huawei.signed(http, hw, "GET", "/face-sets")),
        "huawei_faces": _body(
            http.get(
                f"/v2/{hw.project_id}/face-sets/lib/faces",
                params={"offset": 0, "limit": 10},
                headers=token,
            )
        ),
        "huawei_search": _body(
            huawei.signed(
                http,
                hw,
                "POST",
                "/face-sets/lib/search",
                body={"face_id": ids["huawei_face"], "return_fields": ["n"]},
            )
        ),
    }


def _make_data(
    http: TestClient, st: Credentials, tc: tencent.TencentAccount, hw: huawei.HuaweiAccount
) -> dict[str, str]:
    """Persons, groups, facesets, a face library and Tencent persons, all through the API."""
    alice = [detect_face(http, st, name) for name in ALICE]
    bob = [detect_face(http, st, name) for name in BOB]
    others = detect_faces(http, st, 3)
    ids = {"probe": alice[2]}
    ids["alice"] = new_person(http, st, "alice", face_id=alice[:2], user_data="a")
    bob_person = new_person(http, st, "bob", face_id=bob)
    loner = new_person(http, st, "loner", face_id=others[:1])
    ids["group"] = new_group(http, st, "staff", person_id=[ids["alice"], bob_person, loner])
    ids["faceset"] = new_faceset(http, st, "all", face_id=[*alice[:2], *bob, *others])
    ids["leaves"] = others[2]
    photo = {"image": ("face.jpg", celeba_bytes(ALICE[0]))}
    made = tencent.post(
        http, "/face/newperson", tc, {"person_id": "tc1", "group_ids[0]": "tg"}, files=photo
    )
    assert tencent.code_of(made) == 0, made.text
    library = {"face_set_name": "lib", "external_fields": {"n": {"type": "integer"}}}
    assert huawei.signed(http, hw, "POST", "/face-sets", body=library).status_code == 200
    for n, name in enumerate(BOB):
        image = base64.b64encode(celeba_bytes(name)).decode()
        face = {"image_base64": image, "external_image_id": f"img{n}", "external_fields": {"n": n}}
        added = huawei.signed(http, hw, "POST", "/face-sets/lib/faces", body=face)
        assert added.status_code == 200, added.text
        ids["huawei_face"] = added.json()["faces"][0]["face_id"]
    return ids


def test_a_store_moves_to_the_other_database_with_every_id_and_answer(
    client: TestClient,
    configured: str,
    other_store: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("FACESRV_KEEP_IMAGES", "1")  # image bytes travel too
    get_settings.cache_clear()
    st, tc, hw = _account_with_every_door()
    ids = _make_data(client, st, tc, hw)
    # Snapshots, then a change after them: a data folder copied along would hold stale ones.
    ok(post(client, "/face/training", st, faceset_id=ids["faceset"], group_id=ids["group"]))
    ok(post(client, "/faceset/remove_face", st, faceset_id=ids["faceset"], face_id=ids["leaves"]))
    snapshots = get_settings().data_dir / "index"
    assert len(list(snapshots.glob("*.faiss"))) >= 2
    before = _answers(client, st, tc, hw, ids)
    assert before["identification"]["candidates"][0]["person_id"] == ids["alice"]
    assert before["search"]["candidates"] and before["huawei_search"]["faces"]
    assert before["tencent_identify"]["data"]["candidates"]

    archive = tmp_path / "backup.tar.gz"
    assert main(["export", str(archive), "--account", st.api_id]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["accounts"] == [st.api_id]
    assert exported["signing_keys_in_clear"] == 3  # Tencent, Huawei AK/SK, Alibaba
    with session_scope() as db:  # every row of the account, loose detections too
        owner = db.query(Account).filter_by(api_id=st.api_id).one().id
        stored = {
            model.__tablename__: db.query(model).filter_by(account_id=owner).count()
            for model in (Face, Image, Credential, Person, Group, Faceset)
        }
    assert {name: exported["rows"][name] for name in stored} == stored
    assert stored["faces"] >= 11 and stored["credentials"] == 5
    assert archive.stat().st_mode & 0o077 == 0  # it holds signing keys: the owner's only
    with tarfile.open(archive) as tar:
        images = [json.loads(line) for line in tar.extractfile("tables/images.jsonl")]
    assert all(image["data"] for image in images)

    use_store(monkeypatch, other_store, tmp_path / "other-data")  # another server key
    shutil.copytree(snapshots, tmp_path / "other-data" / "index")
    assert main(["import", str(archive)]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["snapshots_removed"] == 2  # of the faceset and the group: built afresh
    assert imported["rows"] == exported["rows"] and imported["signing_keys_resealed"] == 3
    from app.main import create_app

    with TestClient(create_app()) as target:
        after = _answers(target, st, tc, hw, ids)
        assert after == before  # ids, lists, candidates and confidences, through every door
        ok(target.get("/info/api", params=st.query))  # the SenseTime secret still opens
        # New rows follow the imported ones, so no vendor id is handed out twice.
        fresh = detect_faces(target, st, 1)[0]
        assert _body(target.get("/info/face", params={**st.query, "face_id": fresh}))

    assert main(["import", str(archive)]) == 2
    refused = capsys.readouterr().err
    assert f"already has accounts with api_id {st.api_id!r}" in refused
    assert "nothing imported" in refused


def _rewritten(archive: Path, target: Path, **manifest: object) -> Path:
    """A copy of the archive with manifest fields replaced."""
    with tarfile.open(archive) as source, tarfile.open(target, "w") as copy:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name == "manifest.json":
                data = json.dumps({**json.loads(data), **manifest}).encode()
                member.size = len(data)
            copy.addfile(member, io.BytesIO(data))
    return target


def test_secrets_travel_in_the_clear_or_sealed_and_future_formats_are_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    """Default (every account) on a fresh SQLite store; no photos needed."""
    request.addfinalizer(forget_process_state)
    source_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    monkeypatch.setenv("FACESRV_SECRET_KEY", source_key)
    use_store(monkeypatch, f"sqlite:///{tmp_path / 'source.db'}", tmp_path / "source")
    upgrade(get_settings().database_url)
    first, second = make_account(name="one"), make_account(name="two")
    signing_key = f"signing-{secrets.token_hex(8)}"
    with session_scope() as db:
        account = db.query(Account).filter_by(api_id=first.api_id).one()
        credentials.add_credential(db, account, Dialect.ALIBABA, "AKexample", signing_key)

    clear, sealed = tmp_path / "clear.tar", tmp_path / "sealed.tar"
    assert main(["export", str(clear)]) == 0
    assert json.loads(capsys.readouterr().out)["accounts"] == [first.api_id, second.api_id]
    assert main(["export", str(sealed), "--without-secrets"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["signing_keys_in_clear"] == 0 and "in the clear" not in err
    assert signing_key.encode() in clear.read_bytes()
    assert signing_key.encode() not in sealed.read_bytes()
    assert signing_key not in out + err  # never printed

    def opened(archive: Path, name: str, key: str | None) -> tuple[str | None, bool]:
        """Import into a fresh store (server key `key`, else a new key file): the key opened,
        and whether the import warned that sealed keys will not open."""
        if key is None:
            monkeypatch.delenv("FACESRV_SECRET_KEY")
        else:
            monkeypatch.setenv("FACESRV_SECRET_KEY", key)
        use_store(monkeypatch, f"sqlite:///{tmp_path / name}.db", tmp_path / name)
        assert main(["import", str(archive)]) == 0
        warned = "sealed under another server key" in capsys.readouterr().err
        with session_scope() as db:
            credential = db.query(Credential).filter_by(key_id="AKexample").one()
            return credentials.signing_key(credential), warned

    assert opened(clear, "clear", None) == (signing_key, False)
    assert opened(sealed, "same-key", source_key) == (signing_key, False)
    assert opened(sealed, "other-key", None) == (None, True)

    future = _rewritten(clear, tmp_path / "future.tar", format_version=FORMAT_VERSION + 1)
    use_store(monkeypatch, f"sqlite:///{tmp_path / 'future'}.db", tmp_path / "future")
    assert main(["import", str(future)]) == 2
    err = capsys.readouterr().err
    assert f"format_version {FORMAT_VERSION + 1}" in err and "newer facesrv" in err
    with session_scope() as db:
        assert db.query(Account).count() == 0

    unknown_column = tmp_path / "newer-schema.tar"
    with tarfile.open(clear) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    manifest["tables"][0]["columns"]["embedding_colour"] = "str"
    _rewritten(clear, unknown_column, tables=manifest["tables"])
    assert main(["import", str(unknown_column)]) == 2
    assert "accounts.embedding_colour, which this store lacks" in capsys.readouterr().err

    (tmp_path / "junk.tar").write_bytes(b"not an archive")
    assert main(["import", str(tmp_path / "junk.tar")]) == 2
    assert "not a readable facesrv archive" in capsys.readouterr().err
