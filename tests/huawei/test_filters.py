"""Huawei's filter syntax, parsed into predicates: what the search and batch delete keep."""

from __future__ import annotations

import pytest

from app.dialects.huawei.filters import parse
from app.errors import ApiError
from app.services.libraries import LibraryFace

FIELDS = {"number", "id", "male", "weight"}


def _face(image_id: str | None, **fields: object) -> LibraryFace:
    return LibraryFace(None, image_id, fields)  # type: ignore[arg-type] - no face row needed


FACES = [
    _face("a", number=1, id="home", male=True, weight=60.5),
    _face("b", number=12, id="work", male=False, weight=80.0),
    _face("c", number=20, id="home"),
    _face(None),
]


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("number:12", ["b"]),
        ("number:[1 TO 12]", ["a", "b"]),
        ("number:[12 TO *]", ["b", "c"]),
        ("number:[1 TO 20] && id:home", ["a", "c"]),
        ("id:work || external_image_id:a", ["a", "b"]),
        ("id:home && (!number:20)", ["a"]),
        ("NOT id:home AND number:[0 TO 100]", ["b"]),
        ('id:"home"', ["a", "c"]),
        ("male:true", ["a"]),
        ("weight:[60 TO 70]", ["a"]),
        ("(id:home || id:work) && !(male:false)", ["a", "c"]),
    ],
)
def test_filters_keep_what_they_say(text: str, kept: list[str]) -> None:
    predicate = parse(text, FIELDS)
    assert [face.external_image_id for face in FACES if predicate(face)] == kept


@pytest.mark.parametrize(
    "text",
    ["", "number", "number:", "number:[1 TO", "colour:red", "id:home &&", "(id:home", "id:a)"],
)
def test_malformed_filters_are_refused(text: str) -> None:
    with pytest.raises(ApiError) as refused:
        parse(text, FIELDS)
    assert refused.value.status == "FRS.0012"


def test_a_deeply_nested_filter_is_refused_not_a_crash() -> None:
    with pytest.raises(ApiError):
        parse("(" * 2000 + "id:home" + ")" * 2000, FIELDS)
