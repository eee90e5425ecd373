"""Every error code of the Tencent seed's table that applies, each triggered over real HTTP.

Each case asserts the vendor's envelope (`data`, `code`, `message`, in that order), the code and
the HTTP status app/dialects/tencent/errors.py documents: 401 for the signature codes, 403 for
3 and 15, 413 for 23, 400 for the rest.
"""

from __future__ import annotations

import base64
import io
import time

import httpx
import pytest
from PIL import Image

from app.db.models import Account
from app.db.session import session_scope
from tests.photos import celeba_bytes, identity_photos
from tests.utils.photo_server import PhotoServer
from tests.utils.tencent import (
    TencentAccount,
    code_of,
    fails,
    post,
    sign,
    tencent_account,
)

pytestmark = pytest.mark.slow

ALICE, BOB = identity_photos(3), identity_photos(3, skip=1)


def _jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 180, 160)).save(out, "JPEG")
    return out.getvalue()


def _newperson(
    http: httpx.Client, account: TencentAccount, person: str, groups: list[str], photo: bytes
) -> httpx.Response:
    fields = {"person_id": person, **{f"group_ids[{i}]": g for i, g in enumerate(groups)}}
    return post(http, "/face/newperson", account, fields, files={"image": ("x.jpg", photo)})


def _getinfo(http: httpx.Client, account: TencentAccount, **auth: object) -> httpx.Response:
    return post(http, "/face/getinfo", account, {"person_id": "nobody"}, **auth)


# --- signatures ----------------------------------------------------------------------------


def test_both_sdk_signature_forms_are_accepted(http: httpx.Client, account: TencentAccount) -> None:
    for node in (False, True):
        listed = post(http, "/face/getgroupids", account, authorization=sign(account, node=node))
        assert (code_of(listed), listed.json()["data"]) == (0, {"group_ids": []})


def _raw(plain: str, digest: bytes = b"\0" * 20) -> str:
    return base64.b64encode(digest + plain.encode()).decode()


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("", 4),
        ("!!not base64!!", 5),
        (_raw("a=1&k=2"), 5),  # no e, no t
        (_raw("a=1&k=2&e=soon&t=now"), 5),
        (base64.b64encode(b"short").decode(), 5),
        (base64.b64encode(b"\0" * 20 + "a=é".encode()).decode(), 5),
        ("A" * 5000, 5),
    ],
)
def test_a_missing_or_malformed_signature_is_refused(
    http: httpx.Client, account: TencentAccount, authorization: str, code: int
) -> None:
    fails(_getinfo(http, account, authorization=authorization), code, 401)


def test_no_authorization_header_is_code_4(http: httpx.Client, account: TencentAccount) -> None:
    fails(http.post("/face/getinfo", json={"appid": account.app_id, "person_id": "x"}), 4, 401)


def test_a_wrong_secret_key_or_unknown_ids_are_refused_by_their_own_codes(
    http: httpx.Client, account: TencentAccount
) -> None:
    other = tencent_account()
    cases = [
        (sign(account, key="not the key"), 14),
        (sign(account, app_id="1200000001", secret_id="AKIDnobody"), 10),
        (sign(account, secret_id="AKIDnobody"), 11),
        (sign(account, secret_id=other.secret_id, key=other.secret_key), 12),
    ]
    for authorization, code in cases:
        fails(_getinfo(http, account, authorization=authorization), code, 401)


def test_signatures_expire_with_a_clock_skew_allowance(
    http: httpx.Client, account: TencentAccount
) -> None:
    now = int(time.time())
    within = sign(account, now=now - 200, expires_in=30)  # expired 170 s ago: within 300 s
    assert code_of(_getinfo(http, account, authorization=within)) == -1303
    stale = sign(account, now=now - 400, expires_in=30)
    assert fails(_getinfo(http, account, authorization=stale), 9, 401) == {}
    future = sign(account, now=now + 1000)
    fails(_getinfo(http, account, authorization=future), 9, 401)


def test_a_signature_is_accepted_once(http: httpx.Client, account: TencentAccount) -> None:
    once = sign(account)
    assert code_of(_getinfo(http, account, authorization=once)) == -1303
    fails(_getinfo(http, account, authorization=once), 13, 401)


def test_the_body_must_name_the_signature_s_appid(
    http: httpx.Client, account: TencentAccount
) -> None:
    headers = {"Authorization": sign(account)}
    wrong = http.post("/face/getgroupids", json={"appid": "1259999999"}, headers=headers)
    fails(wrong, 6, 401)
    bucket = {"Authorization": sign(account)}
    fails(http.post("/face/getgroupids", json={"bucket": "other"}, headers=bucket), 6, 401)


def test_a_disabled_account_and_a_rate_limit_are_refused(http: httpx.Client) -> None:
    disabled = tencent_account()
    with session_scope() as db:
        db.query(Account).filter_by(api_id=disabled.sensetime.api_id).update({"disabled": True})
    fails(_getinfo(http, disabled), 3, 403)
    limited = tencent_account(rate_limit="1q/60s")
    assert code_of(_getinfo(http, limited)) == -1303
    fails(_getinfo(http, limited), 15, 403)


# --- parameters and bodies -------------------------------------------------------------------


def test_parameters_are_checked(http: httpx.Client, account: TencentAccount) -> None:
    fails(post(http, "/face/getinfo", account, {}), -1301, 400)
    fails(post(http, "/face/getinfo", account, {"person_id": ""}), -1301, 400)
    fails(post(http, "/face/getinfo", account, {"person_id": "x" * 65}), -1304, 400)
    for illegal in ("a b", "a/b", "a\tb", "a\nb", "a\\b"):
        fails(post(http, "/face/getinfo", account, {"person_id": illegal}), -1313, 400)
    fails(post(http, "/face/setinfo", account, {"person_id": "p", "tag": "t" * 20_000}), -1304, 400)
    fails(post(http, "/face/detect", account, {"url": "http://x/", "mode": 7}), 21, 400)
    headers = {"Authorization": sign(account), "Content-Type": "application/json"}
    fails(http.post("/face/getinfo", content=b'{"appid":', headers=headers), 21, 400)
    empty = post(http, "/face/addgroupids", account, {"person_id": "p", "group_ids": []})
    fails(empty, -1307, 400)


def test_a_body_over_the_limit_is_refused(http: httpx.Client, account: TencentAccount) -> None:
    huge = {"image": ("x.jpg", b"\xff" * (17 * 1024 * 1024))}
    fails(post(http, "/face/detect", account, files=huge), 23, 413)


# --- images ----------------------------------------------------------------------------------


def test_each_image_failure_has_its_code(
    http: httpx.Client, account: TencentAccount, photos: PhotoServer
) -> None:
    cases = [
        ({"image": ("x.jpg", _jpeg(320, 240))}, -1101),
        ({"image": ("x.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")}, -1102),
        ({"image": ("x.jpg", b"")}, -1300),
        ({"image": ("x.jpg", _jpeg(4, 4))}, -1400),
    ]
    for files, code in cases:
        fails(post(http, "/face/detect", account, {"mode": 0}, files=files), code, 400)
    fails(post(http, "/face/detect", account, {}), -1300, 400)
    for url, code in [
        ("http://127.0.0.1:9/face.jpg", -1308),  # loopback: refused by the fetch guard
        (photos.url("/missing.jpg"), -1308),
        (photos.url("/slow"), -1403),  # no answer within FACESRV_FETCH_TIMEOUT
    ]:
        fails(post(http, "/face/detect", account, {"url": url}), code, 400)


def test_compare_says_which_photo_failed(http: httpx.Client, account: TencentAccount) -> None:
    face = ("a.jpg", celeba_bytes(ALICE[0]))
    first = post(http, "/face/compare", account, files={"imageA": ("b.jpg", b"x"), "imageB": face})
    assert fails(first, -1102, 400) == {"fail_flag": 1}
    second = post(
        http, "/face/compare", account, files={"imageA": face, "imageB": ("b.jpg", _jpeg(99, 99))}
    )
    assert fails(second, -1101, 400) == {"fail_flag": 2}


# --- persons, groups, faces ------------------------------------------------------------------


def test_unknown_and_duplicate_entities_have_their_codes(
    http: httpx.Client, account: TencentAccount
) -> None:
    assert code_of(_newperson(http, account, "p", ["g"], celeba_bytes(ALICE[0]))) == 0
    fails(_newperson(http, account, "p", ["g"], celeba_bytes(BOB[0])), -1302, 400)
    fails(post(http, "/face/delperson", account, {"person_id": "nobody"}), -1303, 400)
    photo = {"images[0]": ("x.jpg", celeba_bytes(BOB[0]))}
    fails(post(http, "/face/addface", account, {"person_id": "nobody"}, files=photo), -1303, 400)
    fails(post(http, "/face/getfaceinfo", account, {"face_id": "1000000000000999999"}), -1305, 400)
    fails(post(http, "/face/getfaceinfo", account, {"face_id": "not-an-id"}), -1305, 400)
    unknown_faces = {"person_id": "p", "face_ids": ["1000000000000999999"]}
    fails(post(http, "/face/delface", account, unknown_faces), -1305, 400)
    fails(post(http, "/face/getpersonids", account, {"group_id": "nogroup"}), -1306, 400)
    probe = {"image": ("x.jpg", celeba_bytes(ALICE[0]))}
    fails(post(http, "/face/identify", account, {"group_id": "nog"}, files=probe), -1306, 400)
    empty = post(http, "/face/newperson", account, {"person_id": "q", "group_ids": [], "url": "u"})
    fails(empty, -1307, 400)


def test_limits_have_their_codes_and_a_refused_call_leaves_nothing(http: httpx.Client) -> None:
    from tests.conftest import DEFAULT_QUOTA

    small = tencent_account(
        quota={**DEFAULT_QUOTA, "faces_per_person": 1, "persons": 1, "groups": 1}
    )
    fails(_newperson(http, small, "p", ["g1", "g2"], celeba_bytes(ALICE[0])), -1311, 400)
    assert code_of(post(http, "/face/getinfo", small, {"person_id": "p"})) == -1303
    assert post(http, "/face/getgroupids", small).json()["data"] == {"group_ids": []}

    assert code_of(_newperson(http, small, "p", ["g1"], celeba_bytes(ALICE[0]))) == 0
    fails(_newperson(http, small, "q", ["g1"], celeba_bytes(BOB[0])), -1310, 400)
    photo = {"images[0]": ("x.jpg", celeba_bytes(ALICE[1]))}
    data = fails(post(http, "/face/addface", small, {"person_id": "p"}, files=photo), -1309, 400)
    assert (data["added"], data["ret_codes"]) == (0, [-1309])
    too_many = {"person_id": "p", "urls": ["http://127.0.0.2/x.jpg"] * 21}
    fails(post(http, "/face/addface", small, too_many), -1309, 400)


def test_a_face_already_on_the_person_is_refused(
    http: httpx.Client, account: TencentAccount
) -> None:
    assert code_of(_newperson(http, account, "p", ["g"], celeba_bytes(ALICE[0]))) == 0
    again = {
        "images[0]": ("x.jpg", celeba_bytes(ALICE[0])),
        "images[1]": ("y.jpg", celeba_bytes(ALICE[1])),
    }
    added = post(http, "/face/addface", account, {"person_id": "p"}, files=again)
    assert code_of(added) == 0
    assert added.json()["data"]["ret_codes"] == [-1312, 0]
