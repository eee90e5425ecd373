"""The one request parser every endpoint uses.

SenseTime v1 clients put parameters wherever their HTTP library puts them: the query string, a
JSON body (sometimes with the wrong Content-Type), a urlencoded body or a multipart body, and often
split across the query string and the body. Each SDK also has its own idea of how to send lists,
booleans and integers. Rather than let every route cope with that, `Params.from_request` reads the
request once into a neutral `name -> values` map and the typed accessors apply the tolerant rules of
`wire-compat.md` in one place, so every endpoint accepts and rejects exactly the same inputs.

The multipart splitter is our own on purpose: real clients send bodies (stray CRLF before the first
boundary, no closing `--`, file-style text parts, odd part Content-Types) that a stricter general
parser rejects or misfiles, and the image must be chosen by field name alone.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeAlias
from urllib.parse import parse_qsl

from starlette.requests import Request

from app.config import get_settings
from app.errors import ApiError, invalid_argument

# Bounds on what one parameter may carry, so that no value reaches Python or the database in a
# form they fail on (a 500) instead of refusing it: ids per list (PostgreSQL allows 65,535 bound
# parameters a statement), digits of an integer (int() refuses more than 4,300).
MAX_LIST_ITEMS = 10_000
MAX_INTEGER_DIGITS = 18
# Names and user data are stored and sent back on every listing, so they are bounded too.
MAX_NAME_CHARS = 256
MAX_USER_DATA_CHARS = 16_384
# NUL (PostgreSQL text cannot hold it) and lone UTF-16 surrogates (JSON's "\ud800"; no
# encoder can write them): refused in every text value, credentials included.
_UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")

# SenseTime's only multipart field that carries image bytes; every other part is text. Other
# dialects name their own (`with_body(image_field=...)`).
IMAGE_FIELDS = frozenset({"file"})
ImageField = Callable[[str], bool]

_INT_RE = re.compile(r"[+-]?[0-9]+")
_TRUE = frozenset({"1", "true"})
_FALSE = frozenset({"0", "false"})
# `name=value` parameters of a header such as Content-Type or Content-Disposition; the value is
# either a quoted string (backslash escapes allowed) or a bare token.
_HEADER_PARAM_RE = re.compile(r';\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))', re.DOTALL)

# One value as received: a query/urlencoded string, a JSON value, or a multipart part's raw bytes
# (decoded only when a text accessor asks, so an unused binary part never fails a request).
Raw: TypeAlias = str | bytes | int | float | bool | list[object] | dict[str, object]


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "REQUEST_ENTITY_TOO_LARGE", f"request body exceeds {limit} bytes")


async def read_body(request: Request, timeout_s: float | None) -> bytes:
    """Read the body, refusing oversized ones before (Content-Length) or while streaming, and
    ones that have not fully arrived within `timeout_s` (a stalled upload pins its memory)."""
    limit = get_settings().max_body_bytes
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                if len(body) + len(chunk) > limit:
                    raise _too_large(limit)
                body += chunk
    except TimeoutError:
        raise ApiError(
            408, "REQUEST_TIMEOUT", f"request body not received within {timeout_s:g} s"
        ) from None
    return bytes(body)


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `main; a=1; b="x y"` into the lower-cased main value and its (lower-cased) params."""
    main, _, _ = value.partition(";")
    params: dict[str, str] = {}
    for match in _HEADER_PARAM_RE.finditer(value[len(main) :]):
        key, quoted, bare = match.groups()
        if quoted is not None:
            params[key.lower()] = re.sub(r"\\(.)", r"\1", quoted)
        else:
            params[key.lower()] = bare.strip()
    return main.strip().lower(), params


def _add(target: dict[str, list[Raw]], name: str, value: Raw) -> None:
    target.setdefault(name, []).append(value)


def _parse_query(text: str) -> dict[str, list[Raw]]:
    """Query string or urlencoded body: percent-encoded UTF-8, blank values kept, `&` tolerant."""
    result: dict[str, list[Raw]] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        _add(result, name, value)
    return result


def _parse_json(body: bytes) -> dict[str, list[Raw]]:
    """A JSON object body; `null` counts as absent, since many clients serialise unset fields so."""
    try:
        document = json.loads(body)
    except RecursionError:
        raise invalid_argument("request body is not valid JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_argument(f"request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise invalid_argument("request body must be a JSON object")
    return {name: [value] for name, value in document.items() if value is not None}


def _multipart_boundary(content_type: str) -> bytes:
    boundary = _header_params(content_type)[1].get("boundary", "")
    if not boundary:
        raise invalid_argument("multipart body without a boundary in its Content-Type")
    return boundary.encode("latin-1", "replace")


def _split_part(part: bytes) -> tuple[dict[str, str], bytes]:
    """Split one part into its headers (lower-cased names) and its content, kept byte for byte."""
    if part.startswith(b"\r\n"):
        return {}, part[2:]
    if part.startswith(b"\n"):
        return {}, part[1:]
    head, sep, content = part.partition(b"\r\n\r\n")
    if not sep:
        head, sep, content = part.partition(b"\n\n")
    if not sep:
        raise invalid_argument("malformed multipart body: part headers are not terminated")
    headers: dict[str, str] = {}
    for line in re.split(rb"\r?\n", head):
        name, colon, value = line.partition(b":")
        if not colon:
            raise invalid_argument("malformed multipart body: bad part header line")
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("latin-1")
        headers[name.decode("latin-1").strip().lower()] = text.strip()
    return headers, content


def _parse_multipart(
    body: bytes, content_type: str, image_field: ImageField = IMAGE_FIELDS.__contains__
) -> tuple[dict[str, list[Raw]], dict[str, list[bytes]]]:
    """Split a multipart/form-data body into text values and the image part(s).

    Anything before the first delimiter (a stray CRLF) is preamble; the body may end right after a
    delimiter without the closing `--`. A part's content runs up to the CRLF (or bare LF) before the
    next delimiter and is otherwise untouched, so trailing bytes after a JPEG stay as sent.
    """
    delimiter = b"--" + _multipart_boundary(content_type)
    position = body.find(delimiter)
    if position < 0:
        raise invalid_argument("malformed multipart body: boundary not found")
    values: dict[str, list[Raw]] = {}
    images: dict[str, list[bytes]] = {}
    while True:
        position += len(delimiter)
        rest = body[position:]
        if rest.startswith(b"--") or not rest.strip():
            break
        line_end = body.find(b"\n", position)
        if line_end < 0 or body[position:line_end].strip():
            raise invalid_argument("malformed multipart body: junk after a boundary")
        start = line_end + 1
        next_delimiter = body.find(b"\n" + delimiter, start - 1)
        if next_delimiter < 0:
            raise invalid_argument("malformed multipart body: final boundary missing")
        part = body[start:next_delimiter]
        if part.endswith(b"\r"):
            part = part[:-1]
        headers, content = _split_part(part)
        name = _header_params(headers.get("content-disposition", ""))[1].get("name")
        if not name:
            raise invalid_argument("malformed multipart body: part without a field name")
        if image_field(name):
            images.setdefault(name, []).append(content)
        else:
            _add(values, name, content)
        position = next_delimiter + 1
    return values, images


def _is_json(media_type: str, body: bytes) -> bool:
    """JSON by Content-Type, or by its first byte whatever the (often wrong) Content-Type says."""
    if media_type == "application/json" or media_type.endswith("+json"):
        return True
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[")


def _storable(name: str, text: str) -> str:
    if _UNSTORABLE_RE.search(text):
        raise argument_error(name, "contains a NUL character or a lone surrogate")
    return text


def bounded(name: str, value: str | None, max_chars: int) -> str | None:
    if value is not None and len(value) > max_chars:
        raise argument_error(name, f"longer than {max_chars} characters")
    return value


def _numbered(name: str, keys: Iterable[str]) -> list[str]:
    """The keys `name[0]`, `name[1]`, ... among `keys`, in index order."""
    indexes = {key: key[len(name) + 1 : -1] for key in keys if key.startswith(f"{name}[")}
    found = [
        (int(index), key) for key, index in indexes.items() if key.endswith("]") and index.isdigit()
    ]
    return [key for _, key in sorted(found)]


def argument_error(name: str, problem: str) -> ApiError:
    return invalid_argument(f"argument '{name}': {problem}")


@dataclass(frozen=True)
class Params:
    """Every parameter of one request, query string and body merged (the body wins per name)."""

    values: dict[str, list[Raw]] = field(default_factory=dict)
    images: dict[str, list[bytes]] = field(default_factory=dict)

    @classmethod
    def from_query(cls, request: Request) -> Params:
        """The query string alone: enough to authenticate before the body is read."""
        # Straight from the ASGI scope: `request.url` would involve the Host header, and raw
        # (unescaped) UTF-8 in a query string must not be read as Latin-1.
        query = request.scope.get("query_string", b"").decode("utf-8", "replace")
        return cls(values=_parse_query(query))

    @classmethod
    async def from_request(cls, request: Request, body_timeout_s: float | None = None) -> Params:
        """Read and merge the query string and whatever body encoding the client chose."""
        return await cls.from_query(request).with_body(request, body_timeout_s)

    async def with_body(
        self,
        request: Request,
        timeout_s: float | None = None,
        image_field: ImageField = IMAGE_FIELDS.__contains__,
    ) -> Params:
        """These (query) parameters merged with the body's, which win per name; multipart parts
        that `image_field` names are kept as image bytes."""
        body = await read_body(request, timeout_s)
        return self.with_read_body(request, body, image_field)

    def with_read_body(
        self,
        request: Request,
        body: bytes,
        image_field: ImageField = IMAGE_FIELDS.__contains__,
    ) -> Params:
        """`with_body` for a body already read: a signature over it is checked before it is
        parsed, so an unauthenticated caller's malformed body is refused as unauthenticated."""
        body_values: dict[str, list[Raw]] = {}
        images: dict[str, list[bytes]] = {}
        media_type, _ = _header_params(request.headers.get("content-type", ""))
        if not body.strip():
            pass  # parameters only in the query string, as on many mutation POSTs
        elif media_type == "multipart/form-data":
            body_values, images = _parse_multipart(
                body, request.headers["content-type"], image_field
            )
        elif _is_json(media_type, body):
            body_values = _parse_json(body)
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise invalid_argument(
                    "request body is neither JSON, urlencoded nor multipart/form-data"
                ) from None
            body_values = _parse_query(text)
        merged = {**self.values, **body_values}
        for name in images:
            merged.pop(name, None)
        return Params(values=merged, images=images)

    def value(self, name: str) -> Raw | None:
        """The single value of `name` as received (a JSON object stays an object)."""
        return self._one(name)

    def has(self, name: str) -> bool:
        """Whether the client sent `name` at all (even empty), for "either a or b" checks."""
        return name in self.values or name in self.images

    def _one(self, name: str) -> Raw | None:
        """The single value of `name`; identical repeats (one SDK doubles the query) collapse."""
        found = self.values.get(name)
        if not found:
            return None
        first = found[0]
        if any(other != first for other in found[1:]):
            raise argument_error(name, "given more than once with different values")
        return first

    def _string(self, name: str) -> str | None:
        value = self._one(name)
        if value is None:
            return None
        if isinstance(value, str):
            return _storable(name, value)
        if isinstance(value, bytes):
            try:
                return _storable(name, value.decode("utf-8"))
            except UnicodeDecodeError:
                raise argument_error(name, "not valid UTF-8 text") from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise argument_error(name, "must be a string")

    def text(self, name: str, *, required: bool = False) -> str | None:
        """A text argument as sent (not trimmed); JSON numbers are accepted in their string form."""
        value = self._string(name)
        if value is None and required:
            raise argument_error(name, "required")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean sent as 1/0, "1"/"0", "true"/"false" or JSON true/false."""
        value = self._one(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return value == 1
        if isinstance(value, str | bytes):
            word = self._string(name) or ""
            if word.strip().lower() in _TRUE:
                return True
            if word.strip().lower() in _FALSE:
                return False
        raise argument_error(name, "must be 0 or 1")

    def integer(self, name: str, *, default: int, lo: int, hi: int) -> int:
        """An integer sent as a JSON number or a decimal string, checked against `lo..hi`."""
        value = self._one(name)
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str | bytes):
            digits = (self._string(name) or "").strip()
            if not _INT_RE.fullmatch(digits):
                raise argument_error(name, "must be an integer")
            significant = digits.lstrip("+-").lstrip("0") or "0"
            if len(significant) > MAX_INTEGER_DIGITS:
                raise argument_error(name, f"not in range({lo}..{hi})")
            number = -int(significant) if digits.startswith("-") else int(significant)
        else:
            raise argument_error(name, "must be an integer")
        if not lo <= number <= hi:
            raise argument_error(name, f"not in range({lo}..{hi})")
        return number

    def number(self, name: str, *, default: float, lo: float, hi: float) -> float:
        """A finite number sent as a JSON number or a decimal string, checked against lo..hi."""
        value = self._one(name)
        if value is None:
            return default
        if isinstance(value, bool):
            raise argument_error(name, "must be a number")
        if isinstance(value, int | float):
            number = float(value)
        else:
            text = (self._string(name) or "").strip()
            if len(text) > 40:
                raise argument_error(name, "must be a number")
            try:
                number = float(text)
            except ValueError:
                raise argument_error(name, "must be a number") from None
        if not (math.isfinite(number) and lo <= number <= hi):
            raise argument_error(name, f"not in range({lo:g}..{hi:g})")
        return number

    def id_list(self, name: str) -> list[str] | None:
        """Ids from a JSON array, comma-joined strings, a bare id or repeated keys.

        Items are trimmed, empty items dropped and duplicates removed, keeping first-seen order.
        None means the argument is absent; an empty list means it was sent with no usable id.
        """
        found = self.values.get(name)
        if found is None:
            return None
        ids: dict[str, None] = {}
        for value in found:
            for item in self._id_items(name, value):
                for piece in item.split(","):
                    if piece.strip():
                        ids[_storable(name, piece.strip())] = None
                if len(ids) > MAX_LIST_ITEMS:
                    raise argument_error(name, f"more than {MAX_LIST_ITEMS} ids")
        return list(ids)

    def _id_items(self, name: str, value: Raw) -> list[str]:
        """Flatten one received value into id strings (still possibly comma-joined)."""
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise argument_error(name, "not valid UTF-8 text") from None
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("[") and stripped.endswith("]"):
                # A JSON array stringified into a form field, as some clients do.
                try:
                    value = json.loads(stripped)
                except (ValueError, RecursionError):
                    raise argument_error(name, "must be a list of ids") from None
            else:
                return [value]
        items = value if isinstance(value, list) else [value]
        result: list[str] = []
        for item in items:
            if isinstance(item, str):
                result.append(item)
            elif isinstance(item, int) and not isinstance(item, bool):
                result.append(str(item))
            else:
                raise argument_error(name, "must be a list of ids")
        return result

    def indexed(self, name: str) -> list[str] | None:
        """A list sent as `name` (a JSON array or one value) or as indexed keys `name[0]`,
        `name[1]`, ... (how form encoders spell arrays), in index order; None when absent.

        Items are kept as sent (not split on commas, not trimmed): the caller validates them.
        """
        items: list[str] = []
        if name in self.values:
            for value in self.values[name]:
                items.extend(self._id_items(name, value))
        numbered = _numbered(name, self.values)
        for key in numbered:
            items.append(self.text(key) or "")
        if not items and name not in self.values and not numbered:
            return None
        if len(items) > MAX_LIST_ITEMS:
            raise argument_error(name, f"more than {MAX_LIST_ITEMS} items")
        return [_storable(name, item) for item in items]

    def indexed_files(self, name: str) -> list[bytes]:
        """Image parts `name[0]`, `name[1]`, ... in index order."""
        return [self.images[key][0] for key in _numbered(name, self.images)]

    def file(self, name: str = "file") -> bytes | None:
        """The bytes of the multipart image part `name`, exactly as sent; None when absent."""
        found = self.images.get(name)
        if not found:
            return None
        first = found[0]
        if any(other != first for other in found[1:]):
            raise argument_error(name, "given more than once")
        return first

    def credentials(self) -> tuple[str | None, str | None]:
        """`api_id` and `api_secret`, wherever the client put them."""
        return self.text("api_id"), self.text("api_secret")
