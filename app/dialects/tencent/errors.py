"""Tencent's error codes and the HTTP statuses sent with them.

The codes are the seed's table (`../shared/seeds/tencent-youtu-face-api.md`, 错误码). The seed
names no HTTP status; what we send:
- 401 for the signature codes (4, 5, 6, 9, 10, 11, 12, 13, 14): the request is not
  authenticated;
- 403 for 3 (account refused: disabled, expired, or not allowed this endpoint) and 15 (rate);
- 413 for 23 (body too large), 500 for 213 (internal);
- 400 for every parameter, image, entity and limit code (21, -1xxx).
The official Python SDK (`qcloud-image` 1.0.0, `Http.post`) reads the JSON body whatever the
status and adds it as `httpcode`; the Node SDK resolves with the body too. Clients therefore
test `code`; the status only has to be honest for proxies, logs and curl users.

Everything below the door raises `ApiError` with SenseTime's status names; `from_api_error`
maps those to Tencent's codes, so services stay vendor-neutral.
"""

from __future__ import annotations

from enum import IntEnum

from app.errors import ApiError
from app.services.membership import QuotaExceeded


class Code(IntEnum):
    OK = 0
    ACCOUNT_REFUSED = 3
    SIGNATURE_EMPTY = 4
    SIGNATURE_MALFORMED = 5
    SIGNATURE_TARGET_MISMATCH = 6
    SIGNATURE_EXPIRED = 9
    APPID_UNKNOWN = 10
    SECRETID_UNKNOWN = 11
    APPID_SECRETID_MISMATCH = 12
    REPLAY = 13
    SIGNATURE_INVALID = 14
    TOO_FREQUENT = 15
    INVALID_PARAMETER = 21
    BODY_TOO_LARGE = 23
    INTERNAL = 213
    NO_FACE = -1101
    IMAGE_DECODE_FAILED = -1102
    IMAGE_EMPTY = -1300
    PARAMETER_EMPTY = -1301
    PERSON_EXISTS = -1302
    PERSON_UNKNOWN = -1303
    PARAMETER_TOO_LONG = -1304
    FACE_UNKNOWN = -1305
    GROUP_UNKNOWN = -1306
    GROUP_LIST_EMPTY = -1307
    URL_DOWNLOAD_FAILED = -1308
    TOO_MANY_FACES = -1309
    TOO_MANY_PERSONS = -1310
    TOO_MANY_GROUPS = -1311
    SIMILAR_FACE = -1312
    PARAMETER_ILLEGAL = -1313
    IMAGE_FORMAT_INVALID = -1400
    IMAGE_DOWNLOAD_FAILED = -1403


SIGNATURE_CODES = frozenset(
    {
        Code.SIGNATURE_EMPTY,
        Code.SIGNATURE_MALFORMED,
        Code.SIGNATURE_TARGET_MISMATCH,
        Code.SIGNATURE_EXPIRED,
        Code.APPID_UNKNOWN,
        Code.SECRETID_UNKNOWN,
        Code.APPID_SECRETID_MISMATCH,
        Code.REPLAY,
        Code.SIGNATURE_INVALID,
    }
)


def http_status(code: Code) -> int:
    if code in SIGNATURE_CODES:
        return 401
    if code in (Code.ACCOUNT_REFUSED, Code.TOO_FREQUENT):
        return 403
    if code is Code.BODY_TOO_LARGE:
        return 413
    if code is Code.INTERNAL:
        return 500
    return 200 if code is Code.OK else 400


class TencentError(ApiError):
    """A Tencent error code with its message, and what the envelope's `data` says beside them
    (which photo of a compare failed, the per-photo codes of an add)."""

    def __init__(self, code: Code, message: str, data: dict | None = None) -> None:
        super().__init__(http_status(code), str(int(code)), message)
        self.code = code
        self.message = message
        self.data = data or {}


# SenseTime status names (raised by the core) to Tencent codes.
_BY_STATUS = {
    "UNAUTHORIZED": Code.ACCOUNT_REFUSED,  # admit(): a disabled account
    "KEY_EXPIRED": Code.ACCOUNT_REFUSED,
    "NO_PERMISSION": Code.ACCOUNT_REFUSED,
    "RATE_LIMIT_EXCEEDED": Code.TOO_FREQUENT,
    "INVALID_ARGUMENT": Code.INVALID_PARAMETER,
    "REQUEST_ENTITY_TOO_LARGE": Code.BODY_TOO_LARGE,
    "REQUEST_TIMEOUT": Code.INVALID_PARAMETER,
    "CORRUPT_IMAGE": Code.IMAGE_DECODE_FAILED,
    "INVALID_IMAGE_FORMAT_OR_SIZE": Code.IMAGE_FORMAT_INVALID,
    "IMAGE_FILE_SIZE_TOO_BIG": Code.IMAGE_FORMAT_INVALID,
    "DOWNLOAD_ERROR": Code.URL_DOWNLOAD_FAILED,
    "DOWNLOAD_TIMEOUT": Code.IMAGE_DOWNLOAD_FAILED,
    "NO_FACE": Code.NO_FACE,
    "SIMILAR_FACE": Code.SIMILAR_FACE,
    "DUPLICATE_KEY": Code.PERSON_EXISTS,
    "INVALID_PERSON": Code.PERSON_UNKNOWN,
    "EMPTY_PERSON": Code.FACE_UNKNOWN,
    "INVALID_FACE": Code.FACE_UNKNOWN,
    "INVALID_GROUP": Code.GROUP_UNKNOWN,
    "EMPTY_GROUP": Code.GROUP_UNKNOWN,
}
# Which quota is full, to the limit code the seed has for it.
_BY_QUOTA = {
    "faces_per_person": Code.TOO_MANY_FACES,
    "persons": Code.TOO_MANY_PERSONS,
    "persons_per_group": Code.TOO_MANY_PERSONS,
    "groups": Code.TOO_MANY_GROUPS,
}


def from_api_error(error: ApiError) -> TencentError:
    """The Tencent code for an error raised below the door (a TencentError stays as it is)."""
    if isinstance(error, TencentError):
        return error
    if isinstance(error, QuotaExceeded):
        return TencentError(_BY_QUOTA.get(error.quota, Code.INVALID_PARAMETER), str(error))
    fallback = Code.INTERNAL if error.http_status >= 500 else Code.INVALID_PARAMETER
    return TencentError(_BY_STATUS.get(error.status, fallback), error.reason or error.status)
