"""Stripe's search query language for customers (``GET /v1/customers/search?query=...``).

``parse`` turns the client's text into a small AST (``compile`` in service/search/sql.py turns the AST into
a parameterised SQL boolean expression over the ``customers`` table), and ``encode_page`` / ``decode_page`` make
the opaque ``next_page`` tokens. Every problem a client can cause raises ``InvalidParameter`` (HTTP 400) naming what is wrong and the
0-based character position where it is; no other exception type escapes ``parse`` or ``decode_page``.

Grammar (whitespace is ASCII space, tab, CR or LF)::

    query     := ws* clause ( joiner clause )* ws*           -- 1 to 10 clauses
    joiner    := ws+ ( ("AND" | "OR") ws+ )?                 -- keywords are case-insensitive; a bare space is AND
    clause    := "-"? field operator value                   -- no spaces inside a clause; "-" negates it
    field     := "created" | "email" | "name" | "phone" | "metadata[" string "]"
    operator  := ":" | "~" | "=" | ">" | "<" | ">=" | "<="
    value     := string | bare
    string    := "'" char* "'" | '"' char* '"'               -- char: anything but the quote or "\",
                                                             --       or one of \' \" \\ (an escaped character)
    bare      := any run of non-whitespace characters        -- a number, or null

* AND and OR cannot be mixed in one query (a space counts as AND), and there are no parentheses.
* ``created`` (unix seconds) takes a whole number, quoted or not, with ``:`` or ``=`` (equal), ``>``, ``<``,
  ``>=``, ``<=``.
* ``email``, ``name``, ``phone`` take a quoted string with ``:`` (whole value, case-insensitive) or ``~``
  (substring, case-insensitive, at least 3 characters). Stripe only calls out email as case-insensitive; we
  treat all three string fields alike (phone numbers rarely contain letters, and names are what people
  mistype the case of). Case folding is PostgreSQL's ``lower()``/``ILIKE`` under the database collation.
* ``metadata['key']`` takes a quoted string with ``:`` only: exact and case-sensitive (Stripe's "token"
  fields), like the metadata values themselves.
* ``null`` (bare, any case) with ``:`` tests presence: ``email:null`` matches customers without an email,
  ``metadata['k']:null`` those without the key; negate it (``-email:null``) to require a value. A quoted
  ``'null'`` is the literal four-letter string. ``created`` is never null and does not accept it.
* A negated clause matches every customer the clause does not match, including those where the field is
  null: ``-email:'a@b.c'`` finds customers without an email, too.

Limits: at most 10 clauses and 10,000 characters; NUL characters and unpaired surrogates are rejected
(PostgreSQL text cannot hold them).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Final, Literal, NoReturn, cast

from ledgerd.domain.errors import InvalidParameter

FieldName = Literal["created", "email", "name", "phone", "metadata"]
Operator = Literal[":", "~", "=", ">", "<", ">=", "<="]
Combinator = Literal["AND", "OR"]

MAX_CLAUSES: Final = 10
MIN_SUBSTRING_LENGTH: Final = 3
MAX_QUERY_LENGTH: Final = 10_000
FIELDS: Final[tuple[FieldName, ...]] = ("created", "email", "metadata", "name", "phone")
STRING_FIELDS: Final = frozenset({"email", "name", "phone"})
NUMERIC_OPERATORS: Final = frozenset({"=", ">", "<", ">=", "<="})
BIGINT_MIN: Final = -(2**63)
BIGINT_MAX: Final = 2**63 - 1

_SUPPORTED_FIELDS = ", ".join(FIELDS)
_WHITESPACE = " \t\r\n"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_KEYWORD = re.compile(r"(?i:and|or)(?=[ \t\r\n]|\Z)")
_OPERATOR = re.compile(r">=|<=|[:~=<>]")
_BARE = re.compile(r"[^ \t\r\n]+")
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_ESCAPABLE = frozenset("'\"\\")


@dataclass(frozen=True, slots=True)
class Clause:
    """One ``field operator value`` test. ``value`` is None for the ``null`` presence test, an int for
    ``created`` and a str otherwise; ``key`` is the metadata key (None for other fields)."""

    field: FieldName
    op: Operator
    value: str | int | None
    key: str | None = None
    negated: bool = False
    position: int = dataclass_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Query:
    clauses: tuple[Clause, ...]
    combinator: Combinator = "AND"


def _invalid(message: str) -> NoReturn:
    raise InvalidParameter(message, param="query", code="parameter_invalid")


def _show(text: str, limit: int = 40) -> str:
    """``repr`` of client text for an error message, shortened."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_whitespace(self) -> int:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
            self.pos += 1
        return self.pos - start

    def describe_here(self) -> str:
        char = self.peek()
        if char == "":
            return "the end of the query"
        if char in _WHITESPACE:
            return "a space"
        if char in "'\"":
            return "a quoted string"
        return repr(char)

    def parse(self) -> Query:
        self.skip_whitespace()
        if self.at_end():
            _invalid("The query is empty; write clauses like email:'jenny@example.com'")
        clauses = [self.clause()]
        combinator: Combinator | None = None
        while True:
            clause_end = self.pos
            spaced = self.skip_whitespace()
            if self.at_end():
                break
            if not spaced:
                _invalid(
                    f"Expected a space, AND or OR after the clause at position {clause_end}, "
                    f"found {self.describe_here()}"
                )
            joiner: Combinator = "AND"
            joiner_pos = self.pos
            keyword = _KEYWORD.match(self.text, self.pos)
            explicit = keyword is not None
            if keyword is not None:
                word = keyword.group()
                joiner = "OR" if word.upper() == "OR" else "AND"
                self.pos = keyword.end()
                self.skip_whitespace()
                if self.at_end():
                    _invalid(f"Expected a clause after {word!r} at position {joiner_pos}")
            if combinator is not None and joiner != combinator:
                how = f"{joiner!r}" if explicit else "a space (which means AND)"
                _invalid(
                    f"AND and OR cannot be mixed in one query: found {how} at position {joiner_pos} "
                    f"in a query joined with {combinator}"
                )
            combinator = joiner
            if len(clauses) == MAX_CLAUSES:
                _invalid(
                    f"A query can have at most {MAX_CLAUSES} clauses; clause {MAX_CLAUSES + 1} starts at "
                    f"position {self.pos}"
                )
            clauses.append(self.clause())
        return Query(tuple(clauses), combinator or "AND")

    def clause(self) -> Clause:
        start = self.pos
        negated = self.peek() == "-"
        if negated:
            self.pos += 1
        name = self.field_name()
        key = self.metadata_key() if name == "metadata" else None
        op = self.operator(name)
        value = self.value(name, op)
        return Clause(name, op, value, key, negated, start)

    def field_name(self) -> FieldName:
        at = self.pos
        match = _IDENTIFIER.match(self.text, at)
        if match is None:
            char = self.peek()
            if char in ("(", ")"):
                _invalid(f"Parentheses are not supported (position {at}); join clauses with AND or OR")
            after = " after '-'" if at > 0 and self.text[at - 1] == "-" else ""
            _invalid(
                f"Expected a field{after} at position {at}, found {self.describe_here()}; "
                f"supported fields: {_SUPPORTED_FIELDS}"
            )
        word = match.group()
        if word.upper() in ("AND", "OR"):
            _invalid(f"Expected a clause at position {at}, found {word!r}")
        if word not in FIELDS:
            _invalid(f"Unknown field {_show(word)} at position {at}; supported fields: {_SUPPORTED_FIELDS}")
        self.pos = match.end()
        return word

    def metadata_key(self) -> str:
        if self.peek() != "[":
            _invalid(f"Expected '[' after 'metadata' at position {self.pos}: write metadata['key']")
        self.pos += 1
        if self.peek() not in ("'", '"'):
            _invalid(f"The metadata key at position {self.pos} must be quoted: write metadata['key']")
        key_pos = self.pos
        key = self.string()
        if key == "":
            _invalid(f"The metadata key at position {key_pos} is empty")
        if self.peek() != "]":
            _invalid(
                f"Expected ']' at position {self.pos} to close the metadata key, found {self.describe_here()}"
            )
        self.pos += 1
        return key

    def operator(self, name: FieldName) -> Operator:
        at = self.pos
        match = _OPERATOR.match(self.text, at)
        if match is None:
            _invalid(
                f"Expected an operator (one of : ~ = > < >= <=) after {name!r} at position {at}, "
                f"found {self.describe_here()}"
            )
        op = cast(Operator, match.group())
        if name == "created" and op == "~":
            _invalid(f"'~' (substring) at position {at} does not work on 'created'; use : = > < >= <=")
        if name != "created" and op in NUMERIC_OPERATORS:
            hint = "':' for an exact match" + (" or '~' for a substring" if name in STRING_FIELDS else "")
            _invalid(f"{op!r} at position {at} only works on the numeric field 'created'; use {hint}")
        if name == "metadata" and op == "~":
            _invalid(
                f"'~' (substring) at position {at} does not work on metadata; use ':' for an exact match"
            )
        self.pos = match.end()
        return op

    def value(self, name: FieldName, op: Operator) -> str | int | None:
        at = self.pos
        if self.at_end() or self.peek() in _WHITESPACE:
            _invalid(f"Expected a value after {op!r} at position {at}, found {self.describe_here()}")
        quoted = self.peek() in ("'", '"')
        if quoted:
            text = self.string()
        else:
            match = _BARE.match(self.text, at)
            assert match is not None  # the next character is not whitespace
            text = match.group()
            self.pos = match.end()
            if text.lower() == "null":
                if name == "created":
                    _invalid(f"'created' takes a number (unix seconds), not null (position {at})")
                if op != ":":
                    _invalid(f"null (position {at}) can only be used with ':'")
                return None
        if name == "created":
            if _INTEGER.fullmatch(text) is None:
                _invalid(f"'created' takes a number (unix seconds); got {_show(text)} at position {at}")
            number = int(text)
            if not BIGINT_MIN <= number <= BIGINT_MAX:
                _invalid(f"The number {_show(text)} at position {at} is out of range")
            return number
        if not quoted:
            example = f"metadata['...']:'{text}'" if name == "metadata" else f"{name}{op}'{text}'"
            _invalid(f"The value for {name!r} at position {at} must be quoted, e.g. {_show(example, 60)}")
        if op == "~" and len(text) < MIN_SUBSTRING_LENGTH:
            _invalid(
                f"'~' needs a value of at least {MIN_SUBSTRING_LENGTH} characters; got {_show(text)} "
                f"at position {at}"
            )
        return text

    def string(self) -> str:
        """Read a quoted string at the current position (which holds the opening quote)."""
        start = self.pos
        quote = self.text[start]
        text = self.text
        chars: list[str] = []
        i = start + 1
        while i < len(text):
            char = text[i]
            if char == quote:
                self.pos = i + 1
                return "".join(chars)
            if char == "\\":
                if i + 1 >= len(text):
                    break
                escaped = text[i + 1]
                if escaped not in _ESCAPABLE:
                    _invalid(
                        f"Invalid escape {_show(char + escaped)} at position {i}; "
                        "only \\', \\\" and \\\\ can be escaped"
                    )
                chars.append(escaped)
                i += 2
                continue
            chars.append(char)
            i += 1
        _invalid(f"Unterminated string starting at position {start}")


def parse(query: str) -> Query:
    """Parse a search query; raise InvalidParameter (param ``query``) when it is not valid."""
    if not isinstance(query, str):
        _invalid("The query must be a string")
    if len(query) > MAX_QUERY_LENGTH:
        _invalid(f"The query is {len(query)} characters long; the limit is {MAX_QUERY_LENGTH}")
    for index, char in enumerate(query):
        if char == "\x00":
            _invalid(f"The query contains a NUL character at position {index}")
        if "\ud800" <= char <= "\udfff":
            _invalid(f"The query contains an invalid character (unpaired surrogate) at position {index}")
    return _Parser(query).parse()


# --- Paging ---------------------------------------------------------------------------------------------

_PAGE_VERSION: Final = "v1:"
_PAGE_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PAGE_BODY = re.compile(r"v1:(0|[1-9][0-9]{0,18})")


def encode_page(position: int) -> str:
    """The ``next_page`` token for "customers with a position below ``position``" (results are newest first)."""
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= BIGINT_MAX:
        raise ValueError(f"a page position must be an int in 0..2**63-1, got {position!r}")
    raw = (_PAGE_VERSION + str(position)).encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_page(token: str) -> int:
    """The position a ``page`` token stands for; InvalidParameter (param ``page``) if it is not one of ours."""
    if not isinstance(token, str) or _PAGE_TOKEN.fullmatch(token) is None:
        _invalid_page(token)
    try:
        body = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        _invalid_page(token)
    match = _PAGE_BODY.fullmatch(body)
    if match is None:
        _invalid_page(token)
    position = int(match.group(1))
    if position > BIGINT_MAX or encode_page(position) != token:
        _invalid_page(token)
    return position


def _invalid_page(token: object) -> NoReturn:
    shown = _show(token) if isinstance(token, str) else type(token).__name__
    raise InvalidParameter(
        f"Invalid page token {shown}: pass the next_page value from a previous search response unchanged",
        param="page",
        code="parameter_invalid",
    )
