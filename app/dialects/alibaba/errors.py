"""Alibaba's two kinds of failure, as its SDK and clients read them.

- A request the gateway refuses (signature, AccessKey, Date, Content-MD5, throttling, body
  size): a non-2xx status with `{"Code", "Message", "RequestId"}`, which the SDK raises as a
  `ServerException`. Codes are the gateway's: `SignatureDoesNotMatch`, `IncompleteSignature`,
  `InvalidTimeStamp.Expired`, `InvalidTimeStamp.Format`, `ContentMD5NotMatched` (400),
  `InvalidAccessKeyId.NotFound` (404), `InvalidAccessKeyId.Inactive` (400), `Throttling.User`
  (400), `Forbidden` (403), `RequestEntityTooLarge` (413), `InternalError` (500).
- A business failure of an authenticated call: HTTP 200 with the Green envelope
  `{"code", "msg", "requestId", "data": {}}`, `code` one of Green's common codes: 400 bad
  request, 404 not found, 480 download failed, 588 quota exceeded, 589 image too large,
  590 bad image format, 592 download timeout.
"""

from __future__ import annotations

from app.errors import ApiError
from app.services.membership import QuotaExceeded


class GatewayError(ApiError):
    """Refused before the operation ran: a non-2xx `{"Code", "Message", "RequestId"}`."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(http_status, code, message)
        self.code = code
        self.message = message


class BusinessError(ApiError):
    """The operation failed: HTTP 200 with Green's `code` and `msg`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(200, str(code), message)
        self.code = code
        self.message = message


_GATEWAY = {
    "UNAUTHORIZED": (400, "InvalidAccessKeyId.Inactive"),  # admit(): a disabled account
    "KEY_EXPIRED": (400, "InvalidAccessKeyId.Inactive"),
    "NO_PERMISSION": (403, "Forbidden"),
    "RATE_LIMIT_EXCEEDED": (400, "Throttling.User"),
    "REQUEST_ENTITY_TOO_LARGE": (413, "RequestEntityTooLarge"),
    "REQUEST_TIMEOUT": (400, "RequestTimeout"),
}
_BUSINESS = {
    "INVALID_PERSON": 404,
    "INVALID_GROUP": 404,
    "INVALID_FACE": 404,
    "EMPTY_GROUP": 404,
    "DOWNLOAD_ERROR": 480,
    "DOWNLOAD_TIMEOUT": 592,
    "IMAGE_FILE_SIZE_TOO_BIG": 589,
    "CORRUPT_IMAGE": 590,
    "INVALID_IMAGE_FORMAT_OR_SIZE": 590,
}


def from_api_error(error: ApiError) -> GatewayError | BusinessError:
    if isinstance(error, GatewayError | BusinessError):
        return error
    message = error.reason or error.status
    if isinstance(error, QuotaExceeded):
        return BusinessError(588, message)
    if error.status in _GATEWAY:
        status, code = _GATEWAY[error.status]
        return GatewayError(status, code, message)
    if error.http_status == 503:  # a backend failed for now: POP's retryable gateway error
        return GatewayError(503, "ServiceUnavailable", message)
    if error.http_status >= 500:
        return GatewayError(500, "InternalError", message)
    return BusinessError(_BUSINESS.get(error.status, 400), message)
