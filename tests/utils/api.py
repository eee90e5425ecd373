"""Calls every API test makes: detect real faces, post with credentials, check the answer."""

from __future__ import annotations

import ast
import json
import re
import time

from fastapi.testclient import TestClient
from httpx import Client, Response

from tests.conftest import DEFAULT_QUOTA, SHARED_DATA, Credentials, require_research_photos
from tests.photos import celeba_bytes

PHOTOS = SHARED_DATA / "celeba-dev" / "images"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
UNKNOWN = "0" * 32

# Bytes of photos known to hold exactly one face; ids are per account and database, so only the
# photos are cached, never the face ids.
_single_face_photos: list[bytes] = []
_photos_seen = 0


def _photo_paths() -> list:
    require_research_photos("celeba-dev", "images")
    return sorted(PHOTOS.glob("*.jpg"))


def detect_faces(client: TestClient, creds: Credentials, count: int) -> list[str]:
    """`count` fresh face ids of `creds`, one per photo, from the real /face/detection."""
    global _photos_seen
    face_ids: list[str] = []
    paths = _photo_paths()  # skips the test at once when the research photo set is absent
    for photo in list(_single_face_photos):
        if len(face_ids) == count:
            return face_ids
        face_ids.append(_detect_one(client, creds, photo))
    while len(face_ids) < count:
        assert _photos_seen < len(paths), "ran out of single-face photos"
        photo = paths[_photos_seen].read_bytes()
        _photos_seen += 1
        response = client.post("/face/detection", params=creds.query, files={"file": photo})
        assert response.status_code == 200, response.text
        faces = response.json()["faces"]
        if len(faces) == 1:
            _single_face_photos.append(photo)
            face_ids.append(faces[0]["face_id"])
    return face_ids


def _detect_one(client: TestClient, creds: Credentials, photo: bytes) -> str:
    response = client.post("/face/detection", params=creds.query, files={"file": photo})
    assert response.status_code == 200, response.text
    (face,) = response.json()["faces"]
    return face["face_id"]


def post(client: Client, path: str, creds: Credentials, **params: object) -> Response:
    """A JSON POST with the credentials in the body, as most SDKs send it."""
    return client.post(path, json={**creds.query, **params})


def ok(response: Response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "OK", body
    assert body["request_id"]
    return body


def fails(response: Response, status: str, http: int = 400, reason: str | None = None) -> dict:
    assert response.status_code == http, response.text
    body = response.json()
    assert body["status"] == status, body
    if reason is not None:
        assert reason in body.get("reason", ""), body
    return body


def literal_ok(response: Response) -> dict:
    """`ok`, and also readable by the clients that parse answers with `ast.literal_eval`."""
    body = ok(response)
    raw = response.content.decode("ascii")
    assert ast.literal_eval(raw) == json.loads(raw)
    return body


def reply(response: Response) -> dict:
    """The body with its HTTP code as `_code`, for tests that check both in one assertion."""
    return {"_code": response.status_code, **response.json()}


def detect_face(client: Client, creds: Credentials, image: str) -> str:
    """The first face of a CelebA photo, by file name, detected by the real endpoint."""
    response = client.post(
        "/face/detection", params=creds.query, files={"file": celeba_bytes(image)}
    )
    assert response.status_code == 200, response.text
    return response.json()["faces"][0]["face_id"]


def keys(body: dict, *expected: str) -> None:
    """The seed sample's key order, then request_id last."""
    assert list(body) == [*expected, "request_id"], list(body)


def usage(client: TestClient, creds: Credentials) -> dict:
    return ok(client.get("/info/api", params=creds.query))["usage"]


def info(client: TestClient, creds: Credentials, kind: str, public_id: str) -> dict:
    return ok(client.get(f"/info/{kind}", params={**creds.query, f"{kind}_id": public_id}))


def listed(client: TestClient, creds: Credentials, kind: str, **params: object) -> list[str]:
    body = ok(client.get(f"/info/list_{kind}s", params={**creds.query, **params}))
    keys(body, "status", f"{kind}s")
    return [item[f"{kind}_id"] for item in body[f"{kind}s"]]


def new_person(client: TestClient, creds: Credentials, name: str = "p", **params: object) -> str:
    return ok(post(client, "/person/create", creds, name=name, **params))["person_id"]


def new_group(client: TestClient, creds: Credentials, name: str = "g", **params: object) -> str:
    return ok(post(client, "/group/create", creds, name=name, **params))["group_id"]


def new_faceset(client: TestClient, creds: Credentials, name: str = "s", **params: object) -> str:
    return ok(post(client, "/faceset/create", creds, name=name, **params))["faceset_id"]


def quota(**overrides: int) -> dict[str, int]:
    return {**DEFAULT_QUOTA, **overrides}


def away_from_a_window_edge(seconds: int) -> None:
    """Fixed rate-limit windows start at multiples of `seconds`; don't let a burst straddle two."""
    into = time.time() % seconds
    if into > seconds - 8:
        time.sleep(seconds - into + 0.2)
