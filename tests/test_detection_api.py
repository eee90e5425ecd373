"""/face/detection, /info/image and /info/face through HTTP, on both databases, with real photos.

Faces always come from real photos (the models dir's test photos and the CelebA dev set); only the
refused inputs are synthetic. `url` downloads go to small local HTTP servers: one on 127.0.0.2
(allow-listed by the operator setting for the tests that need it) and one on 127.0.0.1 serving a
real photo, so a missing SSRF check would show up as a 200 rather than pass unnoticed.
"""

from __future__ import annotations

import re
import struct
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import get_settings
from tests.conftest import Credentials
from tests.utils.api import HEX32, fails, literal_ok
from tests.utils.detection import (
    ATTRIBUTE_KEYS,
    EMOTION_KEYS,
    FACE_KEYS,
    MUST_SPECIFY,
    TOP_KEYS,
    celeba_photo,
    check_detection_face,
    detect,
    detect_url,
    encode,
    is_int,
    is_number,
    model_photo,
    opened,
    rect_of,
)
from tests.utils.photo_server import PhotoServer

# --- local download servers --------------------------------------------------------------------


@pytest.fixture
def loopback_server() -> Iterator[PhotoServer]:
    """Serves a real photo on 127.0.0.1, which the server must never fetch from."""
    server = PhotoServer("127.0.0.1")
    server.routes["/x.jpg"] = (200, {"Content-Type": "image/jpeg"}, model_photo("yaoming.jpg"))
    yield server
    server.close()


@pytest.fixture
def allowed_server(
    configured: str, monkeypatch: pytest.MonkeyPatch, loopback_server: PhotoServer
) -> Iterator[PhotoServer]:
    """Serves on 127.0.0.2, which the operator allow-lists for this test only."""
    monkeypatch.setenv("FACESRV_URL_ALLOWLIST", "127.0.0.2/32")
    get_settings.cache_clear()
    server = PhotoServer("127.0.0.2")
    server.routes["/x.jpg"] = (200, {"Content-Type": "image/jpeg"}, model_photo("yaoming.jpg"))
    server.routes["/to-loopback"] = (302, {"Location": loopback_server.url("/x.jpg")}, b"")
    server.routes["/to-self"] = (302, {"Location": "/x.jpg"}, b"")
    yield server
    server.close()
    get_settings.cache_clear()


# --- a one-face photo: shape, types, options ---------------------------------------------------


def test_one_face_photo_has_the_seed_shape(client: TestClient, account: Credentials) -> None:
    data = celeba_photo()
    width, height = opened(data).size
    response = detect(client, account, data)
    body = literal_ok(response)
    assert list(body) == TOP_KEYS
    assert HEX32.match(body["image_id"]) and HEX32.match(body["request_id"])
    assert (body["width"], body["height"]) == (width, height)
    assert is_int(body["width"]) and is_int(body["height"])
    (face,) = body["faces"]
    assert list(face) == FACE_KEYS
    check_detection_face(face, width, height)
    # A sane box for a portrait: a real share of the frame, roughly square.
    box_w = face["rect"]["right"] - face["rect"]["left"]
    box_h = face["rect"]["bottom"] - face["rect"]["top"]
    assert box_w * box_h > 0.02 * width * height
    assert 0.5 < box_w / box_h < 1.3
    # Upright face: brows above pupils above nose tip above mouth above chin (21-point scheme).
    ys = [point[1] for point in face["landmarks21"]]
    assert ys[1] < ys[7] < ys[13] < ys[16] < ys[20]
    raw = response.text
    assert "true" not in raw and "false" not in raw and "null" not in raw


def test_landmarks106_and_attributes_on_request(client: TestClient, account: Credentials) -> None:
    data = model_photo("yaoming.jpg")
    only_106 = literal_ok(detect(client, account, data, landmarks106=1))
    (face,) = only_106["faces"]
    assert list(face) == [*FACE_KEYS, "landmarks106"]
    assert len(face["landmarks106"]) == 106
    assert all(len(p) == 2 and all(map(is_number, p)) for p in face["landmarks106"])

    only_attributes = literal_ok(detect(client, account, data, attributes=1))
    (face,) = only_attributes["faces"]
    assert list(face) == [*FACE_KEYS, "attributes"]

    only_emotions = literal_ok(detect(client, account, data, emotions=1))
    (face,) = only_emotions["faces"]
    assert list(face) == [*FACE_KEYS, "emotions"]

    every = detect(client, account, data, landmarks106=1, attributes=1, emotions=1)
    (face,) = literal_ok(every)["faces"]
    assert list(face) == [*FACE_KEYS, "landmarks106", "attributes", "emotions"]
    attributes, emotions = face["attributes"], face["emotions"]
    assert list(attributes) == ATTRIBUTE_KEYS
    assert list(emotions) == EMOTION_KEYS
    for values in (attributes, emotions):
        assert all(is_int(value) and 0 <= value <= 100 for value in values.values()), values
    assert attributes["gender"] >= 50  # Yao Ming
    assert 15 <= attributes["age"] <= 60
    assert attributes["smile"] >= 1
    # Clients call int() on the raw text: every value is a bare integer.
    for name in [*attributes, *emotions]:
        assert re.search(rf'"{name}":\d{{1,3}}[,}}]', every.text), name


def test_attractive_can_be_turned_off(
    client: TestClient, account: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.services.detection import get_analyzer

    monkeypatch.setenv("FACESRV_ATTRACTIVE", "0")
    get_settings.cache_clear()
    get_analyzer.cache_clear()
    try:
        body = literal_ok(detect(client, account, model_photo("yaoming.jpg"), attributes=1))
    finally:
        get_settings.cache_clear()
        get_analyzer.cache_clear()
    (face,) = body["faces"]
    assert list(face["attributes"]) == [key for key in ATTRIBUTE_KEYS if key != "attractive"]


def test_team_photo_finds_many_faces(client: TestClient, account: Credentials) -> None:
    data = model_photo("players.jpg")
    width, height = opened(data).size
    body = literal_ok(detect(client, account, data))
    assert len(body["faces"]) >= 20
    for face in body["faces"]:
        check_detection_face(face, width, height)
    assert len({face["face_id"] for face in body["faces"]}) == len(body["faces"])


def test_odd_multipart_file_part_is_still_the_image(
    client: TestClient, account: Credentials
) -> None:
    response = detect(
        client, account, celeba_photo(), filename="x.mp3", content_type="application/octet-stream"
    )
    assert len(literal_ok(response)["faces"]) == 1


# --- refusals ----------------------------------------------------------------------------------


def test_missing_file_and_url(client: TestClient, account: Credentials) -> None:
    response = client.post("/face/detection", params=account.query)
    fails(response, "INVALID_ARGUMENT")
    assert response.json()["reason"] == MUST_SPECIFY


def test_both_file_and_url(client: TestClient, account: Credentials) -> None:
    response = detect(client, account, celeba_photo(), form={"url": "http://example.com/x.jpg"})
    fails(response, "INVALID_ARGUMENT")


def test_text_bytes_are_a_corrupt_image(client: TestClient, account: Credentials) -> None:
    response = detect(client, account, b"this is a text file, not a picture\n" * 20)
    fails(response, "CORRUPT_IMAGE")


def test_truncated_jpeg_is_a_corrupt_image(client: TestClient, account: Credentials) -> None:
    data = celeba_photo()
    fails(detect(client, account, data[: len(data) // 2]), "CORRUPT_IMAGE")


def test_webp_is_refused_as_a_format(client: TestClient, account: Credentials) -> None:
    webp = encode(opened(celeba_photo()), "WEBP")
    assert webp[8:12] == b"WEBP"
    fails(detect(client, account, webp), "INVALID_IMAGE_FORMAT_OR_SIZE")


@pytest.mark.parametrize("size", [(8, 8), (8, 100), (100, 8), (4001, 16), (16, 4001)])
def test_sides_out_of_range(client: TestClient, account: Credentials, size: tuple) -> None:
    data = encode(Image.new("RGB", size, (120, 90, 60)), "PNG")
    fails(detect(client, account, data), "INVALID_IMAGE_FORMAT_OR_SIZE")


def test_sides_at_the_limits_are_accepted(client: TestClient, account: Credentials) -> None:
    data = encode(Image.new("RGB", (4000, 9), (120, 90, 60)), "PNG")
    body = literal_ok(detect(client, account, data))
    assert (body["width"], body["height"], body["faces"]) == (4000, 9, [])


def test_nine_pixel_image_has_no_faces(client: TestClient, account: Credentials) -> None:
    data = encode(Image.new("RGB", (9, 9), (200, 180, 160)), "PNG")
    response = detect(client, account, data)
    body = literal_ok(response)
    assert (body["width"], body["height"], body["faces"]) == (9, 9, [])
    assert '"faces":[]' in response.text


def test_over_5_mb_is_too_big(client: TestClient, account: Credentials) -> None:
    noise = np.random.default_rng(7).integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG", compress_level=1)
    assert 5 * 1024 * 1024 < len(data) < 16 * 1024 * 1024  # under the request-body cap
    fails(detect(client, account, data), "IMAGE_FILE_SIZE_TOO_BIG")


def test_body_over_the_request_cap_is_413(client: TestClient, account: Credentials) -> None:
    data = celeba_photo() + bytes(17 * 1024 * 1024)  # a JPEG padded past the 16 MB body cap
    response = detect(client, account, data)
    assert response.status_code == 413, response.text
    assert response.json()["status"] == "REQUEST_ENTITY_TOO_LARGE"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def test_decompression_bomb_is_refused_before_decoding(
    client: TestClient, account: Credentials
) -> None:
    side = 30000
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * side) * 64, 9)  # a few rows; the rest is missing
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )
    assert len(bomb) < 100_000
    started = time.monotonic()
    fails(detect(client, account, bomb), "INVALID_IMAGE_FORMAT_OR_SIZE")
    assert time.monotonic() - started < 5


# --- orientation, odd formats, small and large faces -------------------------------------------


def test_exif_orientation_6_is_applied(client: TestClient, account: Credentials) -> None:
    data = model_photo("yaoming.jpg")
    upright = opened(data)
    (reference,) = literal_ok(detect(client, account, data))["faces"]
    # Orientation 6: the stored pixels must be turned 90 degrees clockwise to be shown upright.
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = encode(stored, "JPEG", quality=95, exif=exif)
    assert opened(turned).getexif()[0x0112] == 6

    response = detect(client, account, turned)
    body = literal_ok(response)
    assert list(body) == [
        "image_id",
        "exif_orientation",
        "width",
        "height",
        "faces",
        "status",
        "request_id",
    ]
    assert body["exif_orientation"] == 6
    assert (body["width"], body["height"]) == upright.size
    (face,) = body["faces"]
    check_detection_face(face, *upright.size)
    assert np.abs(rect_of(face) - rect_of(reference)).max() < 0.1 * upright.size[0]


def test_plain_exif_orientation_1_is_reported(client: TestClient, account: Credentials) -> None:
    exif = Image.Exif()
    exif[0x0112] = 1
    data = encode(opened(celeba_photo()), "JPEG", quality=95, exif=exif)
    body = literal_ok(detect(client, account, data))
    assert body["exif_orientation"] == 1
    assert len(body["faces"]) == 1


@pytest.mark.parametrize(
    ("transpose", "expected"),
    [(Image.Transpose.ROTATE_270, "cw270"), (Image.Transpose.ROTATE_90, "cw90")],
)
def test_auto_rotate_turns_a_sideways_photo_upright(
    client: TestClient, account: Credentials, transpose: Image.Transpose, expected: str
) -> None:
    """ROTATE_270 turns the photo 90 degrees clockwise, so the server must turn it cw270."""
    data = model_photo("yaoming.jpg")
    upright = opened(data)
    (reference,) = literal_ok(detect(client, account, data))["faces"]
    sideways = encode(upright.transpose(transpose), "PNG")

    body = literal_ok(detect(client, account, sideways, auto_rotate=1))
    assert list(body) == ["image_id", "rotate", "width", "height", "faces", "status", "request_id"]
    assert body["rotate"] == expected
    assert (body["width"], body["height"]) == upright.size  # sizes after the turn
    (face,) = body["faces"]
    assert np.abs(rect_of(face) - rect_of(reference)).max() < 0.1 * upright.size[0]
    ys = [point[1] for point in face["landmarks21"]]
    assert ys[7] < ys[13] < ys[16]  # eyes above nose above mouth: really upright


def test_auto_rotate_leaves_an_upright_photo_alone(
    client: TestClient, account: Credentials
) -> None:
    body = literal_ok(detect(client, account, celeba_photo(), auto_rotate=1))
    assert "rotate" not in body
    assert len(body["faces"]) == 1


def test_frame_filling_face(client: TestClient, account: Credentials) -> None:
    data = celeba_photo()
    (face,) = literal_ok(detect(client, account, data))["faces"]
    left, top, right, bottom = rect_of(face)
    tight = opened(data).crop((left, top, right, bottom)).resize((112, 112), Image.BICUBIC)
    body = literal_ok(detect(client, account, encode(tight, "PNG")))
    assert (body["width"], body["height"]) == (112, 112)
    assert len(body["faces"]) == 1


def test_png_with_alpha(client: TestClient, account: Credentials) -> None:
    rgba = opened(celeba_photo()).convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, dtype=np.uint8)
    alpha[:, : rgba.size[0] // 8] = 0  # a transparent strip at the left edge
    rgba.putalpha(Image.fromarray(alpha))
    data = encode(rgba, "PNG")
    assert opened(data).mode == "RGBA"
    body = literal_ok(detect(client, account, data, filename="alpha.png", content_type="image/png"))
    assert len(body["faces"]) == 1


def test_gif(client: TestClient, account: Credentials) -> None:
    data = encode(opened(celeba_photo()), "GIF")
    assert data.startswith(b"GIF89a") or data.startswith(b"GIF87a")
    body = literal_ok(detect(client, account, data, filename="x.gif", content_type="image/gif"))
    assert len(body["faces"]) == 1


# --- url ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/x.jpg",
        "http://localhost:{port}/x.jpg",
        "http://10.0.0.1/x.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.2:{port}/x.jpg",  # loopback too, and not allow-listed here
    ],
)
def test_url_to_private_addresses_is_refused(
    client: TestClient, account: Credentials, loopback_server: PhotoServer, url: str
) -> None:
    started = time.monotonic()
    response = detect_url(client, account, url.format(port=loopback_server.port))
    fails(response, "DOWNLOAD_ERROR", reason="not allowed")
    assert time.monotonic() - started < 3  # refused up front, not after a connect attempt


def test_url_from_an_allow_listed_server(
    client: TestClient, account: Credentials, allowed_server: PhotoServer
) -> None:
    body = literal_ok(detect_url(client, account, allowed_server.url("/x.jpg")))
    assert len(body["faces"]) == 1
    assert (body["width"], body["height"]) == opened(model_photo("yaoming.jpg")).size
    redirected = literal_ok(detect_url(client, account, allowed_server.url("/to-self")))
    assert len(redirected["faces"]) == 1


def test_url_redirect_to_loopback_is_refused(
    client: TestClient, account: Credentials, allowed_server: PhotoServer
) -> None:
    response = detect_url(client, account, allowed_server.url("/to-loopback"))
    fails(response, "DOWNLOAD_ERROR", reason="127.0.0.1")


def test_url_redirect_with_a_malformed_location(
    client: TestClient, account: Credentials, allowed_server: PhotoServer
) -> None:
    """Any public server can send this Location; it is the server's fault, not a 500."""
    allowed_server.routes["/bad-location"] = (302, {"Location": "http://[::1"}, b"")
    response = detect_url(client, account, allowed_server.url("/bad-location"))
    fails(response, "DOWNLOAD_ERROR", reason="unusable redirect")


def test_url_download_errors(
    client: TestClient, account: Credentials, allowed_server: PhotoServer
) -> None:
    fails(detect_url(client, account, allowed_server.url("/missing")), "DOWNLOAD_ERROR")
    with ThreadingHTTPServer(("127.0.0.2", 0), BaseHTTPRequestHandler) as probe:
        closed_port = probe.server_address[1]  # nothing listens there once the probe closes
    fails(detect_url(client, account, f"http://127.0.0.2:{closed_port}/x.jpg"), "DOWNLOAD_ERROR")
    allowed_server.routes["/text"] = (200, {"Content-Type": "text/plain"}, b"hello" * 100)
    fails(detect_url(client, account, allowed_server.url("/text")), "CORRUPT_IMAGE")
    big = b"\xff\xd8\xff" + bytes(6 * 1024 * 1024)
    allowed_server.routes["/big.jpg"] = (200, {"Content-Type": "image/jpeg"}, big)
    fails(detect_url(client, account, allowed_server.url("/big.jpg")), "IMAGE_FILE_SIZE_TOO_BIG")


@pytest.mark.slow
def test_url_download_timeout(
    client: TestClient, account: Credentials, allowed_server: PhotoServer
) -> None:
    started = time.monotonic()
    fails(detect_url(client, account, allowed_server.url("/slow")), "DOWNLOAD_TIMEOUT")
    assert 4 < time.monotonic() - started < 7.5  # the seed's 5 s download limit
