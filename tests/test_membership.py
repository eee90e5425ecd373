"""The core below every dialect: client-chosen keys (both databases), vendor face ids."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.db.models import Account
from app.db.session import session_scope
from app.domain import Dialect
from app.errors import ApiError
from app.services import membership
from app.services.face_ids import face_row_id, vendor_face_id
from app.services.membership import FACESETS, GROUPS, PERSONS, KindSpec
from tests.conftest import Credentials, make_account


def _account(creds: Credentials) -> Account:
    with session_scope() as db:
        return db.scalar(select(Account).where(Account.api_id == creds.api_id))


@pytest.mark.parametrize("spec", [PERSONS, GROUPS, FACESETS], ids=lambda spec: spec.kind)
def test_a_client_key_is_unique_per_account_and_kind(account: Credentials, spec: KindSpec) -> None:
    owner = _account(account)
    entity, _ = membership.create(owner, spec, "first", None, [], key="door-7")
    assert entity.key == "door-7" and len(entity.public_id) == 32
    with pytest.raises(ApiError) as taken:
        membership.create(owner, spec, "second", None, [], key="door-7")
    assert (taken.value.http_status, taken.value.status) == (400, "DUPLICATE_KEY")
    others = [other for other in (PERSONS, GROUPS, FACESETS) if other is not spec]
    for other in others:  # the same key names one entity of each kind
        membership.create(owner, other, "same key, other kind", None, [], key="door-7")
    stranger = _account(make_account())
    membership.create(stranger, spec, "same key, other account", None, [], key="door-7")
    keyless = [membership.create(owner, spec, f"no key {n}", None, [])[0] for n in range(2)]
    assert [entity.key for entity in keyless] == [None, None]  # keyless rows never collide
    listed = membership.entities(owner, spec, None, 0)
    assert [row.name for row in listed] == ["first", "no key 0", "no key 1"]


VENDORS = [Dialect.TENCENT, Dialect.ALIBABA, Dialect.HUAWEI]


@pytest.mark.parametrize("dialect", VENDORS, ids=str)
def test_vendor_face_ids_lead_back_to_their_row(dialect: Dialect) -> None:
    for row_id in (1, 2, 3, 999, 123_456_789, 2**40, 2**47 - 1):
        face_id = vendor_face_id(dialect, row_id)
        assert face_row_id(dialect, face_id) == row_id
        assert face_row_id(dialect, json.loads(json.dumps(face_id))) == row_id
    many = {vendor_face_id(dialect, row_id) for row_id in range(1, 50_001)}
    assert len(many) == 50_000


def test_vendor_face_ids_have_the_vendor_shapes() -> None:
    tencent = vendor_face_id(Dialect.TENCENT, 42)
    assert isinstance(tencent, str) and tencent.isdecimal() and len(tencent) == 19
    alibaba = vendor_face_id(Dialect.ALIBABA, 42)
    assert isinstance(alibaba, int) and alibaba > 2**53
    assert json.dumps(alibaba).isdecimal() and json.dumps(alibaba)[0] == "2"
    assert len(str(alibaba)) == 18
    huawei = [vendor_face_id(Dialect.HUAWEI, row_id) for row_id in (1, 2, 3)]
    assert all(len(face_id) == 8 and face_id.isalnum() for face_id in huawei)
    assert len({face_id[:4] for face_id in huawei}) == 3, "neighbours look unrelated"


@pytest.mark.parametrize(
    ("dialect", "face_id"),
    [
        (Dialect.TENCENT, "abc"),
        (Dialect.TENCENT, "123"),
        (Dialect.TENCENT, 1_000_000_000_000_000_042),  # a number, not the string Tencent sends
        (Dialect.TENCENT, "1000000000000000000"),  # row 0
        (Dialect.ALIBABA, True),
        (Dialect.ALIBABA, 1.5),
        (Dialect.ALIBABA, 42),
        (Dialect.ALIBABA, "2x"),
        (Dialect.HUAWEI, "cFydu4d"),
        (Dialect.HUAWEI, "!!!!!!!!"),
        (Dialect.HUAWEI, "ZZZZZZZZ"),  # 62^8 - 1, past 2^47
        (Dialect.HUAWEI, None),
        (Dialect.SENSETIME, "0" * 32),  # SenseTime's ids are the public ids, not derived
    ],
)
def test_malformed_vendor_face_ids_name_no_row(dialect: Dialect, face_id: object) -> None:
    assert face_row_id(dialect, face_id) is None
