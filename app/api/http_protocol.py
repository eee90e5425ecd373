"""uvicorn's HTTP/1.1 protocol, answering broken framing in JSON like every other error.

A request h11 cannot parse (`Content-Length: abc`, a garbage request line, bad header bytes)
never reaches the application; uvicorn answers it itself with a plain-text 400, which SDKs that
always parse the body choke on. This subclass sends the seed's error body instead.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

PROTOCOL = "app.api.http_protocol:JsonErrorsH11Protocol"  # what `uvicorn --http` takes


class JsonErrorsH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        body = json.dumps(
            {"status": "INVALID_ARGUMENT", "reason": f"malformed HTTP request: {msg}"}
        ).encode("ascii")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()
