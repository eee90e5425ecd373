"""Huawei's `filter` syntax, parsed into a predicate on a library face.

    number:[1 TO 20] && external_image_id:test          a range (inclusive) and a value
    timestamp:12 || (!id:home)                          or, not (in parentheses), grouping

`&&`/`AND`, `||`/`OR`, `!`/`NOT`; values are bare tokens or "quoted strings"; a field is
`external_image_id` or one of the face set's fields. A numeric field compares as a number.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from app.dialects.huawei.errors import bad_parameter
from app.services.libraries import LibraryFace

Predicate = Callable[[LibraryFace], bool]
_TOKEN_RE = re.compile(r'\s*(\|\||&&|[!()\[\]:]|"(?:[^"\\]|\\.)*"|[^\s:()\[\]!&|"]+)')
MAX_FILTER_CHARS = 4096


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if match is None:
            raise bad_parameter(f"filter: cannot read {text[position : position + 20]!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _field(face: LibraryFace, name: str) -> object:
    if name == "external_image_id":
        return face.external_image_id
    return (face.external_fields or {}).get(name)


def _literal(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1]) if token.startswith('"') else token


def _equals(value: object, literal: str) -> bool:
    if isinstance(value, bool):
        return str(value).lower() == literal.lower()
    if isinstance(value, int | float):
        try:
            return float(value) == float(literal)
        except ValueError:
            return False
    return value is not None and str(value) == literal


def _within(value: object, low: str, high: str) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return (low == "*" or float(low) <= value) and (high == "*" or value <= float(high))
        except ValueError:
            return False
    if not isinstance(value, str):
        return False
    return (low == "*" or low <= value) and (high == "*" or value <= high)


class _Parser:
    def __init__(self, tokens: list[str], fields: set[str]) -> None:
        self.tokens, self.position, self.fields = tokens, 0, fields

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise bad_parameter(f"filter: expected {expected or 'more'} at token {self.position}")
        self.position += 1
        return token

    def expression(self) -> Predicate:
        terms = [self.term()]
        while self.peek() in ("||", "OR"):
            self.take()
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else (lambda face: any(t(face) for t in terms))

    def term(self) -> Predicate:
        factors = [self.factor()]
        while self.peek() in ("&&", "AND"):
            self.take()
            factors.append(self.factor())
        return factors[0] if len(factors) == 1 else (lambda face: all(f(face) for f in factors))

    def factor(self) -> Predicate:
        token = self.peek()
        if token in ("!", "NOT"):
            self.take()
            inner = self.factor()
            return lambda face: not inner(face)
        if token == "(":
            self.take()
            inner = self.expression()
            self.take(")")
            return inner
        return self.clause()

    def clause(self) -> Predicate:
        name = self.take()
        if name not in self.fields:
            raise bad_parameter(f"filter: the face set has no field {name!r}")
        self.take(":")
        if self.peek() == "[":
            self.take()
            low = _literal(self.take())
            self.take("TO")
            high = _literal(self.take())
            self.take("]")
            return lambda face: _within(_field(face, name), low, high)
        literal = _literal(self.take())
        return lambda face: _equals(_field(face, name), literal)


def parse(text: str, fields: set[str]) -> Predicate:
    """The predicate `text` says, over `external_image_id` and the face set's `fields`."""
    if len(text) > MAX_FILTER_CHARS:
        raise bad_parameter(f"filter: longer than {MAX_FILTER_CHARS} characters")
    parser = _Parser(_tokens(text), {"external_image_id", *fields})
    if parser.peek() is None:
        raise bad_parameter("filter: empty")
    try:
        predicate = parser.expression()
    except RecursionError:
        raise bad_parameter("filter: nested too deeply") from None
    if parser.peek() is not None:
        raise bad_parameter(f"filter: unexpected {parser.peek()!r}")
    return predicate
