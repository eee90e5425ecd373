"""/info/image and /info/face: what detection stored, as the seed prints it, on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, update

from app.db.models import Face
from app.db.models import Image as ImageRow
from app.db.session import session_scope
from app.services.upkeep import purge_expired
from tests.conftest import Credentials, make_account
from tests.utils.api import fails, literal_ok
from tests.utils.detection import (
    ATTRIBUTE_KEYS,
    RECT_KEYS,
    celeba_photo,
    detect,
    encode,
    is_int,
    is_number,
    model_photo,
    set_expired,
)

# --- /info/image and /info/face ----------------------------------------------------------------


def info(client: TestClient, creds: Credentials, path: str, **params: object) -> httpx.Response:
    return client.get(path, params={**creds.query, **{k: str(v) for k, v in params.items()}})


def check_info_face(face: dict, detected: dict) -> None:
    """/info/* keep the seed's types: rect and landmarks21 as strings, eye_dist an integer."""
    assert face["face_id"] == detected["face_id"]
    assert list(face["rect"]) == RECT_KEYS
    assert face["rect"] == {key: str(value) for key, value in detected["rect"].items()}
    assert len(face["landmarks21"]) == 21
    for point, original in zip(face["landmarks21"], detected["landmarks21"], strict=True):
        assert all(isinstance(value, str) for value in point), point
        assert [float(value) for value in point] == pytest.approx(original, abs=1e-5)
    assert face["eye_dist"] == detected["eye_dist"] and is_int(face["eye_dist"])
    assert len(face["landmarks106"]) == 106
    assert all(len(p) == 2 and all(map(is_number, p)) for p in face["landmarks106"])


def test_info_image(client: TestClient, account: Credentials) -> None:
    detected = literal_ok(detect(client, account, celeba_photo(), form={"user_data": "test"}))
    image_id = detected["image_id"]

    plain = info(client, account, "/info/image", image_id=image_id)
    assert plain.status_code == 200, plain.text
    body = plain.json()
    assert list(body) == ["status", "image_id", "width", "height", "user_data", "request_id"]
    assert body["image_id"] == image_id
    assert (body["width"], body["height"]) == (detected["width"], detected["height"])
    assert body["user_data"] == "test"

    full = info(client, account, "/info/image", image_id=image_id, with_faces=1).json()
    assert list(full) == [
        "status",
        "image_id",
        "width",
        "height",
        "user_data",
        "faces",
        "request_id",
    ]
    (face,) = full["faces"]
    assert list(face) == ["face_id", "rect", "landmarks21", "eye_dist", "landmarks106"]
    check_info_face(face, detected["faces"][0])


def test_info_image_without_faces_in_the_photo(client: TestClient, account: Credentials) -> None:
    data = encode(Image.new("RGB", (9, 9), (200, 180, 160)), "PNG")
    image_id = literal_ok(detect(client, account, data))["image_id"]
    body = info(client, account, "/info/image", image_id=image_id, with_faces=1).json()
    assert body["faces"] == [] and body["user_data"] == ""


def test_info_face(client: TestClient, account: Credentials) -> None:
    detected = literal_ok(detect(client, account, celeba_photo(), form={"user_data": "u"}))
    (detected_face,) = detected["faces"]
    face_id = detected_face["face_id"]

    plain = info(client, account, "/info/face", face_id=face_id)
    assert plain.status_code == 200, plain.text
    body = plain.json()
    # No attributes were asked for at detection, so there are none to show.
    assert list(body) == [
        "status",
        "face_id",
        "rect",
        "landmarks21",
        "eye_dist",
        "landmarks106",
        "request_id",
    ]
    check_info_face(body, detected_face)

    full = info(client, account, "/info/face", face_id=face_id, with_image=1).json()
    assert list(full)[-2:] == ["image", "request_id"]
    assert full["image"] == {
        "image_id": detected["image_id"],
        "width": detected["width"],
        "height": detected["height"],
        "user_data": "u",
    }


def test_info_face_keeps_the_detection_attributes(client: TestClient, account: Credentials) -> None:
    photo = model_photo("yaoming.jpg")
    detected = literal_ok(detect(client, account, photo, attributes=1, emotions=1))
    (detected_face,) = detected["faces"]
    body = info(client, account, "/info/face", face_id=detected_face["face_id"]).json()
    assert list(body)[-3:] == ["attributes", "emotions", "request_id"]
    check_info_face(body, detected_face)
    assert list(body["attributes"]) == ATTRIBUTE_KEYS
    assert body["attributes"] == detected_face["attributes"]
    assert body["emotions"] == detected_face["emotions"]

    image = info(client, account, "/info/image", image_id=detected["image_id"], with_faces=1).json()
    (image_face,) = image["faces"]
    assert list(image_face)[-2:] == ["attributes", "emotions"]
    assert image_face["emotions"] == detected_face["emotions"]

    # Emotions alone are stored and shown alone.
    only = literal_ok(detect(client, account, photo, emotions=1))["faces"][0]
    shown = info(client, account, "/info/face", face_id=only["face_id"]).json()
    assert "attributes" not in shown and shown["emotions"] == only["emotions"]


def test_unknown_foreign_and_expired_ids(client: TestClient, account: Credentials) -> None:
    detected = literal_ok(detect(client, account, celeba_photo()))
    image_id, face_id = detected["image_id"], detected["faces"][0]["face_id"]
    unknown = uuid.uuid4().hex
    fails(info(client, account, "/info/image", image_id=unknown), "INVALID_IMAGE")
    fails(info(client, account, "/info/face", face_id=unknown), "INVALID_FACE")

    other = make_account(name="other")
    fails(info(client, other, "/info/image", image_id=image_id), "INVALID_IMAGE")
    fails(info(client, other, "/info/face", face_id=face_id), "INVALID_FACE")
    # ... while the owner still sees both.
    assert info(client, account, "/info/image", image_id=image_id).status_code == 200
    assert info(client, account, "/info/face", face_id=face_id).status_code == 200

    set_expired(ImageRow, image_id)
    set_expired(Face, face_id)
    fails(info(client, account, "/info/image", image_id=image_id), "INVALID_IMAGE")
    fails(info(client, account, "/info/face", face_id=face_id), "INVALID_FACE")


def test_user_data_round_trips_ascii_escaped(client: TestClient, account: Credentials) -> None:
    user_data = "张伟 Zhang é"
    detected = literal_ok(detect(client, account, celeba_photo(), form={"user_data": user_data}))
    response = info(client, account, "/info/image", image_id=detected["image_id"])
    raw = response.content
    assert raw.isascii()
    assert b"\\u5f20\\u4f1f Zhang \\u00e9" in raw
    assert response.json()["user_data"] == user_data


# --- expiry purge ------------------------------------------------------------------------------


def test_purge_keeps_expired_faces_held_by_a_person_or_faceset(
    client: TestClient, account: Credentials
) -> None:
    data = celeba_photo()

    def detect_one() -> tuple[str, str]:
        body = literal_ok(detect(client, account, data))
        return body["image_id"], body["faces"][0]["face_id"]

    loose_image, loose_face = detect_one()
    person_image, person_face = detect_one()
    _, faceset_face = detect_one()
    fresh_image, fresh_face = detect_one()
    created = client.post(
        "/person/create", params=account.query, data={"name": "p", "face_id": person_face}
    ).json()
    assert created["status"] == "OK", created
    person_id = created["person_id"]
    faceset = client.post(
        "/faceset/create", params=account.query, data={"name": "s", "face_id": faceset_face}
    ).json()
    assert faceset["status"] == "OK", faceset

    for face_id in (loose_face, person_face, faceset_face):
        set_expired(Face, face_id)
    for image_id in (loose_image, person_image):
        set_expired(ImageRow, image_id)
    purge_expired()

    with session_scope() as db:
        faces_left = set(db.scalars(select(Face.public_id)))
        images_left = set(db.scalars(select(ImageRow.public_id)))
    assert loose_face not in faces_left and loose_image not in images_left
    assert {person_face, faceset_face, fresh_face} <= faces_left
    assert fresh_image in images_left
    assert person_image in images_left  # its face still points at it

    # Expired, so unusable through /info/face, but it can still leave its person.
    fails(info(client, account, "/info/face", face_id=person_face), "INVALID_FACE")
    removed = client.post(
        "/person/remove_face",
        params=account.query,
        data={"person_id": person_id, "face_id": person_face},
    ).json()
    assert removed["status"] == "OK" and removed["removed_count"] == 1, removed
    assert removed["face_count"] == 0
    purge_expired()  # now nothing holds it
    with session_scope() as db:
        assert db.scalar(select(Face.id).where(Face.public_id == person_face)) is None


def expire_at(face_ids: list[str], when: datetime) -> None:
    with session_scope() as db:
        db.execute(update(Face).where(Face.public_id.in_(face_ids)).values(expires_at=when))


def faces_left(face_ids: list[str]) -> set[str]:
    with session_scope() as db:
        return set(db.scalars(select(Face.public_id).where(Face.public_id.in_(face_ids))))


def test_purge_goes_through_faces_sharing_an_expiry_time_in_batches(
    client: TestClient, account: Credentials
) -> None:
    """Faces detected together share their expiry: batches must page through them, not stall."""
    data = celeba_photo()
    faces = [literal_ok(detect(client, account, data))["faces"][0]["face_id"] for _ in range(6)]
    held = faces[3]  # in the middle of the shared time, between batches
    created = client.post(
        "/faceset/create", params=account.query, data={"name": "s", "face_id": held}
    ).json()
    assert created["status"] == "OK", created
    expire_at(faces, datetime.now(UTC) - timedelta(minutes=1))

    purge_expired(batch=2)

    assert faces_left(faces) == {held}


def test_a_purge_since_a_time_leaves_older_expiries_to_the_full_pass(
    client: TestClient, account: Credentials
) -> None:
    data = celeba_photo()
    older, recent = (literal_ok(detect(client, account, data))["faces"][0]["face_id"] for _ in "ab")
    now = datetime.now(UTC)
    expire_at([older], now - timedelta(hours=2))
    expire_at([recent], now - timedelta(minutes=1))

    purge_expired(since=now - timedelta(hours=1))
    assert faces_left([older, recent]) == {older}
    purge_expired()
    assert faces_left([older, recent]) == set()
