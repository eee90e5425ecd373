"""The Alibaba Green sface door driven by the official SDK (`aliyun-python-sdk-green` 3.6.6 +
`aliyun-python-sdk-core` 2.16.1, unmodified, repointed with `port` and `set_endpoint`)."""

from __future__ import annotations

import re

import httpx
import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkgreen.request.v20180509.AddFacesRequest import AddFacesRequest
from aliyunsdkgreen.request.v20180509.AddGroupsRequest import AddGroupsRequest
from aliyunsdkgreen.request.v20180509.AddPersonRequest import AddPersonRequest
from aliyunsdkgreen.request.v20180509.DeleteFacesRequest import DeleteFacesRequest
from aliyunsdkgreen.request.v20180509.DeleteGroupsRequest import DeleteGroupsRequest
from aliyunsdkgreen.request.v20180509.DeletePersonRequest import DeletePersonRequest
from aliyunsdkgreen.request.v20180509.GetFacesRequest import GetFacesRequest
from aliyunsdkgreen.request.v20180509.GetGroupsRequest import GetGroupsRequest
from aliyunsdkgreen.request.v20180509.GetPersonRequest import GetPersonRequest
from aliyunsdkgreen.request.v20180509.GetPersonsRequest import GetPersonsRequest
from aliyunsdkgreen.request.v20180509.SearchPersonRequest import SearchPersonRequest
from aliyunsdkgreen.request.v20180509.SetPersonRequest import SetPersonRequest

from app.db.models import Account
from app.db.session import session_scope
from app.domain import Dialect
from app.services import credentials
from tests.photos import identity_photos
from tests.servers import Server
from tests.utils.alibaba import AlibabaAccount, call, client, signed
from tests.utils.photo_server import PhotoServer
from tests.utils.tencent import TencentAccount, post

pytestmark = pytest.mark.slow

ALICE = identity_photos(3)
BOB = identity_photos(3, skip=1)


def _data(answer: dict) -> dict:
    assert (answer["code"], list(answer)) == (200, ["code", "requestId", "data"]), answer
    assert answer["data"]["code"] == 200, answer
    return answer["data"]


def test_the_official_sdk_drives_every_sface_operation(
    server: Server, account: AlibabaAccount, photos: PhotoServer
) -> None:
    sdk = client(account, server.port)
    added = _data(call(sdk, AddPersonRequest, {
        "personId": "alice", "groupIds": ["staff", "vip"], "name": "Alice", "note": "first",
    }))  # fmt: skip
    assert added == {"code": 200, "personId": "alice", "groupIds": ["staff", "vip"]}
    faces = _data(call(sdk, AddFacesRequest, {
        "personId": "alice", "urls": [photos.url(f"/{ALICE[0]}"), photos.url(f"/{ALICE[1]}"),
                                      photos.url("/missing.jpg")],
    }))  # fmt: skip
    first, second, missing = faces["faceImageItems"]
    assert (first["success"], second["success"], missing["success"]) == (True, True, False)
    assert first["url"] == photos.url(f"/{ALICE[0]}")
    assert isinstance(first["faceId"], int) and first["faceId"] > 2**53
    _data(call(sdk, AddPersonRequest, {"personId": "bob", "groupIds": ["staff"], "name": "Bob"}))
    _data(call(sdk, AddFacesRequest, {"personId": "bob", "urls": [photos.url(f"/{BOB[0]}")]}))

    person = _data(call(sdk, GetPersonRequest, {"personId": "alice"}))
    assert (person["name"], person["note"], person["groupIds"]) == (
        "Alice",
        "first",
        ["staff", "vip"],
    )
    assert person["faceIds"] == [first["faceId"], second["faceId"]]
    _data(call(sdk, SetPersonRequest, {"personId": "alice", "name": "Alice A.", "note": "vip"}))
    assert _data(call(sdk, GetPersonRequest, {"personId": "alice"}))["name"] == "Alice A."

    all_faces = _data(call(sdk, GetFacesRequest, {"personId": "alice"}))
    assert [(i["success"], i["faceId"], i["url"]) for i in all_faces["faceImageItems"]] == [
        (True, first["faceId"], first["url"]), (True, second["faceId"], second["url"])
    ]  # fmt: skip
    lacking = 200_000_000_000_999_999
    asked = _data(
        call(sdk, GetFacesRequest, {"personId": "alice", "faceIds": [second["faceId"], lacking]})
    )
    assert asked["faceImageItems"] == [
        {"success": True, "faceId": second["faceId"], "url": second["url"]},
        {"success": False, "faceId": lacking},
    ]

    assert _data(call(sdk, GetGroupsRequest, {}))["groupIds"] == ["staff", "vip"]
    assert _data(call(sdk, GetPersonsRequest, {"groupId": "staff"}))["personIds"] == [
        "alice",
        "bob",
    ]
    found = _data(
        call(sdk, SearchPersonRequest, {"groupId": "staff", "url": photos.url(f"/{ALICE[2]}")})
    )
    best = found["persons"][0]
    assert (best["personId"], best["name"]) == ("alice", "Alice A.") and best["rate"] > 60
    assert all(p["personId"] != "bob" for p in found["persons"])

    joined = _data(call(sdk, AddGroupsRequest, {"personId": "bob", "groupIds": ["night"]}))
    assert joined["groupIds"] == ["staff", "night"]
    left = _data(call(sdk, DeleteGroupsRequest, {"personId": "bob", "groupIds": ["staff"]}))
    assert left["groupIds"] == ["night"]

    gone = _data(call(sdk, DeleteFacesRequest, {"personId": "alice", "faceIds": [first["faceId"]]}))
    assert gone["faceIds"] == [first["faceId"]]
    assert _data(call(sdk, GetPersonRequest, {"personId": "alice"}))["faceIds"] == [
        second["faceId"]
    ]
    _data(call(sdk, DeletePersonRequest, {"personId": "alice"}))
    refused = call(sdk, GetPersonRequest, {"personId": "alice"})
    assert (refused["code"], list(refused)) == (404, ["code", "msg", "requestId", "data"])


def test_the_raw_answer_keeps_every_digit_of_a_face_id(
    http: httpx.Client, account: AlibabaAccount, photos: PhotoServer, server: Server
) -> None:
    sdk = client(account, server.port)
    call(sdk, AddPersonRequest, {"personId": "p", "groupIds": ["g"]})
    added = call(sdk, AddFacesRequest, {"personId": "p", "urls": [photos.url(f"/{ALICE[0]}")]})
    face_id = added["data"]["faceImageItems"][0]["faceId"]
    text = signed(http, account, "/green/sface/faces", b'{"personId": "p"}').text
    assert re.search(rf'"faceId":{face_id}[,}}]', text), text
    assert len(str(face_id)) == 18 and float(face_id) != face_id  # beyond a double's 53 bits


def test_a_wrong_secret_is_refused_by_the_sdk(server: Server, account: AlibabaAccount) -> None:
    with pytest.raises(ServerException) as refused:
        call(client(account, server.port, secret="wrong"), GetGroupsRequest, {})
    assert (refused.value.get_http_status(), refused.value.get_error_code()) == (
        400, "SignatureDoesNotMatch"
    )  # fmt: skip


def test_a_person_added_here_is_one_person_at_every_door(
    http: httpx.Client, account: AlibabaAccount, photos: PhotoServer, server: Server
) -> None:
    sdk = client(account, server.port)
    call(sdk, AddPersonRequest, {"personId": "dana", "groupIds": ["crew"], "name": "Dana"})
    call(sdk, AddFacesRequest, {"personId": "dana", "urls": [photos.url(f"/{BOB[1]}")]})
    creds = account.sensetime.query
    persons = http.post("/info/list_persons", params=creds).json()["persons"]
    (dana,) = [person for person in persons if person["name"] == "Dana"]
    info = http.post("/info/person", params={**creds, "person_id": dana["person_id"]}).json()
    assert info["status"] == "OK" and len(info["face_ids"]) == 1

    secret_id = f"AKIDcross{account.access_key_id}"
    with session_scope() as db:
        owner = db.query(Account).filter_by(api_id=account.sensetime.api_id).one()
        app_id = str(1_259_000_000 + owner.id)
        credentials.add_credential(db, owner, Dialect.TENCENT, secret_id, "k", {"app_id": app_id})
    tencent = TencentAccount(app_id, secret_id, "k", account.sensetime)
    got = post(http, "/face/getinfo", tencent, {"person_id": "dana"}).json()
    assert got["code"] == 0 and got["data"]["person_name"] == "Dana"
    assert got["data"]["group_ids"] == ["crew"] and len(got["data"]["face_ids"]) == 1
