"""The one JSON response type: ASCII-only, keys in the order the router built them, and the
request id appended to every body (one SDK decodes bytes as Latin-1, another splits on commas
and reads the first keys positionally, so nothing may be inserted before them)."""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

from starlette.responses import JSONResponse

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")
# A body that already names the request (a vendor's own spelling) gets no second copy.
REQUEST_ID_KEYS = frozenset({"request_id", "requestId", "RequestId"})


class ApiResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        if isinstance(content, dict) and not REQUEST_ID_KEYS.intersection(content):
            request_id = current_request_id.get()
            if request_id:
                content = {**content, "request_id": request_id}
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")
