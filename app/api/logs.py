"""Secrets never reach a log: every record of the server's loggers is redacted before output.

SenseTime clients put `api_secret` in the query string, and uvicorn's access log prints the
full path; the coming dialects add signatures and secret keys. The filter rewrites each record's
message and string arguments, so what a formatter prints (console, file, `docker logs`) carries
`api_secret=***` instead of the value.
"""

from __future__ import annotations

import json
import logging
import re
import time

# Query or form style `name=value` (and JSON `"name": "value"`) for every secret-bearing name.
SECRET_NAMES = ("api_secret", "secret_key", "secretkey", "accesskeysecret", "signature", "sig")
_NAMES = "|".join(SECRET_NAMES)
_SECRET_RE = re.compile(
    rf"""(?P<key>["']?\b(?:{_NAMES})["']?\s*[=:]\s*["']?)(?P<value>[^&\s"',;}}]+)""",
    re.IGNORECASE,
)
# The loggers that print requests or errors: uvicorn's access and error logs and our own.
LOGGERS = ("uvicorn.access", "uvicorn.error", "facesrv", "facesrv.access")


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


# --- format: text by default, one JSON object a line with FACESRV_LOG_FORMAT=json -------------

# The fields a request's line carries (app.api.middleware), in this order.
REQUEST_FIELDS = (
    "request_id",
    "api_id",
    "method",
    "path",
    "endpoint",
    "dialect",
    "http_status",
    "status",
    "latency_ms",
    "client",
)
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


JsonFormatter.converter = time.gmtime  # type: ignore[assignment]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: str, level: str) -> None:
    """The root handler in the chosen format; uvicorn's loggers write through it too."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RedactSecrets())  # every record that reaches the output, whatever logger
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    install_redaction()
