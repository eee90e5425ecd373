"""Huawei's error body `{"error_code", "error_msg"}` and the codes and statuses it carries.

Codes and statuses are the vendor's public error-code table (FRS API reference, "Error Codes"):
FRS.0002 token refused (403); FRS.0011 a parameter missing, FRS.0012 a parameter malformed,
FRS.0013 image size, FRS.0014 body not JSON, FRS.0015 bad Base64, FRS.0016 image format,
FRS.0017 body too large (all 400); FRS.0018 internal (500); FRS.0020 sub-service (here: the
endpoint) not enabled; FRS.0202 service frozen (here: account disabled or expired);
FRS.0301 face set exists, FRS.0302 no such face set, FRS.0304 no face to search with;
FRS.0402 no such field, FRS.0403 no such face, FRS.0404 no face to add (all 400). AK/SK
failures are the API gateway's: APIG.0301 (401), rate limiting APIG.0308 (429).
Where the table has no code for a case (a full face set, the account's quota), FRS.0012 says
what is wrong in `error_msg`.
"""

from __future__ import annotations

from app.errors import ApiError
from app.services.membership import QuotaExceeded

INTERNAL = "FRS.0018"


class HuaweiError(ApiError):
    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(http_status, code, message)
        self.code = code
        self.message = message


def gateway_refusal(message: str) -> HuaweiError:
    return HuaweiError(401, "APIG.0301", f"Incorrect IAM authentication information: {message}")


def bad_parameter(message: str) -> HuaweiError:
    return HuaweiError(400, "FRS.0012", message)


# The core's status names to (HTTP status, Huawei code).
_BY_STATUS = {
    "UNAUTHORIZED": (403, "FRS.0202"),  # admit(): a disabled account
    "KEY_EXPIRED": (403, "FRS.0202"),
    "NO_PERMISSION": (400, "FRS.0020"),
    "RATE_LIMIT_EXCEEDED": (429, "APIG.0308"),
    "SERVICE_UNAVAILABLE": (503, INTERNAL),  # a backend failed for now: retry
    "INVALID_ARGUMENT": (400, "FRS.0012"),
    "REQUEST_TIMEOUT": (400, "FRS.0012"),
    "REQUEST_ENTITY_TOO_LARGE": (400, "FRS.0017"),
    "CORRUPT_IMAGE": (400, "FRS.0016"),
    "INVALID_IMAGE_FORMAT_OR_SIZE": (400, "FRS.0013"),
    "IMAGE_FILE_SIZE_TOO_BIG": (400, "FRS.0013"),
    "DOWNLOAD_ERROR": (400, "FRS.0012"),
    "DOWNLOAD_TIMEOUT": (400, "FRS.0012"),
    "DUPLICATE_KEY": (400, "FRS.0301"),
    "INVALID_FACESET": (400, "FRS.0302"),
    "INVALID_FACE": (400, "FRS.0403"),
    "NO_FACE": (400, "FRS.0404"),
    "UNKNOWN_FIELD": (400, "FRS.0402"),
    "INVALID_FIELDS": (400, "FRS.0012"),
    "FACESET_FULL": (400, "FRS.0012"),
    "QUOTA_EXCEEDED": (400, "FRS.0012"),
}


def from_api_error(error: ApiError) -> HuaweiError:
    if isinstance(error, HuaweiError):
        return error
    fallback = (500, INTERNAL) if error.http_status >= 500 else (400, "FRS.0012")
    status, code = _BY_STATUS.get(error.status, fallback)
    message = error.reason or error.status
    if isinstance(error, QuotaExceeded):
        message = f"{message} (raise the account's quota)"
    return HuaweiError(status, code, message)
