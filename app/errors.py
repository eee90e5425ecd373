"""The one error type the API raises.

Everything below the routers (services, parsers, media decoding) raises `ApiError` with the seed's
HTTP code and `status` string; the app turns it into `{"status": ..., "reason": ...}`. Keeping the
wire code on the exception lets deep layers fail precisely without knowing about HTTP responses.
"""

from __future__ import annotations


class ApiError(Exception):
    """A failure the client is told about, with the seed's HTTP code and status string."""

    headers: dict[str, str] | None = None  # sent with it (Retry-After on a retryable failure)

    def __init__(self, http_status: int, status: str, reason: str | None = None) -> None:
        super().__init__(reason or status)
        self.http_status = http_status
        self.status = status
        self.reason = reason

    def body(self) -> dict[str, str]:
        body = {"status": self.status}
        if self.reason:
            body["reason"] = self.reason
        return body


def invalid_argument(reason: str) -> ApiError:
    """400 INVALID_ARGUMENT, the seed's answer to any malformed parameter."""
    return ApiError(400, "INVALID_ARGUMENT", reason)


def unavailable(reason: str, retry_after: int) -> ApiError:
    """503 SERVICE_UNAVAILABLE: a backend the call needs failed; retry after `retry_after` s."""
    error = ApiError(503, "SERVICE_UNAVAILABLE", reason)
    error.headers = {"Retry-After": str(retry_after)}
    return error


def bad_request(status: str, reason: str | None = None) -> ApiError:
    """400 with an endpoint-specific status such as INVALID_FACE or CORRUPT_IMAGE."""
    return ApiError(400, status, reason)
