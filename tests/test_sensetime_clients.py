"""/face/detection driven the way SenseTime clients in the field drive it, over real HTTP.

Two clients, replayed as their source shows them (see ../shared/wire-compat.md, "Beyond the
seed"), against a real uvicorn server on each database:
- the Python client copied from project to project (`senseTime.py`): `requests.post` with
  `files={'file': ...}`, `data={'emotions': '1', 'attributes': '1'}`, credentials in the query,
  the body read with `ast.literal_eval`, then every emotion key, `attractive` and the other
  attributes indexed directly (a missing one is a KeyError there);
- the official iOS SDK (STAPI-iOS): one multipart body with `api_id`/`api_secret` as form
  fields, options as "1"/"0", the photo re-encoded as JPEG 0.9 in a part named `file`
  (`filename="image.jpeg"`, `Content-Type: image/jpeg`), and its XCTest suite's assertions for
  detection with options (test2_face_detection_image).
"""

from __future__ import annotations

import ast
import io
import json
import uuid
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.conftest import SHARED_DATA, Credentials, make_account, require_research_photos
from tests.servers import Server

pytestmark = pytest.mark.slow

CELEBA_IMAGES = SHARED_DATA / "celeba-dev" / "images"
# One face, a woman without glasses (CelebA labels Male=0, Eyeglasses=0): what the iOS suite's
# own test photo is, since it asserts gender < 50 and eyeglass < 50.
IOS_PHOTO = "000180.jpg"
EMOTIONS = ("angry", "calm", "disgust", "happy", "sad", "surprised", "confused", "squint",
            "screaming", "scared")  # fmt: skip
ATTRIBUTES = ("age", "gender", "attractive", "eyeglass", "sunglass", "smile", "eye_open",
              "mouth_open")  # fmt: skip


def photo(name: str) -> Path:
    require_research_photos("celeba-dev", "images", name)
    return CELEBA_IMAGES / name


class PythonClient:
    """senseTime.py's post_get and get_obj, with only the host changed."""

    def __init__(self, base_url: str, creds: Credentials) -> None:
        self.url = f"{base_url}/face/detection?api_id={creds.api_id}&api_secret={creds.api_secret}"

    def post_get(self, filepath: Path) -> dict:
        with open(filepath, "rb") as handle:
            files = {"file": handle}
            params = {"emotions": "1", "attributes": "1"}
            r = requests.post(self.url, files=files, data=params, timeout=60)
        return ast.literal_eval(r.text)

    @staticmethod
    def get_obj(r_text: dict) -> list[tuple]:
        faces = []
        for face in r_text["faces"]:
            attributes, emotions = face["attributes"], face["emotions"]
            faces.append(
                (
                    face["face_id"],
                    face["rect"],
                    face["eye_dist"],
                    [attributes[key] for key in ("age", "gender", "attractive", "smile")],
                    [emotions[key] for key in EMOTIONS],
                )
            )
        return faces


def test_the_python_client_reads_every_key(live_server: Server) -> None:
    creds = make_account()
    body = PythonClient(live_server.base_url, creds).post_get(photo("000724.jpg"))
    assert body["status"] == "OK"
    (face,) = body["faces"]
    (parsed,) = PythonClient.get_obj(body)  # no KeyError
    assert parsed[0] == face["face_id"]
    assert tuple(face["attributes"]) == ATTRIBUTES
    assert tuple(face["emotions"]) == EMOTIONS
    for value in [*face["attributes"].values(), *face["emotions"].values()]:
        assert type(value) is int and 0 <= value <= 100
    # What such clients do next: arithmetic on attractive, the strongest emotion.
    assert 0 <= face["attributes"]["attractive"] / 10 <= 10
    assert max(face["emotions"], key=face["emotions"].get) in EMOTIONS


def ios_multipart(fields: dict[str, str], jpeg: bytes) -> tuple[bytes, str]:
    """STAPI.m's body: text form lines, then the JPEG part, CRLF-delimited."""
    boundary = f"Boundary-{uuid.uuid4()}".upper()
    lines = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    )
    image = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="image.jpeg"\r\nContent-Type: image/jpeg\r\n\r\n'
    ).encode()
    body = lines + image + jpeg + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_the_ios_suite_detection_with_options(live_server: Server) -> None:
    creds = make_account()
    buffer = io.BytesIO()
    Image.open(photo(IOS_PHOTO)).convert("RGB").save(buffer, "JPEG", quality=90)
    fields = {
        "api_id": creds.api_id,
        "api_secret": creds.api_secret,
        "landmarks106": "1",
        "attributes": "1",
        "emotions": "1",
        "auto_rotate": "0",
        "user_data": "MyFaceDetection",
    }
    body, content_type = ios_multipart(fields, buffer.getvalue())
    response = requests.post(
        f"{live_server.base_url}/face/detection",
        data=body,
        headers={"Content-Type": content_type},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    image = json.loads(response.content)  # NSJSONSerialization
    assert image["status"] == "OK"
    assert image["image_id"]
    assert len(image["faces"]) == 1
    face = image["faces"][0]
    assert face["face_id"]
    assert len(face["landmarks21"]) == 21
    assert len(face["landmarks21"][0]) == 2
    assert face["landmarks21"][0][0] >= 0 and face["landmarks21"][0][1] >= 0
    assert len(face["landmarks106"]) == 106
    assert face["eye_dist"] > 0
    rect = face["rect"]
    assert rect["bottom"] > rect["top"] and rect["left"] < rect["right"]
    attributes = face["attributes"]
    assert attributes["gender"] < 50
    assert attributes["eyeglass"] < 50
    for key in ("age", "attractive", "sunglass", "smile"):
        assert attributes[key] >= 0
    emotions = face["emotions"]
    for key in ("angry", "calm", "disgust", "happy", "sad", "surprised"):
        assert emotions[key] >= 0
