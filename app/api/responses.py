"""The one JSON response type: ASCII-only, keys in the order the router built them, and the
request id appended to every body (one SDK decodes bytes as Latin-1, another splits on commas
and reads the first keys positionally, so nothing may be inserted before them)."""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")
# Where each dialect's body says how the call went: SenseTime `status`, Huawei `error_code`,
# Tencent and Alibaba `code` (a success has one too, except Huawei's).
STATUS_KEYS = ("status", "error_code", "code")


@dataclass
class Outcome:
    """How one request went, for its log line and metrics (app.api.middleware)."""

    http_status: int = 500
    status: str = ""  # the body's status code, as its dialect spells it
    seconds: float = 0.0


current_outcome: ContextVar[Outcome | None] = ContextVar("current_outcome", default=None)


def _note_status(content: Any) -> None:
    outcome = current_outcome.get()
    if outcome is not None and isinstance(content, dict):
        found = next((content[key] for key in STATUS_KEYS if key in content), None)
        if found is not None:
            outcome.status = str(found)


# A body that already names the request (a vendor's own spelling) gets no second copy.
REQUEST_ID_KEYS = frozenset({"request_id", "requestId", "RequestId"})


class ApiResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        _note_status(content)
        if isinstance(content, dict) and not REQUEST_ID_KEYS.intersection(content):
            request_id = current_request_id.get()
            if request_id:
                content = {**content, "request_id": request_id}
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")
