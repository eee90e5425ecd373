"""What an endpoint takes, declared once: the parser reads through it, OpenAPI is written from it.

A `Form` lists an operation's `Field`s. A handler reads its arguments with `form.read(params)`
(each field through the tolerant `Params` accessor of its kind, then the dialect's own `check`),
and the route is registered with `form.openapi(...)` as its `openapi_extra`, so the spec names
exactly the parameters, types, defaults and bounds the parser applies: there is no second list
to drift. Where the parameters travel is the dialect's choice: SenseTime takes every parameter in
the query string or in any body encoding, the other vendors a JSON or multipart body, or (GET and
DELETE) the query string.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.api.params import (
    MAX_LIST_ITEMS,
    MAX_NAME_CHARS,
    MAX_USER_DATA_CHARS,
    Params,
    argument_error,
    bounded,
)


class Kind(StrEnum):
    """How a parameter is read (the `Params` accessor) and described (its JSON schema)."""

    TEXT = "text"
    FLAG = "flag"
    INTEGER = "integer"
    NUMBER = "number"
    IDS = "ids"  # a JSON array, comma-joined ids or repeated keys
    LIST = "list"  # a JSON array, one value or indexed keys name[0], name[1], ...
    IMAGE = "image"  # a multipart file part
    IMAGES = "images"  # multipart file parts name[0], name[1], ... in index order
    VALUE = "value"  # any JSON value, as received (objects, arrays)


class Media(StrEnum):
    FORM = "application/x-www-form-urlencoded"
    MULTIPART = "multipart/form-data"
    JSON = "application/json"


# Where each kind of dialect accepts its parameters, in the order Swagger UI offers them.
EVERY_ENCODING = (Media.MULTIPART, Media.FORM, Media.JSON)
JSON_BODY = (Media.JSON,)
JSON_OR_MULTIPART = (Media.JSON, Media.MULTIPART)

Check = Callable[[str, Any], Any]


def _unchecked(_name: str, value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    description: str
    required: bool = False
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    items: str = "string"  # JSON type of a list's items
    # The dialect's own rule after the tolerant read (its error codes, its limits).
    check: Check = _unchecked
    # The JSON schema of a VALUE field (it is read as received, so only its reader knows it).
    shape: dict[str, Any] | None = None

    @property
    def is_file(self) -> bool:
        """Travels as multipart file part(s) only: never in JSON, never in the query string."""
        return self.kind in (Kind.IMAGE, Kind.IMAGES)

    def read(self, params: Params) -> Any:
        """The tolerant read, then the dialect's `check`, then (text) the generic `required` and
        `max_length`: the check runs first so that a dialect answers a missing or overlong value
        with its own error code, the generic rule being the backstop for dialects without one."""
        name = self.name
        match self.kind:
            case Kind.TEXT:
                value = params.text(name)
            case Kind.FLAG:
                value = params.flag(name, bool(self.default))
            case Kind.INTEGER:
                value = params.integer(
                    name, default=self.default, lo=int(self.minimum), hi=int(self.maximum)
                )
            case Kind.NUMBER:
                value = params.number(name, default=self.default, lo=self.minimum, hi=self.maximum)
            case Kind.IDS:
                value = params.id_list(name)
            case Kind.LIST:
                value = params.indexed(name)
            case Kind.IMAGE:
                value = params.file(name)
            case Kind.IMAGES:
                value = params.indexed_files(name)
            case Kind.VALUE:
                value = params.value(name)
        value = self.check(name, value)
        if self.kind is Kind.TEXT:
            if value is None and self.required:
                raise argument_error(name, "required")
            if self.max_length is not None:
                value = bounded(name, value, self.max_length)
        return value

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any]
        match self.kind:
            case Kind.TEXT:
                schema = {"type": "string"}
                if self.max_length is not None:
                    schema["maxLength"] = self.max_length
                if not self.required:  # Swagger UI would fill in and send "string"
                    schema["example"] = ""
            case Kind.FLAG:
                schema = {"type": "boolean", "default": bool(self.default)}
            case Kind.INTEGER | Kind.NUMBER:
                schema = {"type": "integer" if self.kind is Kind.INTEGER else "number"}
                if self.default is not None:
                    schema["default"] = self.default
                schema["minimum"], schema["maximum"] = self.minimum, self.maximum
            case Kind.IDS | Kind.LIST:
                schema = {"type": "array", "items": {"type": self.items}}
                schema["maxItems"] = MAX_LIST_ITEMS
            case Kind.IMAGE:
                schema = {"type": "string", "format": "binary"}
            case Kind.IMAGES:
                schema = {"type": "array", "items": {"type": "string", "format": "binary"}}
            case Kind.VALUE:
                schema = dict(self.shape or {})
        return {**schema, "description": self.description}


# --- constructors: the common fields in one line each ------------------------------------------


def text(name: str, description: str, *, required: bool = False, max_length: int | None = None,
         check: Check = _unchecked) -> Field:  # fmt: skip
    return Field(name, Kind.TEXT, description, required, max_length=max_length, check=check)


def flag(name: str, description: str, default: bool = False) -> Field:
    return Field(name, Kind.FLAG, description, default=default)


def integer(name: str, description: str, *, default: int | None, lo: int, hi: int,
            check: Check = _unchecked) -> Field:  # fmt: skip
    return Field(name, Kind.INTEGER, description, default=default, minimum=lo, maximum=hi,
                 check=check)  # fmt: skip


def number(name: str, description: str, *, default: float, lo: float, hi: float) -> Field:
    return Field(name, Kind.NUMBER, description, default=default, minimum=lo, maximum=hi)


def ids(name: str, description: str, *, required: bool = False, check: Check = _unchecked
        ) -> Field:  # fmt: skip
    return Field(name, Kind.IDS, description, required, check=check)


def listing(name: str, description: str, *, required: bool = False, check: Check = _unchecked
            ) -> Field:  # fmt: skip
    return Field(name, Kind.LIST, description, required, check=check)


def image(name: str, description: str, *, required: bool = False) -> Field:
    return Field(name, Kind.IMAGE, description, required)


def images(name: str, description: str) -> Field:
    """Image parts `name[0]`, `name[1]`, ... (how the Tencent SDK numbers an array of files)."""
    return Field(name, Kind.IMAGES, description)


def value(name: str, description: str, *, required: bool = False, check: Check = _unchecked,
          shape: dict[str, Any] | None = None) -> Field:  # fmt: skip
    return Field(name, Kind.VALUE, description, required, check=check, shape=shape)


def label(description: str, *, required: bool = False) -> Field:
    """`name` of a person, group or faceset: not blank, at most MAX_NAME_CHARS."""
    return Field("name", Kind.TEXT, description, required, max_length=MAX_NAME_CHARS,
                 check=_not_blank)  # fmt: skip


def user_data(description: str = "free text kept with the entity (empty clears it)") -> Field:
    return Field("user_data", Kind.TEXT, description, max_length=MAX_USER_DATA_CHARS)


def _not_blank(name: str, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise argument_error(name, "must not be empty")
    return value


class Args(dict[str, Any]):
    """One request's arguments by name (`args["top"]`), as its form read them."""


@dataclass(frozen=True)
class Form:
    """The fields of one operation, and where they travel."""

    fields: Sequence[Field] = ()
    media: Sequence[Media] = EVERY_ENCODING
    description: str = ""  # what the operation does, for its reader (not its implementer)
    by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})
        assert len(self.by_name) == len(self.fields), "a field declared twice"

    def read(self, params: Params) -> Args:
        return Args((f.name, f.read(params)) for f in self.fields)

    def __add__(self, other: Form) -> Form:
        return Form([*self.fields, *other.fields], self.media, self.description)

    def parameters(self) -> list[dict[str, Any]]:
        """The fields as query parameters (GET, DELETE)."""
        return [
            {
                "name": f.name,
                "in": "query",
                "required": f.required,
                "description": f.description,
                "schema": {k: v for k, v in f.schema().items() if k != "description"},
            }
            for f in self.fields
            if not f.is_file
        ]

    def request_body(self) -> dict[str, Any]:
        content: dict[str, Any] = {}
        for media in self.media:
            multipart = media is Media.MULTIPART
            carried = [f for f in self.fields if multipart or not f.is_file]
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {f.name: f.schema() for f in carried},
            }
            required = [f.name for f in carried if f.required]
            if required:
                schema["required"] = required
            content[media.value] = {"schema": schema}
        return {"required": any(f.required for f in self.fields), "content": content}

    def openapi(self, method: str, **extra: Any) -> dict[str, Any]:
        """The operation's `openapi_extra`: query parameters for GET and DELETE, else a body."""
        if method in ("GET", "DELETE"):
            found: dict[str, Any] = {"parameters": self.parameters()}
        elif self.fields:
            found = {"requestBody": self.request_body()}
        else:
            found = {}
        return {**found, **extra}


NOTHING = Form()
