"""The membership core below every dialect: client-chosen keys, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db.models import Account
from app.db.session import session_scope
from app.errors import ApiError
from app.services import membership
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
