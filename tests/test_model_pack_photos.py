"""The behaviours that matter most, on photos every machine has: the model pack's test photos.

A fresh clone has no research photo set (../shared/data), so the CelebA tests skip there; these
run everywhere, through the real HTTP API on both databases: detect, enroll, the same person
found, a stranger not found, a search that finds the probe itself.

The same person is a real second photo, not a copy: Yao Ming is alone in yaoming.jpg and wears
number 13 in players.jpg (top row, the tallest, face about x 719..763, y 143..192 of 1237 x 800).
The other faces of players.jpg are his team mates and staff: strangers to him. With the installed
model he scores about 0.94 against his own portrait and every stranger at most about 0.49, either
side of the 0.6 the API calls the same person.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.services.confidence import SAME_PERSON_CONFIDENCE
from tests.conftest import Credentials
from tests.utils.api import HEX32, info, ok, post
from tests.utils.detection import check_detection_face, detect, model_photo, opened

YAO_IN_PLAYERS = (741, 167)  # a point inside Yao Ming's face in players.jpg (x, y)


def detected(client: TestClient, account: Credentials, name: str) -> tuple[dict, list[dict]]:
    """The detection answer for a pack photo, its faces checked against the image's size."""
    data = model_photo(name)
    body = ok(detect(client, account, data))
    width, height = opened(data).size
    assert (body["width"], body["height"]) == (width, height)
    for face in body["faces"]:
        check_detection_face(face, width, height)
    return body, body["faces"]


def contains(face: dict, point: tuple[int, int]) -> bool:
    rect = face["rect"]
    return rect["left"] <= point[0] <= rect["right"] and rect["top"] <= point[1] <= rect["bottom"]


def size(face: dict) -> int:
    return face["rect"]["right"] - face["rect"]["left"]


def yao_and_strangers(faces: list[dict]) -> tuple[str, list[str]]:
    """Yao Ming's face id in players.jpg, and every other face id, largest first."""
    (yao,) = [face for face in faces if contains(face, YAO_IN_PLAYERS)]
    others = sorted((face for face in faces if face is not yao), key=size, reverse=True)
    return yao["face_id"], [face["face_id"] for face in others]


def call(client: TestClient, account: Credentials, path: str, **body: object) -> dict:
    return ok(post(client, path, account, **body))


@pytest.fixture
def portrait(client: TestClient, account: Credentials) -> str:
    """Yao Ming's face id from yaoming.jpg."""
    _, (face,) = detected(client, account, "yaoming.jpg")
    return face["face_id"]


@pytest.fixture
def team(client: TestClient, account: Credentials) -> tuple[str, list[str]]:
    """players.jpg: Yao Ming's face id and his team mates'."""
    _, faces = detected(client, account, "players.jpg")
    return yao_and_strangers(faces)


def test_detection_finds_every_pack_face_with_its_box(
    client: TestClient, account: Credentials
) -> None:
    body, (face,) = detected(client, account, "yaoming.jpg")
    assert HEX32.match(body["image_id"])
    rect = face["rect"]
    # The portrait's face: the middle of the 233 x 287 photo, a good part of its width.
    assert 40 <= rect["left"] < 117 < rect["right"] <= 200
    assert 40 <= rect["top"] < 143 < rect["bottom"] <= 250
    _, faces = detected(client, account, "players.jpg")
    assert 20 <= len(faces) <= 30  # twelve players, staff, and some of the crowd
    assert len({face["face_id"] for face in faces}) == len(faces)
    assert len([face for face in faces if contains(face, YAO_IN_PLAYERS)]) == 1
    _, spurs = detected(client, account, "gdp.jpg")
    assert len(spurs) >= 3  # the three players in front


def test_an_enrolled_person_is_found_in_another_photo(
    client: TestClient, account: Credentials, portrait: str, team: tuple[str, list[str]]
) -> None:
    yao, _ = team
    person = call(client, account, "/person/create", name="yao", face_id=[portrait])["person_id"]
    assert info(client, account, "person", person)["face_ids"] == [portrait]
    same = call(client, account, "/face/verification", face_id=yao, person_id=person)
    assert same["same_person"] is True and same["confidence"] > 0.8
    pair = call(client, account, "/face/verification", face_id=yao, face2_id=portrait)
    assert pair["same_person"] is True and pair["confidence"] > 0.8
    group = call(client, account, "/group/create", name="g", person_id=[person])["group_id"]
    found = call(client, account, "/face/identification", face_id=yao, group_id=group)
    assert [c["person_id"] for c in found["candidates"]] == [person]
    assert found["candidates"][0]["name"] == "yao"
    assert found["candidates"][0]["confidence"] > SAME_PERSON_CONFIDENCE


def test_a_stranger_is_not_found(
    client: TestClient, account: Credentials, portrait: str, team: tuple[str, list[str]]
) -> None:
    _, strangers = team
    person = call(client, account, "/person/create", name="yao", face_id=[portrait])["person_id"]
    group = call(client, account, "/group/create", name="g", person_id=[person])["group_id"]
    for stranger in strangers[:3]:  # the three largest, clearest faces beside his
        found = call(client, account, "/face/identification", face_id=stranger, group_id=group)
        assert found["candidates"] == []
    for stranger in strangers:
        other = call(client, account, "/face/verification", face_id=stranger, person_id=person)
        assert other["same_person"] is False, other
        assert other["confidence"] < SAME_PERSON_CONFIDENCE, other


def test_a_search_finds_the_face_itself_then_the_same_person(
    client: TestClient, account: Credentials, portrait: str, team: tuple[str, list[str]]
) -> None:
    yao, strangers = team
    faces = [portrait, *strangers, yao]
    faceset = call(client, account, "/faceset/create", name="team", face_id=faces)["faceset_id"]
    itself = call(client, account, "/face/search", face_id=portrait, faceset_id=faceset, top=3)
    candidates = itself["candidates"]
    assert candidates[0] == {"face_id": portrait, "confidence": 1}
    assert candidates[1]["face_id"] == yao  # his other photo, ahead of every stranger
    assert candidates[1]["confidence"] > 0.8 > candidates[2]["confidence"]
    other = call(client, account, "/face/search", face_id=yao, faceset_id=faceset, top=2)
    assert [c["face_id"] for c in other["candidates"]] == [yao, portrait]
