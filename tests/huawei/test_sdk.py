"""The Huawei FRS door driven by the official SDK (`huaweicloudsdkfrs` + `huaweicloudsdkcore`
3.1.219, unmodified, repointed with `with_endpoint`) through every face-set call it has."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.formdata import FormFile
from huaweicloudsdkfrs.v2 import (
    AddFacesBase64Req,
    AddFacesByBase64Request,
    AddFacesByFileRequest,
    AddFacesByFileRequestBody,
    AddFacesByUrlRequest,
    AddFacesUrlReq,
    BatchDeleteFacesRequest,
    CreateFaceSetReq,
    CreateFaceSetRequest,
    DeleteFaceByExternalImageIdRequest,
    DeleteFaceByFaceIdRequest,
    DeleteFacesBatchReq,
    DeleteFaceSetRequest,
    FaceSearchBase64Req,
    FaceSearchFaceIdReq,
    FaceSearchUrlReq,
    SearchFaceByBase64Request,
    SearchFaceByFaceIdRequest,
    SearchFaceByFileRequest,
    SearchFaceByFileRequestBody,
    SearchFaceByUrlRequest,
    ShowAllFaceSetsRequest,
    ShowFacesByFaceIdRequest,
    ShowFacesByLimitRequest,
    ShowFaceSetRequest,
    TypeInfo,
    UpdateFaceReq,
    UpdateFaceRequest,
)

from tests.photos import CELEBA, celeba_bytes, identity_photos
from tests.servers import Server
from tests.utils.huawei import HuaweiAccount, huawei_account, sdk
from tests.utils.photo_server import PhotoServer

pytestmark = pytest.mark.slow

ALICE = identity_photos(3)
BOB = identity_photos(3, skip=1)


def _b64(name: str) -> str:
    return base64.b64encode(celeba_bytes(name)).decode()


def _refused(call: object) -> tuple[int, str]:
    with pytest.raises(ClientRequestException) as raised:
        call()  # type: ignore[operator]
    return raised.value.status_code, raised.value.error_code


def test_the_official_sdk_drives_every_face_set_call(
    server: Server, account: HuaweiAccount, photos: PhotoServer
) -> None:
    client = sdk(account, server.base_url)
    schema = {"number": TypeInfo(type="integer"), "id": TypeInfo(type="string")}
    created = client.create_face_set(
        CreateFaceSetRequest(
            body=CreateFaceSetReq(
                face_set_name="staff", face_set_capacity=500, external_fields=schema
            )
        )
    ).face_set_info
    assert (created.face_set_name, created.face_set_capacity, created.face_number) == (
        "staff",
        500,
        0,
    )
    assert len(created.face_set_id) == 8 and created.external_fields == {
        "number": {"type": "integer"}, "id": {"type": "string"}
    }  # fmt: skip
    default = client.create_face_set(
        CreateFaceSetRequest(body=CreateFaceSetReq(face_set_name="empty"))
    ).face_set_info
    assert default.face_set_capacity == 100_000
    assert _refused(
        lambda: client.create_face_set(
            CreateFaceSetRequest(body=CreateFaceSetReq(face_set_name="staff"))
        )
    ) == (400, "FRS.0301")

    by_base64 = client.add_faces_by_base64(
        AddFacesByBase64Request(
            face_set_name="staff",
            body=AddFacesBase64Req(
                image_base64=_b64(ALICE[0]),
                external_image_id="alice-0",
                external_fields={"number": 1, "id": "alice"},
                single=True,
            ),
        )
    )
    (alice_face,) = by_base64.faces
    assert (alice_face.external_image_id, alice_face.external_fields) == (
        "alice-0", {"number": 1, "id": "alice"}
    )  # fmt: skip
    assert len(alice_face.face_id) == 8 and alice_face.bounding_box.width > 0
    by_url = client.add_faces_by_url(
        AddFacesByUrlRequest(
            face_set_name="staff",
            body=AddFacesUrlReq(
                image_url=photos.url(f"/{BOB[0]}"),
                external_image_id="bob-0",
                external_fields={"number": 2, "id": "bob"},
                single=True,
            ),  # fmt: skip
        )
    )
    by_file = client.add_faces_by_file(
        AddFacesByFileRequest(
            face_set_name="staff",
            body=AddFacesByFileRequestBody(
                image_file=FormFile(str(CELEBA / "images" / ALICE[1])),
                external_image_id="alice-1",
                external_fields=json.dumps({"number": 3, "id": "alice"}),
                single=True,
            ),
        )
    )
    bob_face, alice_second = by_url.faces[0], by_file.faces[0]
    assert _refused(
        lambda: client.add_faces_by_base64(
            AddFacesByBase64Request(
                face_set_name="staff",
                body=AddFacesBase64Req(image_base64=_b64(BOB[1]), external_fields={"age": 3}),
            )
        )
    ) == (400, "FRS.0402")

    listed = client.show_all_face_sets(ShowAllFaceSetsRequest()).face_sets_info
    assert [(s.face_set_name, s.face_number) for s in listed] == [("staff", 3), ("empty", 0)]
    assert (
        client.show_face_set(ShowFaceSetRequest(face_set_name="staff")).face_set_info.face_number
        == 3
    )

    page = client.show_faces_by_limit(
        ShowFacesByLimitRequest(face_set_name="staff", offset=1, limit=1)
    )
    assert (page.face_set_name, [face.face_id for face in page.faces]) == (
        "staff",
        [bob_face.face_id],
    )
    first_five = client.show_faces_by_limit(ShowFacesByLimitRequest(face_set_name="staff"))
    assert len(first_five.faces) == 3  # default offset 0, limit 5
    one = client.show_faces_by_face_id(
        ShowFacesByFaceIdRequest(face_set_name="staff", face_id=alice_second.face_id)
    )
    assert [face.external_image_id for face in one.faces] == ["alice-1"]
    too_far = ShowFacesByLimitRequest(face_set_name="staff", offset=9_999, limit=2)
    assert _refused(lambda: client.show_faces_by_limit(too_far)) == (400, "FRS.0012")

    found = client.search_face_by_base64(
        SearchFaceByBase64Request(
            face_set_name="staff",
            body=FaceSearchBase64Req(image_base64=_b64(ALICE[2]), top_n=3, threshold=0.93),
        )
    ).faces
    assert {face.external_image_id for face in found} == {"alice-0", "alice-1"}
    assert all(face.similarity >= 0.93 for face in found)
    filtered = client.search_face_by_url(
        SearchFaceByUrlRequest(
            face_set_name="staff",
            body=FaceSearchUrlReq(
                image_url=photos.url(f"/{ALICE[2]}"),
                filter="number:[2 TO 3]",
                return_fields=["id"],
            ),  # fmt: skip
        )
    ).faces
    assert [(f.external_image_id, f.external_fields) for f in filtered][0] == (
        "alice-1", {"id": "alice"}
    )  # fmt: skip
    by_photo_file = client.search_face_by_file(
        SearchFaceByFileRequest(
            face_set_name="staff",
            body=SearchFaceByFileRequestBody(
                image_file=FormFile(str(CELEBA / "images" / BOB[1])), top_n=1
            ),
        )
    ).faces
    assert [face.face_id for face in by_photo_file] == [bob_face.face_id]
    itself = client.search_face_by_face_id(
        SearchFaceByFaceIdRequest(
            face_set_name="staff", body=FaceSearchFaceIdReq(face_id=alice_face.face_id, top_n=1)
        )
    ).faces
    assert [(face.face_id, face.similarity) for face in itself] == [(alice_face.face_id, 1.0)]

    updated = client.update_face(
        UpdateFaceRequest(
            face_set_name="staff",
            body=UpdateFaceReq(face_id=bob_face.face_id, external_fields={"number": 20}),
        )
    )
    assert updated.face_number == 1
    again = client.show_faces_by_face_id(
        ShowFacesByFaceIdRequest(face_set_name="staff", face_id=bob_face.face_id)
    )
    assert again.faces[0].external_fields == {"number": 20}

    batch = client.batch_delete_faces(
        BatchDeleteFacesRequest(face_set_name="staff", body=DeleteFacesBatchReq(filter="number:20"))
    )
    assert batch.face_number == 1
    by_image = client.delete_face_by_external_image_id(
        DeleteFaceByExternalImageIdRequest(face_set_name="staff", external_image_id="alice-1")
    )
    assert by_image.face_number == 1
    by_id = client.delete_face_by_face_id(
        DeleteFaceByFaceIdRequest(face_set_name="staff", face_id=alice_face.face_id)
    )
    assert (by_id.face_number, by_id.face_set_name) == (1, "staff")
    assert (
        client.show_face_set(ShowFaceSetRequest(face_set_name="staff")).face_set_info.face_number
        == 0
    )
    assert (
        client.delete_face_set(DeleteFaceSetRequest(face_set_name="staff")).face_set_name == "staff"
    )
    assert _refused(lambda: client.show_face_set(ShowFaceSetRequest(face_set_name="staff"))) == (
        400,
        "FRS.0302",
    )


def test_a_wrong_key_or_project_is_refused_by_the_sdk(
    server: Server, account: HuaweiAccount
) -> None:
    wrong_key = HuaweiAccount(account.ak, "not-the-sk", account.project_id, "", account.sensetime)
    assert _refused(
        lambda: sdk(wrong_key, server.base_url).show_all_face_sets(ShowAllFaceSetsRequest())
    ) == (401, "APIG.0301")
    other = huawei_account()
    assert _refused(
        lambda: sdk(account, server.base_url, other.project_id).show_all_face_sets(
            ShowAllFaceSetsRequest()
        )
    ) == (401, "APIG.0301")


def test_a_face_set_is_a_faceset_at_both_doors(
    server: Server, account: HuaweiAccount, http: httpx.Client
) -> None:
    """What Huawei adds SenseTime's /face/search finds, and a SenseTime faceset is searchable
    at Huawei's door under its SenseTime id."""
    client = sdk(account, server.base_url)
    client.create_face_set(CreateFaceSetRequest(body=CreateFaceSetReq(face_set_name="door")))
    client.add_faces_by_base64(
        AddFacesByBase64Request(
            face_set_name="door", body=AddFacesBase64Req(image_base64=_b64(ALICE[0]), single=True)
        )
    )
    creds = account.sensetime.query
    (door,) = http.post("/info/list_facesets", params=creds).json()["facesets"]
    probe = http.post("/face/detection", params=creds, files={"file": celeba_bytes(ALICE[1])})
    face_id = probe.json()["faces"][0]["face_id"]
    searched = http.post(
        "/face/search", params={**creds, "face_id": face_id, "faceset_id": door["faceset_id"]}
    ).json()
    assert searched["status"] == "OK" and searched["candidates"][0]["confidence"] > 0.6

    detected = http.post("/face/detection", params=creds, files={"file": celeba_bytes(BOB[0])})
    bob = detected.json()["faces"][0]["face_id"]
    faceset = http.post("/faceset/create", params={**creds, "name": "st", "face_id": bob}).json()
    found = client.search_face_by_base64(
        SearchFaceByBase64Request(
            face_set_name=faceset["faceset_id"], body=FaceSearchBase64Req(image_base64=_b64(BOB[1]))
        )
    ).faces
    assert len(found) == 1 and found[0].similarity > 0.93
