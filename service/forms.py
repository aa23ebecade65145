"""Request decoding: form-urlencoded bodies, query strings and JSON bodies into plain nested params.

The output is what both Stripe SDKs meant to send, with every leaf a string (form) or a JSON scalar:

* ``a[b][c]=v`` -> ``{"a": {"b": {"c": "v"}}}``
* ``a[0]=x&a[1]=y`` -> ``{"a": ["x", "y"]}`` (indexes contiguous from 0, in any order of appearance)
* ``a[]=x&a[]=y`` -> ``{"a": ["x", "y"]}`` (``[]`` only as the last bracket)
* brackets literal or percent-encoded; ``+`` and ``%20`` are spaces; keys and values are UTF-8.
* ``key=`` stays ``""``: the params layer reads it as "unset".

The direct children of a *map* parameter (``metadata``) are always object keys, never list indexes:
``metadata[0]=x`` is ``{"metadata": {"0": "x"}}``, because a metadata key may be any string.

Anything malformed raises ``domain.errors.InvalidParameter`` (code ``parameter_invalid``) naming the
offending key; nothing here raises anything else for any input.
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import unquote_to_bytes

import msgspec

from ledgerd.domain.errors import InvalidParameter

MAX_PARAMS: Final[int] = 2000
"""At most this many parameters (form pairs; JSON scalars and empty containers) per request."""

MAX_DEPTH: Final[int] = 5
"""At most this many levels of nesting below a top-level parameter: ``a[1][2][3][4][5]`` is the deepest."""

MAP_PARAMS: Final[frozenset[str]] = frozenset({"metadata"})
"""Top-level parameters whose direct children are object keys even when they look like list indexes."""

__all__ = ["MAP_PARAMS", "MAX_DEPTH", "MAX_PARAMS", "parse_form", "parse_json", "parse_query"]


class _Node:
    """A container under construction: keyed children, or (``k[]=``) a list of appended values."""

    __slots__ = ("appended", "children")

    def __init__(self) -> None:
        self.children: dict[str, str | _Node] = {}
        self.appended: list[str] | None = None


def parse_form(body: bytes, *, maps: frozenset[str] = MAP_PARAMS) -> dict[str, Any]:
    """Decode an ``application/x-www-form-urlencoded`` body."""
    return _parse_pairs(bytes(body), maps)


def parse_query(query_string: str, *, maps: frozenset[str] = MAP_PARAMS) -> dict[str, Any]:
    """Decode a query string with the same grammar as `parse_form`.

    Pass the *raw* (still percent-encoded) query string, e.g. aiohttp's ``request.rel_url.raw_query_string``;
    yarl's decoded ``query_string`` has already turned ``%26`` into ``&`` and cannot be split correctly.
    """
    if query_string.startswith("?"):
        query_string = query_string[1:]
    try:
        raw = query_string.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidParameter("The query string is not valid UTF-8.") from None
    return _parse_pairs(raw, maps)


def parse_json(body: bytes) -> dict[str, Any]:
    """Decode a JSON object body. Types are left as JSON gave them; the params layer checks them."""
    try:
        value = msgspec.json.decode(body)
    except UnicodeDecodeError:
        raise InvalidParameter("The request body is not valid UTF-8.") from None
    except RecursionError:
        raise InvalidParameter(
            f"The request body is nested too deeply (at most {MAX_DEPTH} levels below a parameter)."
        ) from None
    except msgspec.DecodeError as exc:
        raise InvalidParameter(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidParameter("The JSON request body must be an object mapping parameter names to values.")
    leaves = 0
    for key, item in value.items():
        _check_json_key(key, key)
        leaves = _walk_json(item, key, 0, leaves)
    check_json_duplicates(body)  # after the walk, which bounds the depth json.loads recurses to
    return value


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise InvalidParameter(
                f"The JSON request body has the key '{key[:100]}' more than once in one object.",
                param=key[:100],
            )
        seen.add(key)
    return {}


def check_json_duplicates(body: bytes) -> None:
    """A key twice in one JSON object is a 400 (msgspec, like most decoders, keeps the last one
    silently; a form's repeated key is a 400 too). The body decoded once already, so this decode
    succeeds; it runs only on JSON bodies, which the Stripe SDKs never send."""
    json.loads(body, object_pairs_hook=_refuse_duplicate_keys)


# ---------------------------------------------------------------------------------------------------
# form / query
# ---------------------------------------------------------------------------------------------------


def _parse_pairs(raw: bytes, maps: frozenset[str]) -> dict[str, Any]:
    root = _Node()
    count = 0
    for pair in raw.split(b"&"):
        if not pair:
            continue
        count += 1
        if count > MAX_PARAMS:
            raise InvalidParameter(f"Too many parameters: a request may carry at most {MAX_PARAMS}.")
        raw_key, _, raw_value = pair.partition(b"=")
        key = _decode(raw_key, None)
        value = _decode(raw_value, key)
        _insert(root, key, _split_key(key), value)
    return _finish_root(root, maps)


def _decode(raw: bytes, key: str | None) -> str:
    """``+`` -> space, then percent-decoding, then strict UTF-8. ``key`` is None while decoding a key."""
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        if key is None:
            name = raw.decode("utf-8", "backslashreplace")
            raise InvalidParameter(
                f"The parameter name {name!r} is not valid UTF-8.", param=_printable(name)
            ) from None
        raise InvalidParameter(f"The value of {key} is not valid UTF-8.", param=key) from None


def _printable(name: str) -> str:
    return name.replace("\x00", "\\x00")


def _malformed(key: str, why: str) -> InvalidParameter:
    return InvalidParameter(f"Invalid parameter name {key!r}: {why}.", param=_printable(key))


def _split_key(key: str) -> list[str]:
    """``a[b][0][]`` -> ``["a", "b", "0", ""]``; anything else with brackets in it is malformed."""
    if "\x00" in key:
        raise _malformed(key, "parameter names must not contain NUL characters")
    start = key.find("[")
    if start < 0:
        if not key:
            raise _malformed(key, "parameter names must not be empty")
        if "]" in key:
            raise _malformed(key, "unbalanced ']'")
        return [key]
    base = key[:start]
    if not base:
        raise _malformed(key, "a parameter name must come before '['")
    if "]" in base:
        raise _malformed(key, "unbalanced ']'")
    path = [base]
    length = len(key)
    while start < length:
        if key[start] != "[":
            raise _malformed(key, "expected '[' after ']'")
        end = key.find("]", start + 1)
        if end < 0:
            raise _malformed(key, "unclosed '['")
        segment = key[start + 1 : end]
        if "[" in segment:
            raise _malformed(key, "nested '[' inside brackets")
        path.append(segment)
        start = end + 1
    if len(path) - 1 > MAX_DEPTH:
        raise _malformed(key, f"nested more than {MAX_DEPTH} levels deep")
    for segment in path[1:-1]:
        if not segment:
            raise _malformed(key, "'[]' may only appear at the end of a parameter name")
    return path


def _path_name(path: list[str], upto: int) -> str:
    """Canonical ``a[b][c]`` spelling of ``path[:upto]``."""
    return path[0] + "".join(f"[{segment}]" for segment in path[1:upto])


def _insert(root: _Node, key: str, path: list[str], value: str) -> None:
    node = root
    last = len(path) - 1
    for depth in range(last):
        segment = path[depth]
        child = node.children.get(segment)
        if child is None:
            child = node.children[segment] = _Node()
        elif isinstance(child, str):
            name = _path_name(path, depth + 1)
            raise InvalidParameter(
                f"Conflicting parameters: {name} is sent both as a value and as an object or list ({key}).",
                param=name,
            )
        node = child
    segment = path[last]
    if not segment:  # k[]=v appends
        if node.appended is None:
            node.appended = []
        node.appended.append(value)
        return
    existing = node.children.get(segment)
    if existing is None:
        node.children[segment] = value
    elif isinstance(existing, str):
        raise InvalidParameter(
            f"The parameter {key} was sent more than once.", param=_path_name(path, last + 1)
        )
    else:
        name = _path_name(path, last + 1)
        raise InvalidParameter(
            f"Conflicting parameters: {name} is sent both as a value and as an object or list.", param=name
        )


def _is_index(segment: str) -> bool:
    return segment.isdigit() and segment.isascii() and (segment == "0" or segment[0] != "0")


def _finish_root(root: _Node, maps: frozenset[str]) -> dict[str, Any]:
    return {
        key: child if isinstance(child, str) else _finish(child, key, key in maps)
        for key, child in root.children.items()
    }


def _finish(node: _Node, name: str, is_map: bool) -> Any:
    children = node.children
    if node.appended is not None:
        if children:
            raise InvalidParameter(
                f"Conflicting parameters: {name} mixes '{name}[]' with indexed or named entries.", param=name
            )
        return node.appended
    if not is_map:
        indexes = [segment for segment in children if _is_index(segment)]
        if indexes:
            size = len(children)
            if len(indexes) != size:
                raise InvalidParameter(
                    f"Conflicting parameters: {name} mixes list indexes and object keys.", param=name
                )
            for segment in indexes:
                if len(segment) > 5 or int(segment) >= size:
                    missing = next(i for i in range(size) if str(i) not in children)
                    raise InvalidParameter(
                        f"Invalid array {name}: indexes must be contiguous from 0, but {name}[{missing}] "
                        f"is missing.",
                        param=f"{name}[{segment}]",
                    )
            return [_finish_child(children[str(i)], f"{name}[{i}]") for i in range(size)]
    return {segment: _finish_child(child, f"{name}[{segment}]") for segment, child in children.items()}


def _finish_child(child: str | _Node, name: str) -> Any:
    return child if isinstance(child, str) else _finish(child, name, False)


# ---------------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------------


def _check_json_key(key: str, name: str) -> None:
    if "\x00" in key:
        raise InvalidParameter(
            f"Invalid parameter name {_printable(name)!r}: parameter names must not contain NUL characters.",
            param=_printable(name),
        )


def _walk_json(value: Any, name: str, depth: int, leaves: int) -> int:
    """Check the depth and size limits and key sanity; return the running count of leaves."""
    if isinstance(value, dict):
        if value and depth >= MAX_DEPTH:
            raise InvalidParameter(f"{name} is nested more than {MAX_DEPTH} levels deep.", param=name)
        if not value:
            leaves += 1
        for key, item in value.items():
            child = f"{name}[{key}]"
            _check_json_key(key, child)
            leaves = _walk_json(item, child, depth + 1, leaves)
    elif isinstance(value, list):
        if value and depth >= MAX_DEPTH:
            raise InvalidParameter(f"{name} is nested more than {MAX_DEPTH} levels deep.", param=name)
        if not value:
            leaves += 1
        for index, item in enumerate(value):
            leaves = _walk_json(item, f"{name}[{index}]", depth + 1, leaves)
    else:
        leaves += 1
    if leaves > MAX_PARAMS:
        raise InvalidParameter(f"Too many parameters: a request may carry at most {MAX_PARAMS}.")
    return leaves
