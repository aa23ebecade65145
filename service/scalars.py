"""Hand-written param checks, with Stripe-shaped errors naming the parameter: for what has no wire type
to decode through (list and search params, webhook endpoints) and for `service.decoding`'s strict
scalar pre-pass. ``""`` (form) or null (JSON) is *unset*; integers are decimal strings or JSON integers
within int64 (``1.5``, ``1e3``, `` 1``, ``true`` are not); booleans are ``true``/``false``; strings hold
no NUL characters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NoReturn

from ledgerd.domain.errors import InvalidParameter, MissingParameter

INT64_MIN: Final[int] = -(2**63)
INT64_MAX: Final[int] = 2**63 - 1
NO_PARAMS: Final[frozenset[str]] = frozenset()

Params = Mapping[str, Any]


def join(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key


def check_keys(
    obj: Mapping[str, Any], allowed: frozenset[str], unsupported: frozenset[str], prefix: str
) -> None:
    for key in obj:
        if key in allowed:
            continue
        name = join(prefix, key)
        if key in unsupported:
            raise InvalidParameter(
                f"This ledger does not process payments, so the parameter {name} is not supported.",
                param=name,
                code="parameter_unsupported",
            )
        raise InvalidParameter(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")


def accept_ignored(params: Params, *, validate: bool) -> tuple[str, ...]:
    """Type-check ``expand`` (and ``validate``); both are otherwise ignored. Returns ``expand``."""
    if validate and not unset(params.get("validate")):
        boolean(params["validate"], "validate")
    value = params.get("expand")
    return () if unset(value) else strings(value, "expand")


def unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value)


def required(obj: Mapping[str, Any], name: str, prefix: str) -> Any:
    value = obj.get(name)
    if unset(value):
        param = join(prefix, name)
        raise MissingParameter(f"Missing required param: {param}.", param=param)
    return value


def describe(value: Any) -> str:
    if isinstance(value, str):
        return value if len(value) <= 100 else value[:100] + "..."
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a number"


def wrong_type(param: str, expected: str, value: Any) -> NoReturn:
    raise InvalidParameter(f"Invalid {param}: expected {expected}, got {kind(value)}.", param=param)


def string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        wrong_type(param, "a string", value)
    if "\x00" in value:
        raise InvalidParameter(f"Invalid {param}: must not contain NUL characters.", param=param)
    return value


def opt_string(value: Any, param: str) -> str | None:
    return None if unset(value) else string(value, param)


def integer(value: Any, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        if isinstance(value, (dict, list)):
            wrong_type(param, "an integer", value)
        raise InvalidParameter(
            f"Invalid integer: {describe(value)}", param=param, code="parameter_invalid_integer"
        )
    if isinstance(value, str):
        digits = value[1:] if value.startswith("-") else value
        if not (digits.isdigit() and digits.isascii()):
            raise InvalidParameter(
                f"Invalid integer: {describe(value)}", param=param, code="parameter_invalid_integer"
            )
        if len(digits.lstrip("0")) > 19:
            out_of_range(value, param)
        number = int(value)
    else:
        number = value
    if not INT64_MIN <= number <= INT64_MAX:
        out_of_range(value, param)
    return number


def out_of_range(value: Any, param: str) -> NoReturn:
    raise InvalidParameter(
        f"Invalid integer: {describe(str(value))} is out of range (must be between {INT64_MIN} and "
        f"{INT64_MAX}).",
        param=param,
        code="parameter_invalid_integer",
    )


def boolean(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if value == "true":
        return True
    if value == "false":
        return False
    if isinstance(value, (dict, list)):
        wrong_type(param, "a boolean", value)
    raise InvalidParameter(f"Invalid boolean: {describe(value)}", param=param)


def object_(value: Any, param: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        wrong_type(param, "an object", value)
    return value


def array(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        wrong_type(param, "an array", value)
    return value


def strings(value: Any, param: str) -> tuple[str, ...]:
    return tuple(string(item, f"{param}[{index}]") for index, item in enumerate(array(value, param)))


def metadata(value: Any, param: str) -> dict[str, str]:
    """Metadata on create: unset values are simply absent."""
    if unset(value):
        return {}
    return {key: item for key, item in metadata_entries(value, param).items() if item is not None}


def metadata_patch(value: Any, param: str) -> dict[str, str | None] | None:
    """Metadata on update: None (``metadata=``, ``{}``) clears all; a None value drops one key."""
    if unset(value):
        return None
    return metadata_entries(value, param) or None


def metadata_entries(value: Any, param: str) -> dict[str, str | None]:
    obj = object_(value, param)
    entries: dict[str, str | None] = {}
    for key, item in obj.items():
        name = f"{param}[{key}]"
        if unset(item):
            entries[key] = None
        elif isinstance(item, str):
            entries[key] = string(item, name)
        else:
            raise InvalidParameter(
                f"Invalid {name}: metadata values must be strings, got {kind(item)}.", param=name
            )
    return entries
