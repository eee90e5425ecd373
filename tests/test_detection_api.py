"""/face/detection, /info/image and /info/face through HTTP, on both databases, with real photos.

Faces always come from real photos (the models dir's test photos and the CelebA dev set); only the
refused inputs are synthetic. `url` downloads go to small local HTTP servers: one on 127.0.0.2
(allow-listed by the operator setting for the tests that need it) and one on 127.0.0.1 serving a
real photo, so a missing SSRF check would show up as a 200 rather than pass unnoticed.
"""

from __future__ import annotations

import ast
import io
import json
import re
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, update

from app.config import get_settings
from app.db.models import Face
from app.db.models import Image as ImageRow
from app.db.session import session_scope
from app.services.upkeep import purge_expired
from tests.conftest import SHARED_DATA, Credentials, make_account

CELEBA_IMAGES = SHARED_DATA / "celeba-dev" / "images"
ONE_FACE = "000724.jpg"  # a one-face CelebA dev photo
HEX_ID = re.compile(r"^[0-9a-f]{32}$")
TOP_KEYS = ["image_id", "width", "height", "faces", "status", "request_id"]
FACE_KEYS = ["face_id", "rect", "eye_dist", "landmarks21"]
RECT_KEYS = ["left", "top", "right", "bottom"]
# The seed's order, then the live service's extras (wire-compat.md, "Beyond the seed").
ATTRIBUTE_KEYS = [
    "age",
    "gender",
    "attractive",
    "eyeglass",
    "sunglass",
    "smile",
    "eye_open",
    "mouth_open",
]
EMOTION_KEYS = [
    "angry",
    "calm",
    "disgust",
    "happy",
    "sad",
    "surprised",
    "confused",
    "squint",
    "screaming",
    "scared",
]
MUST_SPECIFY = "must specify 'file' or 'url' argument"


# --- helpers -----------------------------------------------------------------------------------


def model_photo(name: str) -> bytes:
    """players.jpg, gdp.jpg or yaoming.jpg, as the operator installed them."""
    return (get_settings().models_dir / name).read_bytes()


def celeba_photo(name: str = ONE_FACE) -> bytes:
    path = CELEBA_IMAGES / name
    if not path.is_file():
        pytest.skip(f"shared data set not found at {CELEBA_IMAGES}")
    return path.read_bytes()


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def detect(
    client: TestClient,
    creds: Credentials,
    data: bytes,
    *,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
    form: dict[str, str] | None = None,
    **params: object,
) -> httpx.Response:
    """POST the bytes as the multipart `file` part; extra params go to the query string."""
    return client.post(
        "/face/detection",
        params={**creds.query, **{key: str(value) for key, value in params.items()}},
        data=form or {},
        files={"file": (filename, data, content_type)},
    )


def detect_url(
    client: TestClient, creds: Credentials, url: str, **params: object
) -> httpx.Response:
    return client.post(
        "/face/detection",
        params={**creds.query, **{key: str(value) for key, value in params.items()}},
        data={"url": url},
    )


def ok_body(response: httpx.Response) -> dict:
    """The 200 body, also checked to be what an `ast.literal_eval` client can read."""
    assert response.status_code == 200, response.text
    raw = response.content.decode("ascii")
    body = json.loads(raw)
    assert body["status"] == "OK"
    assert ast.literal_eval(raw) == body
    return body


def assert_error(response: httpx.Response, status: str, reason: str | None = None) -> dict:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == status, body
    if reason is not None:
        assert reason in body.get("reason", ""), body
    return body


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_detection_face(face: dict, width: int, height: int) -> None:
    """The seed's per-face types and a box that lies in the image with landmarks inside it."""
    assert HEX_ID.match(face["face_id"])
    rect = face["rect"]
    assert list(rect) == RECT_KEYS
    assert all(is_int(value) for value in rect.values()), rect
    assert -2 <= rect["left"] < rect["right"] <= width + 2
    assert -2 <= rect["top"] < rect["bottom"] <= height + 2
    box_width = rect["right"] - rect["left"]
    assert is_int(face["eye_dist"]) and 0 < face["eye_dist"] < box_width
    points = face["landmarks21"]
    assert len(points) == 21
    margin = 0.25 * box_width
    for point in points:
        assert isinstance(point, list) and len(point) == 2 and all(map(is_number, point))
        assert rect["left"] - margin <= point[0] <= rect["right"] + margin
        assert rect["top"] - margin <= point[1] <= rect["bottom"] + margin


def rect_of(face: dict) -> np.ndarray:
    return np.array([face["rect"][key] for key in RECT_KEYS], dtype=float)


def set_expired(model: type[Face] | type[ImageRow], public_id: str) -> None:
    with session_scope() as db:
        result = db.execute(
            update(model)
            .where(model.public_id == public_id)
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        assert result.rowcount == 1


# --- local download servers --------------------------------------------------------------------


class PhotoServer:
    """A tiny threaded HTTP server: path -> (status, headers, body), or a delay for /slow."""

    def __init__(self, host: str) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/slow":
                    time.sleep(8)
                    return
                status, headers, body = routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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
    body = ok_body(response)
    assert list(body) == TOP_KEYS
    assert HEX_ID.match(body["image_id"]) and HEX_ID.match(body["request_id"])
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
    only_106 = ok_body(detect(client, account, data, landmarks106=1))
    (face,) = only_106["faces"]
    assert list(face) == [*FACE_KEYS, "landmarks106"]
    assert len(face["landmarks106"]) == 106
    assert all(len(p) == 2 and all(map(is_number, p)) for p in face["landmarks106"])

    only_attributes = ok_body(detect(client, account, data, attributes=1))
    (face,) = only_attributes["faces"]
    assert list(face) == [*FACE_KEYS, "attributes"]

    only_emotions = ok_body(detect(client, account, data, emotions=1))
    (face,) = only_emotions["faces"]
    assert list(face) == [*FACE_KEYS, "emotions"]

    every = detect(client, account, data, landmarks106=1, attributes=1, emotions=1)
    (face,) = ok_body(every)["faces"]
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
        body = ok_body(detect(client, account, model_photo("yaoming.jpg"), attributes=1))
    finally:
        get_settings.cache_clear()
        get_analyzer.cache_clear()
    (face,) = body["faces"]
    assert list(face["attributes"]) == [key for key in ATTRIBUTE_KEYS if key != "attractive"]


def test_team_photo_finds_many_faces(client: TestClient, account: Credentials) -> None:
    data = model_photo("players.jpg")
    width, height = opened(data).size
    body = ok_body(detect(client, account, data))
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
    assert len(ok_body(response)["faces"]) == 1


# --- refusals ----------------------------------------------------------------------------------


def test_missing_file_and_url(client: TestClient, account: Credentials) -> None:
    response = client.post("/face/detection", params=account.query)
    assert_error(response, "INVALID_ARGUMENT")
    assert response.json()["reason"] == MUST_SPECIFY


def test_both_file_and_url(client: TestClient, account: Credentials) -> None:
    response = detect(client, account, celeba_photo(), form={"url": "http://example.com/x.jpg"})
    assert_error(response, "INVALID_ARGUMENT")


def test_text_bytes_are_a_corrupt_image(client: TestClient, account: Credentials) -> None:
    response = detect(client, account, b"this is a text file, not a picture\n" * 20)
    assert_error(response, "CORRUPT_IMAGE")


def test_truncated_jpeg_is_a_corrupt_image(client: TestClient, account: Credentials) -> None:
    data = celeba_photo()
    assert_error(detect(client, account, data[: len(data) // 2]), "CORRUPT_IMAGE")


def test_webp_is_refused_as_a_format(client: TestClient, account: Credentials) -> None:
    webp = encode(opened(celeba_photo()), "WEBP")
    assert webp[8:12] == b"WEBP"
    assert_error(detect(client, account, webp), "INVALID_IMAGE_FORMAT_OR_SIZE")


@pytest.mark.parametrize("size", [(8, 8), (8, 100), (100, 8), (4001, 16), (16, 4001)])
def test_sides_out_of_range(client: TestClient, account: Credentials, size: tuple) -> None:
    data = encode(Image.new("RGB", size, (120, 90, 60)), "PNG")
    assert_error(detect(client, account, data), "INVALID_IMAGE_FORMAT_OR_SIZE")


def test_sides_at_the_limits_are_accepted(client: TestClient, account: Credentials) -> None:
    data = encode(Image.new("RGB", (4000, 9), (120, 90, 60)), "PNG")
    body = ok_body(detect(client, account, data))
    assert (body["width"], body["height"], body["faces"]) == (4000, 9, [])


def test_nine_pixel_image_has_no_faces(client: TestClient, account: Credentials) -> None:
    data = encode(Image.new("RGB", (9, 9), (200, 180, 160)), "PNG")
    response = detect(client, account, data)
    body = ok_body(response)
    assert (body["width"], body["height"], body["faces"]) == (9, 9, [])
    assert '"faces":[]' in response.text


def test_over_5_mb_is_too_big(client: TestClient, account: Credentials) -> None:
    noise = np.random.default_rng(7).integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG", compress_level=1)
    assert 5 * 1024 * 1024 < len(data) < 16 * 1024 * 1024  # under the request-body cap
    assert_error(detect(client, account, data), "IMAGE_FILE_SIZE_TOO_BIG")


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
    assert_error(detect(client, account, bomb), "INVALID_IMAGE_FORMAT_OR_SIZE")
    assert time.monotonic() - started < 5


# --- orientation, odd formats, small and large faces -------------------------------------------


def test_exif_orientation_6_is_applied(client: TestClient, account: Credentials) -> None:
    data = model_photo("yaoming.jpg")
    upright = opened(data)
    (reference,) = ok_body(detect(client, account, data))["faces"]
    # Orientation 6: the stored pixels must be turned 90 degrees clockwise to be shown upright.
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = encode(stored, "JPEG", quality=95, exif=exif)
    assert opened(turned).getexif()[0x0112] == 6

    response = detect(client, account, turned)
    body = ok_body(response)
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
    body = ok_body(detect(client, account, data))
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
    (reference,) = ok_body(detect(client, account, data))["faces"]
    sideways = encode(upright.transpose(transpose), "PNG")

    body = ok_body(detect(client, account, sideways, auto_rotate=1))
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
    body = ok_body(detect(client, account, celeba_photo(), auto_rotate=1))
    assert "rotate" not in body
    assert len(body["faces"]) == 1


def test_frame_filling_face(client: TestClient, account: Credentials) -> None:
    data = celeba_photo()
    (face,) = ok_body(detect(client, account, data))["faces"]
    left, top, right, bottom = rect_of(face)
    tight = opened(data).crop((left, top, right, bottom)).resize((112, 112), Image.BICUBIC)
    body = ok_body(detect(client, account, encode(tight, "PNG")))
    assert (body["width"], body["height"]) == (112, 112)
    assert len(body["faces"]) == 1


def test_png_with_alpha(client: TestClient, account: Credentials) -> None:
    rgba = opened(celeba_photo()).convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, dtype=np.uint8)
    alpha[:, : rgba.size[0] // 8] = 0  # a transparent strip at the left edge
    rgba.putalpha(Image.fromarray(alpha))
    data = encode(rgba, "PNG")
    assert opened(data).mode == "RGBA"
    body = ok_body(detect(client, account, data, filename="alpha.png", content_type="image/png"))
    assert len(body["faces"]) == 1


def test_gif(client: TestClient, account: Credentials) -> None:
    data = encode(opened(celeba_photo()), "GIF")
    assert data.startswith(b"GIF89a") or data.startswith(b"GIF87a")
    body = ok_body(detect(client, account, data, filename="x.gif", content_type="image/gif"))
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
    assert_error(response, "DOWNLOAD_ERROR", "not allowed")
    assert time.monotonic() - started < 3  # refused up front, not after a connect attempt


def test_url_from_an_allow_listed_server(
    client: TestClient, account: Credentials, allowed_server: PhotoServer
) -> None:
    body = ok_body(detect_url(client, account, allowed_server.url("/x.jpg")))
    assert len(body["faces"]) == 1
    assert (body["width"], body["height"]) == opened(model_photo("yaoming.jpg")).size
    redirected = ok_body(detect_url(client, account, allowed_server.url("/to-self")))
    assert len(redirected["faces"]) == 1


def test_url_redirect_to_loopback_is_refused(
    client: TestClient, account: Credentials, allowed_server: PhotoServer
) -> None:
    response = detect_url(client, account, allowed_server.url("/to-loopback"))
    assert_error(response, "DOWNLOAD_ERROR", "127.0.0.1")


def test_url_redirect_with_a_malformed_location(
    client: TestClient, account: Credentials, allowed_server: PhotoServer
) -> None:
    """Any public server can send this Location; it is the server's fault, not a 500."""
    allowed_server.routes["/bad-location"] = (302, {"Location": "http://[::1"}, b"")
    response = detect_url(client, account, allowed_server.url("/bad-location"))
    assert_error(response, "DOWNLOAD_ERROR", "unusable redirect")


def test_url_download_errors(
    client: TestClient, account: Credentials, allowed_server: PhotoServer
) -> None:
    assert_error(detect_url(client, account, allowed_server.url("/missing")), "DOWNLOAD_ERROR")
    with ThreadingHTTPServer(("127.0.0.2", 0), BaseHTTPRequestHandler) as probe:
        closed_port = probe.server_address[1]  # nothing listens there once the probe closes
    assert_error(
        detect_url(client, account, f"http://127.0.0.2:{closed_port}/x.jpg"), "DOWNLOAD_ERROR"
    )
    allowed_server.routes["/text"] = (200, {"Content-Type": "text/plain"}, b"hello" * 100)
    assert_error(detect_url(client, account, allowed_server.url("/text")), "CORRUPT_IMAGE")
    big = b"\xff\xd8\xff" + bytes(6 * 1024 * 1024)
    allowed_server.routes["/big.jpg"] = (200, {"Content-Type": "image/jpeg"}, big)
    assert_error(
        detect_url(client, account, allowed_server.url("/big.jpg")), "IMAGE_FILE_SIZE_TOO_BIG"
    )


@pytest.mark.slow
def test_url_download_timeout(
    client: TestClient, account: Credentials, allowed_server: PhotoServer
) -> None:
    started = time.monotonic()
    assert_error(detect_url(client, account, allowed_server.url("/slow")), "DOWNLOAD_TIMEOUT")
    assert 4 < time.monotonic() - started < 7.5  # the seed's 5 s download limit


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
    detected = ok_body(detect(client, account, celeba_photo(), form={"user_data": "test"}))
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
    image_id = ok_body(detect(client, account, data))["image_id"]
    body = info(client, account, "/info/image", image_id=image_id, with_faces=1).json()
    assert body["faces"] == [] and body["user_data"] == ""


def test_info_face(client: TestClient, account: Credentials) -> None:
    detected = ok_body(detect(client, account, celeba_photo(), form={"user_data": "u"}))
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
    detected = ok_body(detect(client, account, photo, attributes=1, emotions=1))
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
    only = ok_body(detect(client, account, photo, emotions=1))["faces"][0]
    shown = info(client, account, "/info/face", face_id=only["face_id"]).json()
    assert "attributes" not in shown and shown["emotions"] == only["emotions"]


def test_unknown_foreign_and_expired_ids(client: TestClient, account: Credentials) -> None:
    detected = ok_body(detect(client, account, celeba_photo()))
    image_id, face_id = detected["image_id"], detected["faces"][0]["face_id"]
    unknown = uuid.uuid4().hex
    assert_error(info(client, account, "/info/image", image_id=unknown), "INVALID_IMAGE")
    assert_error(info(client, account, "/info/face", face_id=unknown), "INVALID_FACE")

    other = make_account(name="other")
    assert_error(info(client, other, "/info/image", image_id=image_id), "INVALID_IMAGE")
    assert_error(info(client, other, "/info/face", face_id=face_id), "INVALID_FACE")
    # ... while the owner still sees both.
    assert info(client, account, "/info/image", image_id=image_id).status_code == 200
    assert info(client, account, "/info/face", face_id=face_id).status_code == 200

    set_expired(ImageRow, image_id)
    set_expired(Face, face_id)
    assert_error(info(client, account, "/info/image", image_id=image_id), "INVALID_IMAGE")
    assert_error(info(client, account, "/info/face", face_id=face_id), "INVALID_FACE")


def test_user_data_round_trips_ascii_escaped(client: TestClient, account: Credentials) -> None:
    user_data = "张伟 Zhang é"
    detected = ok_body(detect(client, account, celeba_photo(), form={"user_data": user_data}))
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
        body = ok_body(detect(client, account, data))
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
    assert_error(info(client, account, "/info/face", face_id=person_face), "INVALID_FACE")
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
    faces = [ok_body(detect(client, account, data))["faces"][0]["face_id"] for _ in range(6)]
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
    older, recent = (ok_body(detect(client, account, data))["faces"][0]["face_id"] for _ in "ab")
    now = datetime.now(UTC)
    expire_at([older], now - timedelta(hours=2))
    expire_at([recent], now - timedelta(minutes=1))

    purge_expired(since=now - timedelta(hours=1))
    assert faces_left([older, recent]) == {older}
    purge_expired()
    assert faces_left([older, recent]) == set()
