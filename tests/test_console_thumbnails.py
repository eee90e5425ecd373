"""Face thumbnails: made where faces are stored, a few KB each, served to the console many at a
time by POST /console/api/thumbnails with the SenseTime credentials, scoped to the account; and
the console's page and assets served offline."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, update

from app.config import get_settings
from app.console.routes import MAX_THUMBNAILS
from app.db.models import Face, FaceThumbnail
from app.db.session import session_scope
from app.services.upkeep import purge_expired
from app.vision.thumbnail import THUMBNAIL_SIZE, face_thumbnail
from tests.conftest import Credentials, make_account
from tests.utils.api import UNKNOWN

THUMBNAILS = "/console/api/thumbnails"


def _detect(client: TestClient, creds: Credentials, photo: str = "yaoming.jpg") -> list[str]:
    data = (get_settings().models_dir / photo).read_bytes()
    response = client.post("/face/detection", params=creds.query, files={"file": data})
    assert response.status_code == 200, response.text
    return [face["face_id"] for face in response.json()["faces"]]


def _stored(face_id: str) -> bytes | None:
    with session_scope() as db:
        return db.scalar(
            select(FaceThumbnail.jpeg)
            .join(Face, Face.id == FaceThumbnail.face_id)
            .where(Face.public_id == face_id)
        )


def test_every_detected_face_keeps_a_small_jpeg(client: TestClient, account: Credentials) -> None:
    face_ids = _detect(client, account, "gdp.jpg")
    assert len(face_ids) == 6
    for face_id in face_ids:
        jpeg = _stored(face_id)
        assert jpeg is not None
        assert len(jpeg) < 8_000  # a few KB: 3.1 KB median on CelebA faces
        picture = Image.open(io.BytesIO(jpeg))
        assert (picture.format, picture.size) == ("JPEG", (THUMBNAIL_SIZE, THUMBNAIL_SIZE))


def _thumbnails(client: TestClient, data: dict, **params: str) -> dict[str, str | None]:
    response = client.post(THUMBNAILS, data=data, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "OK"
    return body["thumbnails"]


def test_own_faces_are_served_in_one_call(client: TestClient, account: Credentials) -> None:
    face_ids = _detect(client, account, "gdp.jpg")
    for data, params in (({**account.query, "face_ids": ",".join(face_ids)}, {}),
                         ({"face_ids": ",".join(face_ids)}, account.query)):  # fmt: skip
        found = _thumbnails(client, data, **params)
        assert list(found) == face_ids  # keyed as sent, in order
        for face_id in face_ids:
            assert base64.b64decode(found[face_id]) == _stored(face_id)
    upper = face_ids[0].upper()
    found = _thumbnails(client, {**account.query, "face_ids": upper})
    assert base64.b64decode(found[upper]) == _stored(face_ids[0])


def test_one_call_counts_once_against_the_rate_limit(
    client: TestClient, account: Credentials
) -> None:
    face_ids = _detect(client, account, "gdp.jpg")
    data = {**account.query, "face_ids": ",".join(face_ids)}
    before = int(client.post(THUMBNAILS, data=data).headers["X-RateLimit-Remaining"])
    after = int(client.post(THUMBNAILS, data=data).headers["X-RateLimit-Remaining"])
    assert before - after == 1


def test_foreign_and_unknown_faces_are_alike(client: TestClient, account: Credentials) -> None:
    """Another account's face answers what a made-up id does: nothing tells that it exists."""
    (own,) = _detect(client, account)
    (foreign,) = _detect(client, make_account())
    ids = [own, foreign, UNKNOWN, "not-an-id"]
    found = _thumbnails(client, {**account.query, "face_ids": ",".join(ids)})
    assert found[own] is not None
    assert {face_id: found[face_id] for face_id in ids[1:]} == dict.fromkeys(ids[1:])


def test_too_many_or_no_ids_are_refused(client: TestClient, account: Credentials) -> None:
    many = ",".join(f"{index:032x}" for index in range(MAX_THUMBNAILS + 1))
    for face_ids, says in (
        (many, f"at most {MAX_THUMBNAILS} ids"),
        ("", "required"),
        (None, "required"),
    ):
        data = {**account.query} if face_ids is None else {**account.query, "face_ids": face_ids}
        response = client.post(THUMBNAILS, data=data)
        assert response.status_code == 400, response.text
        assert response.json()["status"] == "INVALID_ARGUMENT"
        assert says in response.json()["reason"]
    exactly = ",".join(f"{index:032x}" for index in range(MAX_THUMBNAILS))
    assert len(_thumbnails(client, {**account.query, "face_ids": exactly})) == MAX_THUMBNAILS


def test_bad_credentials_are_refused_as_sensetime_does(
    client: TestClient, account: Credentials
) -> None:
    (face_id,) = _detect(client, account)
    wrong = {"api_id": account.api_id, "api_secret": "wrong"}
    for data in (wrong, {}):
        response = client.post(THUMBNAILS, data={**data, "face_ids": face_id})
        assert response.status_code == 401
        assert response.json()["status"] == "UNAUTHORIZED"


def test_thumbnails_off_keeps_none(
    client: TestClient, account: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACESRV_THUMBNAILS", "0")
    get_settings.cache_clear()
    (face_id,) = _detect(client, account)
    assert _stored(face_id) is None
    found = _thumbnails(client, {**account.query, "face_ids": face_id})
    assert found == {face_id: None}  # the console's placeholder


def test_a_purged_face_takes_its_thumbnail_along(client: TestClient, account: Credentials) -> None:
    (face_id,) = _detect(client, account)
    with session_scope() as db:
        row_id = db.scalar(select(Face.id).where(Face.public_id == face_id))
        past = datetime.now(UTC) - timedelta(days=1)
        db.execute(update(Face).where(Face.id == row_id).values(expires_at=past))
    purge_expired()
    with session_scope() as db:
        assert db.get(FaceThumbnail, row_id) is None  # ON DELETE CASCADE, SQLite included
    assert _thumbnails(client, {**account.query, "face_ids": face_id}) == {face_id: None}


def test_the_per_face_endpoint_is_gone(client: TestClient, account: Credentials) -> None:
    (face_id,) = _detect(client, account)
    assert client.post(f"{THUMBNAILS}/{face_id}", data=account.query).status_code == 404


def test_a_face_at_the_border_stays_centred() -> None:
    """The square runs past the image's edge: the missing part is grey, the face in the middle."""
    rgb = np.full((100, 100, 3), 250, dtype=np.uint8)
    picture = Image.open(io.BytesIO(face_thumbnail(rgb, np.array([-20.0, -20.0, 20.0, 20.0]))))
    pixels = np.asarray(picture.convert("RGB"), dtype=int)
    assert picture.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    assert abs(pixels[5, 5] - 128).max() < 12  # outside the image: grey
    assert (pixels[-5, -5] > 235).all()  # inside: the image's own pixels


def test_console_page_and_assets_are_served(client: TestClient) -> None:
    page = client.get("/console")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("console/assets/main.js", "console/assets/console.css"):
        assert asset in page.text
        assert client.get(f"/{asset}").status_code == 200
    assert client.get("/console/assets/missing.js").status_code == 404
