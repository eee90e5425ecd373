"""Secrets never reach a log: every record of the server's loggers is redacted before output.

SenseTime clients put `api_secret` in the query string, and uvicorn's access log prints the
full path; the coming dialects add signatures and secret keys. The filter rewrites each record's
message and string arguments, so what a formatter prints (console, file, `docker logs`) carries
`api_secret=***` instead of the value.
"""

from __future__ import annotations

import logging
import re

# Query or form style `name=value` (and JSON `"name": "value"`) for every secret-bearing name.
SECRET_NAMES = ("api_secret", "secret_key", "secretkey", "accesskeysecret", "signature", "sig")
_NAMES = "|".join(SECRET_NAMES)
_SECRET_RE = re.compile(
    rf"""(?P<key>["']?\b(?:{_NAMES})["']?\s*[=:]\s*["']?)(?P<value>[^&\s"',;}}]+)""",
    re.IGNORECASE,
)
# The loggers that print requests or errors: uvicorn's access and error logs and our own.
LOGGERS = ("uvicorn.access", "uvicorn.error", "facesrv")


def redact(text: str) -> str:
    return _SECRET_RE.sub(lambda m: f"{m.group('key')}***", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_redaction() -> None:
    """Attach the filter once per process (create_app may run more than once in tests)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
