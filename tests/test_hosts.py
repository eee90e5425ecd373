"""Several hosts, one store: two `facesrv serve` processes started as separate hosts (own data
folders and ports) on one PostgreSQL, one Redis and one Milvus server, as README "Several hosts"
sets them up. What one host writes, the other serves at once, through every door; quotas and
rate limits hold across hosts; `facesrv index rebuild` runs while both serve.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from aliyunsdkcore.client import AcsClient
from aliyunsdkgreen.request.v20180509.AddFacesRequest import AddFacesRequest
from aliyunsdkgreen.request.v20180509.AddPersonRequest import AddPersonRequest
from aliyunsdkgreen.request.v20180509.DeleteFacesRequest import DeleteFacesRequest
from aliyunsdkgreen.request.v20180509.SearchPersonRequest import SearchPersonRequest

from app.config import REPO_ROOT
from app.db.migrate import upgrade
from tests.conftest import (
    DEFAULT_QUOTA,
    REDIS_URL,
    Credentials,
    forget_process_state,
    fresh_postgres_database,
    make_account,
    require_research_photos,
)
from tests.photos import celeba_bytes, celeba_identities, identity_photos
from tests.servers import Server
from tests.utils import alibaba, huawei, tencent
from tests.utils.api import away_from_a_window_edge, detect_face, post, reply
from tests.utils.dialect_fixtures import photos  # noqa: F401 - a fixture
from tests.utils.milvus_server import RunningMilvus
from tests.utils.photo_server import PhotoServer

pytestmark = [pytest.mark.milvus_server, pytest.mark.slow]


class Hosts:
    def __init__(self, database_url: str, env: dict[str, str], a: Server, b: Server) -> None:
        self.database_url, self.env, self.a, self.b = database_url, env, a, b


@pytest.fixture(scope="module")
def hosts(
    milvus_server: RunningMilvus, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hosts]:
    """Hosts A and B. This test process points at the same store and key, to make accounts."""
    require_research_photos("celeba-dev")
    with fresh_postgres_database("facesrv_hosts") as url, pytest.MonkeyPatch.context() as patch:
        upgrade(url)
        env = {
            "FACESRV_DATABASE_URL": url,
            "FACESRV_SECRET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "FACESRV_REDIS_URL": REDIS_URL,
            "FACESRV_VECTOR_BACKEND": "milvus",
            "FACESRV_MILVUS_URI": milvus_server.uri,
            "FACESRV_URL_ALLOWLIST": "127.0.0.2/32",  # where `photos` listens
        }
        for name, value in env.items():
            patch.setenv(name, value)
        patch.setenv("FACESRV_DATA_DIR", str(tmp_path_factory.mktemp("test-process")))
        forget_process_state()
        a = Server(url, tmp_path_factory.mktemp("host-a"), env=env)
        try:
            b = Server(url, tmp_path_factory.mktemp("host-b"), env=env)
            try:
                yield Hosts(url, env, a, b)
            finally:
                b.stop()
        finally:
            a.stop()
            forget_process_state()


def _photo(identity: int, index: int) -> bytes:
    return celeba_bytes(list(celeba_identities().values())[identity][index])


def _found(response: httpx.Response) -> list[str]:
    return [c["face_id"] for c in reply(response)["candidates"]]


def _faceset_and_probe(
    creds: Credentials, maker: httpx.Client, prober: httpx.Client, size: int
) -> tuple[list[str], str, str]:
    """A faceset of `size` identities' first photos made on `maker`, and a second photo of the
    first identity detected on `prober`: (faces, faceset id, probe face id)."""
    images = list(celeba_identities().values())
    faces = [detect_face(maker, creds, images[n][0]) for n in range(size)]
    probe = detect_face(prober, creds, images[0][1])
    faceset = reply(post(maker, "/faceset/create", creds, name="f", face_id=faces))["faceset_id"]
    return faces, faceset, probe


def test_sensetime_door_a_face_added_on_one_host_is_found_on_the_other(hosts: Hosts) -> None:
    creds = make_account()
    with hosts.a.client() as a, hosts.b.client() as b:
        _, faceset, added = _faceset_and_probe(creds, a, b, 4)
        search = {"face_id": added, "faceset_id": faceset, "top": 10}
        assert added not in _found(post(b, "/face/search", creds, **search))  # B knows it now

        assert reply(post(a, "/faceset/add_face", creds, faceset_id=faceset, face_id=added))
        assert _found(post(b, "/face/search", creds, **search))[0] == added
        assert reply(post(b, "/faceset/remove_face", creds, faceset_id=faceset, face_id=added))
        assert added not in _found(post(a, "/face/search", creds, **search))
        assert added not in _found(post(b, "/face/search", creds, **search))


def _person_ids(response: httpx.Response) -> list[str]:
    assert tencent.code_of(response) == 0, response.text
    return [c["person_id"] for c in response.json()["data"]["candidates"]]


def test_tencent_door_a_person_added_on_one_host_is_identified_on_the_other(
    hosts: Hosts,
) -> None:
    account = tencent.tencent_account()
    probe = {"image": ("probe.jpg", _photo(0, 1))}
    with hosts.a.client() as a, hosts.b.client() as b:
        for person, identity in (("bob", 1), ("carol", 2)):
            photo = {"image": ("face.jpg", _photo(identity, 0))}
            body = {"person_id": person, "group_ids[0]": "g"}
            made = tencent.post(a, "/face/newperson", account, body, files=photo)
            assert tencent.code_of(made) == 0, made.text
        identify = {"group_id": "g"}
        before = tencent.post(b, "/face/identify", account, identify, files=probe)
        assert "alice" not in _person_ids(before)
        photo = {"image": ("face.jpg", _photo(0, 0))}
        body = {"person_id": "alice", "group_ids[0]": "g"}
        made = tencent.post(a, "/face/newperson", account, body, files=photo)
        assert tencent.code_of(made) == 0, made.text
        found = tencent.post(b, "/face/identify", account, identify, files=probe)
        assert _person_ids(found)[0] == "alice"
        gone = tencent.post(b, "/face/delperson", account, {"person_id": "alice"})
        assert tencent.code_of(gone) == 0, gone.text
        after = tencent.post(a, "/face/identify", account, identify, files=probe)
        assert "alice" not in _person_ids(after)


def test_huawei_door_a_face_added_on_one_host_is_found_on_the_other(hosts: Hosts) -> None:
    account = huawei.huawei_account()

    def image(identity: int, index: int) -> str:
        return base64.b64encode(_photo(identity, index)).decode()

    with hosts.a.client() as a, hosts.b.client() as b:
        made = huawei.signed(a, account, "POST", "/face-sets", body={"face_set_name": "lib"})
        assert made.status_code == 200, made.text
        for identity in (1, 2):
            face = {"image_base64": image(identity, 0)}
            added = huawei.signed(a, account, "POST", "/face-sets/lib/faces", body=face)
            assert added.status_code == 200, added.text

        def search(client: httpx.Client) -> list[str]:
            body = {"image_base64": image(0, 1), "top_n": 10}
            found = huawei.signed(client, account, "POST", "/face-sets/lib/search", body=body)
            assert found.status_code == 200, found.text
            return [face["face_id"] for face in found.json()["faces"]]

        search(b)  # B knows the face set before A adds to it
        added = huawei.signed(
            a, account, "POST", "/face-sets/lib/faces", body={"image_base64": image(0, 0)}
        )
        face_id = added.json()["faces"][0]["face_id"]
        assert search(b)[0] == face_id
        removed = huawei.signed(
            b, account, "DELETE", "/face-sets/lib/faces", query=[("face_id", face_id)]
        )
        assert removed.status_code == 200, removed.text
        assert face_id not in search(a)


def _persons(sdk: AcsClient, site: PhotoServer, image: str) -> list[str]:
    found = alibaba.call(sdk, SearchPersonRequest, {"groupId": "g", "url": site.url(f"/{image}")})
    assert found["code"] == 200 and found["data"]["code"] == 200, found
    return [person["personId"] for person in found["data"]["persons"]]


def test_alibaba_door_a_face_added_on_one_host_is_found_on_the_other(
    hosts: Hosts,
    photos: PhotoServer,  # noqa: F811 - the imported fixture
) -> None:
    account = alibaba.alibaba_account()
    alice, bob = identity_photos(3), identity_photos(3, skip=1)
    a, b = (alibaba.client(account, host.port) for host in (hosts.a, hosts.b))
    for person in ("alice", "bob"):
        alibaba.call(a, AddPersonRequest, {"personId": person, "groupIds": ["g"]})
    alibaba.call(a, AddFacesRequest, {"personId": "bob", "urls": [photos.url(f"/{bob[0]}")]})
    assert "alice" not in _persons(b, photos, alice[2])  # B knows the group before A adds

    added = alibaba.call(
        a, AddFacesRequest, {"personId": "alice", "urls": [photos.url(f"/{alice[0]}")]}
    )
    (item,) = added["data"]["faceImageItems"]
    assert _persons(b, photos, alice[2])[0] == "alice"
    alibaba.call(b, DeleteFacesRequest, {"personId": "alice", "faceIds": [item["faceId"]]})
    assert "alice" not in _persons(a, photos, alice[2])


def _fire(calls: list[tuple[Server, str, dict]]) -> Counter:
    """Every call at once, one thread and connection each; (HTTP status, status) counts."""

    def send(call: tuple[Server, str, dict]) -> tuple[int, str]:
        server, path, body = call
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            response = client.post(path, json=body)
        return response.status_code, response.json()["status"]

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return Counter(pool.map(send, calls))


def test_a_quota_is_never_overshot_by_writers_on_two_hosts(hosts: Hosts) -> None:
    creds = make_account(quota={**DEFAULT_QUOTA, "persons": 5})
    calls = [
        (host, "/person/create", {**creds.query, "name": f"p{n}"})
        for n in range(10)
        for host in (hosts.a, hosts.b)
    ]
    assert _fire(calls) == {(200, "OK"): 5, (400, "QUOTA_EXCEEDED"): 15}


def test_a_rate_limit_is_shared_by_two_hosts(hosts: Hosts) -> None:
    creds = make_account(rate_limit="10q/60s")
    away_from_a_window_edge(60)
    calls = [(host, "/info/api", creds.query) for _ in range(10) for host in (hosts.a, hosts.b)]
    assert _fire(calls) == {(200, "OK"): 10, (403, "RATE_LIMIT_EXCEEDED"): 10}


def test_index_rebuild_runs_while_both_hosts_serve(hosts: Hosts) -> None:
    creds = make_account()
    with hosts.a.client() as a, hosts.b.client() as b:
        faces, faceset, probe = _faceset_and_probe(creds, a, a, 5)
        search = {"face_id": probe, "faceset_id": faceset, "top": 5}
        expected = reply(post(b, "/face/search", creds, **search))["candidates"]
        assert expected[0]["face_id"] == faces[0]

        answers: list[list[dict]] = []
        stop = threading.Event()

        def keep_searching(client: httpx.Client) -> None:
            while not stop.is_set():
                answers.append(reply(post(client, "/face/search", creds, **search))["candidates"])

        searchers = [threading.Thread(target=keep_searching, args=(c,)) for c in (a, b)]
        for searcher in searchers:
            searcher.start()
        try:
            rebuilt = subprocess.run(
                [sys.executable, "-m", "app", "index", "rebuild", "--account", creds.api_id],
                cwd=REPO_ROOT,
                env={**os.environ, **hosts.env},
                capture_output=True,
                text=True,
                timeout=300,
            )
        finally:
            stop.set()
            for searcher in searchers:
                searcher.join(60)
        assert rebuilt.returncode == 0, rebuilt.stderr
        summary = json.loads(rebuilt.stdout.splitlines()[-1])
        assert summary == {"backend": "milvus", "collections": 1, "faces": 5}
        assert answers and [answer for answer in answers if answer != expected] == []
        assert reply(post(a, "/face/search", creds, **search))["candidates"] == expected
        assert reply(post(b, "/face/search", creds, **search))["candidates"] == expected


def test_the_hosts_keep_their_own_data_folders(hosts: Hosts) -> None:
    """Separate hosts share nothing on disk: neither writes a server key file (the key is in
    the settings) nor a milvus-lite folder."""
    for host in (hosts.a, hosts.b):
        data_dir = Path(host.log_path).parent
        assert not (data_dir / "secret.key").exists() and not (data_dir / "milvus.db").exists()

