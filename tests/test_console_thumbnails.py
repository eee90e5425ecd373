"""Face thumbnails: made where faces are stored, a few KB each, served to the console by
POST /console/api/thumbnails/{face_id} with the SenseTime credentials, scoped to the account;
and the console's page and assets served offline."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, update

from app.config import get_settings
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


def test_own_face_is_served_as_jpeg(client: TestClient, account: Credentials) -> None:
    (face_id,) = _detect(client, account)
    for how in ({"data": account.query}, {"params": account.query}):
        response = client.post(f"{THUMBNAILS}/{face_id}", **how)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        assert response.content == _stored(face_id)
    assert client.post(f"{THUMBNAILS}/{face_id.upper()}", data=account.query).status_code == 200


def test_another_accounts_face_is_unknown(client: TestClient, account: Credentials) -> None:
    (face_id,) = _detect(client, account)
    stranger = make_account()
    for unknown in (face_id, UNKNOWN, "not-an-id"):
        response = client.post(f"{THUMBNAILS}/{unknown}", data=stranger.query)
        assert response.status_code == 404
        assert response.json()["status"] == "NOT_FOUND"


def test_bad_credentials_are_refused_as_sensetime_does(
    client: TestClient, account: Credentials
) -> None:
    (face_id,) = _detect(client, account)
    wrong = {"api_id": account.api_id, "api_secret": "wrong"}
    for data in (wrong, {}):
        response = client.post(f"{THUMBNAILS}/{face_id}", data=data)
        assert response.status_code == 401
        assert response.json()["status"] == "UNAUTHORIZED"


def test_thumbnails_off_keeps_none(
    client: TestClient, account: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACESRV_THUMBNAILS", "0")
    get_settings.cache_clear()
    (face_id,) = _detect(client, account)
    assert _stored(face_id) is None
    response = client.post(f"{THUMBNAILS}/{face_id}", data=account.query)
    assert (response.status_code, response.content) == (204, b"")  # the console's placeholder


def test_a_purged_face_takes_its_thumbnail_along(client: TestClient, account: Credentials) -> None:
    (face_id,) = _detect(client, account)
    with session_scope() as db:
        row_id = db.scalar(select(Face.id).where(Face.public_id == face_id))
        past = datetime.now(UTC) - timedelta(days=1)
        db.execute(update(Face).where(Face.id == row_id).values(expires_at=past))
    purge_expired()
    with session_scope() as db:
        assert db.get(FaceThumbnail, row_id) is None  # ON DELETE CASCADE, SQLite included
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
