"""Alibaba refusals and business errors over real HTTP: a Content-MD5 that lies, a stale Date,
unknown or malformed credentials (gateway errors, non-2xx `{"Code", "Message", "RequestId"}`),
and Green's business codes inside an HTTP 200 envelope."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.conftest import DEFAULT_QUOTA
from tests.photos import identity_photos
from tests.utils.alibaba import AlibabaAccount, alibaba_account, gateway_error, signed
from tests.utils.photo_server import PhotoServer

pytestmark = pytest.mark.slow

BODY = b'{"personId": "nobody"}'


def _business(response: httpx.Response) -> int:
    body = response.json()
    assert response.status_code == 200 and list(body) == ["code", "msg", "requestId", "data"], body
    return body["code"]


def test_the_body_must_be_the_one_its_content_md5_names(
    http: httpx.Client, account: AlibabaAccount
) -> None:
    lying = signed(http, account, "/green/sface/person", BODY, md5_of=b'{"personId": "other"}')
    assert gateway_error(lying) == (400, "ContentMD5NotMatched")
    assert _business(signed(http, account, "/green/sface/person", BODY)) == 404


def test_the_date_must_be_within_the_window(http: httpx.Client, account: AlibabaAccount) -> None:
    within = signed(http, account, "/green/sface/person", BODY, date=time.time() - 600)
    assert _business(within) == 404
    stale = signed(http, account, "/green/sface/person", BODY, date=time.time() - 1000)
    assert gateway_error(stale) == (400, "InvalidTimeStamp.Expired")
    future = signed(http, account, "/green/sface/person", BODY, date=time.time() + 1000)
    assert gateway_error(future) == (400, "InvalidTimeStamp.Expired")


def test_unknown_and_malformed_credentials_are_refused(
    http: httpx.Client, account: AlibabaAccount
) -> None:
    stranger = AlibabaAccount("LTAInobody", "x", account.sensetime)
    assert gateway_error(signed(http, stranger, "/green/sface/person", BODY)) == (
        404, "InvalidAccessKeyId.NotFound"
    )  # fmt: skip
    wrong = AlibabaAccount(account.access_key_id, "not-the-secret", account.sensetime)
    refused = signed(http, wrong, "/green/sface/person", BODY)
    assert gateway_error(refused) == (400, "SignatureDoesNotMatch")
    assert "server string to sign is:POST\n" in refused.json()["Message"]
    for authorization in ("", "acs nocolon", "Bearer x", "acs :sig"):
        headers = {"Authorization": authorization} if authorization else {}
        answer = http.post("/green/sface/person", content=BODY, headers=headers)
        assert gateway_error(answer) == (400, "IncompleteSignature"), authorization


def test_business_errors_carry_green_codes(
    http: httpx.Client, account: AlibabaAccount, photos: PhotoServer
) -> None:
    def business(path: str, body: dict) -> int:
        return _business(signed(http, account, path, json.dumps(body).encode()))

    assert business("/green/sface/person/add", {"personId": "a b", "groupIds": ["g"]}) == 400
    assert business("/green/sface/person/add", {"personId": "p", "groupIds": []}) == 400
    assert _business(signed(http, account, "/green/sface/person", b'{"personId":')) == 400
    assert business("/green/sface/group/persons", {"groupId": "nogroup"}) == 404
    assert business("/green/sface/face/delete", {"personId": "nobody", "faceIds": [1]}) == 404
    ok = signed(http, account, "/green/sface/person/add", b'{"personId":"p","groupIds":["g"]}')
    assert ok.json()["code"] == 200
    assert business("/green/sface/person/add", {"personId": "p", "groupIds": ["g"]}) == 400
    assert (
        business("/green/sface/search", {"groupId": "g", "url": photos.url("/missing.jpg")}) == 480
    )
    assert business("/green/sface/search", {"groupId": "g", "url": photos.url("/slow")}) == 592
    not_a_photo = photos.url("/text.txt")
    photos.routes["/text.txt"] = (200, {"Content-Type": "text/plain"}, b"hello")
    assert business("/green/sface/search", {"groupId": "g", "url": not_a_photo}) == 590


def test_a_full_quota_is_588(http: httpx.Client, photos: PhotoServer) -> None:
    small = alibaba_account(quota={**DEFAULT_QUOTA, "persons": 1})
    first = signed(http, small, "/green/sface/person/add", b'{"personId":"a","groupIds":["g"]}')
    assert first.json()["code"] == 200
    second = signed(http, small, "/green/sface/person/add", b'{"personId":"b","groupIds":["g"]}')
    assert _business(second) == 588
    url = photos.url(f"/{identity_photos(3)[0]}")
    added = signed(
        http, small, "/green/sface/face/add", json.dumps({"personId": "a", "urls": [url]}).encode()
    )
    assert added.json()["data"]["faceImageItems"][0]["success"] is True
