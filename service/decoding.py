"""Decoding a request's params through its wire type (service/wire.py), with Stripe-shaped errors.

`decode(params, Type)` runs in two steps:

1. A strict pre-pass walks the params along the type. It converts what the type says is an integer or a
   boolean (form bodies are all strings), strictly: ``1.5``, ``1e3``, `` 1``, ``+5`` or ``true`` are not
   integers, and a JSON bool is not one either. ``""`` (form) or null (JSON) on a field means *unset*:
   None if the type allows it, else a ``parameter_missing`` (a required field) or a "cannot unset"
   error. Unknown names are ``parameter_unknown``, the ones a payments processor takes
   ``parameter_unsupported`` (`wire.UNSUPPORTED_PARAMS`); strings may not hold NUL characters.
2. `msgspec.convert` into the type's *shape* (the type with its length, pattern and enumeration limits
   left out) checks the rest: container types and required fields. Its error's path (``$.address.city``)
   becomes the Stripe param (``address[city]``).

The limits are the domain's to check (`domain.validation`, which runs on every command whatever made
it, with the same limits: `domain.limits`), so a value past one is refused with the domain's message.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal, NamedTuple, Union, get_args, get_origin

import msgspec
from msgspec import NODEFAULT, UnsetType

from ledgerd.domain.errors import DomainError, InvalidParameter, MissingParameter
from ledgerd.service.scalars import (
    NO_PARAMS,
    boolean,
    check_keys,
    integer,
    join,
    metadata_entries,
    string,
    unset,
)
from ledgerd.service.wire import UNSUPPORTED_PARAMS

__all__ = ["decode", "nullable"]

Params = Mapping[str, Any]


def decode(params: Params, cls: type[msgspec.Struct]) -> dict[str, Any]:
    """The params `cls` accepts, decoded: a field not sent is absent, an unset one (``""``/null) is None."""
    prepared = _prepare_struct(params, _plan_of(cls), "")
    try:
        decoded = msgspec.convert(prepared, _shape_of_struct(cls))
    except msgspec.ValidationError as error:
        raise _stripe_error(str(error)) from None
    built: dict[str, Any] = msgspec.to_builtins(decoded)
    return built


# ---------------------------------------------------------------------------------------------------
# the pre-pass: each type compiled once into a plan (reading the type per request would cost ~1 ms)
# ---------------------------------------------------------------------------------------------------

Prepare = Callable[[Any, str], Any]


class _Field(NamedTuple):
    required: bool
    nullable: bool
    prepare: Prepare  # `value` (not unset) with its scalars converted; what does not fit is left for msgspec


class _Plan(NamedTuple):
    names: frozenset[str]
    unsupported: frozenset[str]
    fields: dict[str, _Field]


_PLANS: dict[type[msgspec.Struct], _Plan] = {}


def _plan_of(cls: type[msgspec.Struct]) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        fields = {
            field.name: _Field(field.required, nullable(field.type), _compile(field.type))
            for field in msgspec.structs.fields(cls)
        }
        plan = _PLANS[cls] = _Plan(frozenset(fields), UNSUPPORTED_PARAMS.get(cls, NO_PARAMS), fields)
    return plan


def _prepare_struct(obj: Mapping[str, Any], plan: _Plan, param: str) -> dict[str, Any]:
    check_keys(obj, plan.names, plan.unsupported, param)
    prepared: dict[str, Any] = {}
    for key, value in obj.items():
        field, name = plan.fields[key], join(param, key)
        if not unset(value):
            prepared[key] = field.prepare(value, name)
        elif field.required:
            raise MissingParameter(f"Missing required param: {name}.", param=name)
        elif not field.nullable:
            raise InvalidParameter(
                f"You cannot unset {name}: it always has a value. Pass a new value or leave it out.",
                param=name,
            )
        else:
            prepared[key] = None
    return prepared


def _compile(tp: Any) -> Prepare:
    base = _base(tp)
    if base is tp and (member := _struct_member(tp)) is not None:  # `int | SomeStruct`: by the value's kind
        either = _plan_of(member)
        return lambda value, param: (
            _prepare_struct(value, either, param) if isinstance(value, dict) else integer(value, param)
        )
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        plan = _plan_of(base)
        return lambda value, param: _prepare_struct(value, plan, param) if isinstance(value, dict) else value
    origin = get_origin(base)
    if origin is list:
        item = _compile(get_args(base)[0])
        return lambda value, param: (
            [item(each, f"{param}[{index}]") for index, each in enumerate(value)]
            if isinstance(value, list)
            else value
        )
    if origin is dict:
        return lambda value, param: metadata_entries(value, param) if isinstance(value, dict) else value
    if base is int:
        return integer
    if base is bool:
        return boolean
    return lambda value, param: string(value, param) if isinstance(value, str) else value


def _members(tp: Any) -> tuple[Any, ...]:
    return get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,)


def _strip(tp: Any) -> Any:
    return get_args(tp)[0] if get_origin(tp) is Annotated else tp


def nullable(tp: Any) -> bool:
    return type(None) in _members(_strip(tp))


def _struct_member(tp: Any) -> type[msgspec.Struct] | None:
    """The Struct of a union of a Struct and int (the only such union here: a list's ``created``)."""
    members = {_strip(member) for member in _members(_strip(tp))} - {UnsetType, type(None)}
    structs = [m for m in members if isinstance(m, type) and issubclass(m, msgspec.Struct)]
    return structs[0] if structs and members == {int, *structs} else None


def _base(tp: Any) -> Any:
    """`tp` without its Annotated metadata, UNSET and None: `X | UnsetType | None` -> `X`."""
    members = [_strip(member) for member in _members(_strip(tp)) if member not in (UnsetType, type(None))]
    return _strip(members[0]) if len(members) == 1 else tp


# ---------------------------------------------------------------------------------------------------
# the shape of a type: the same fields and types, without the limits (which the domain checks)
# ---------------------------------------------------------------------------------------------------

_SHAPES: dict[type[msgspec.Struct], type[msgspec.Struct]] = {}


def _shape_of_struct(cls: type[msgspec.Struct]) -> type[msgspec.Struct]:
    shape = _SHAPES.get(cls)
    if shape is None:
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for field in msgspec.structs.fields(cls):
            if field.default is not NODEFAULT:
                fields.append((field.name, _shape(field.type), field.default))
            elif field.default_factory is not NODEFAULT:
                fields.append(
                    (field.name, _shape(field.type), msgspec.field(default_factory=field.default_factory))
                )
            else:
                fields.append((field.name, _shape(field.type)))
        shape = _SHAPES[cls] = msgspec.defstruct(
            cls.__name__, fields, kw_only=True, frozen=True, forbid_unknown_fields=True
        )
    return shape


def _shape(tp: Any) -> Any:
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _shape_of_struct(tp)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return Union[tuple(_shape(member) for member in get_args(tp))]  # noqa: UP007 (a runtime tuple)
    if origin is Literal:
        return str  # every enumeration here is of strings; the domain checks which
    if origin is list:
        return list[_shape(get_args(tp)[0])]  # type: ignore[misc]
    if origin is dict:
        key, value = get_args(tp)
        return dict[_shape(key), _shape(value)]  # type: ignore[misc]
    return tp


# ---------------------------------------------------------------------------------------------------
# msgspec's errors as Stripe's
# ---------------------------------------------------------------------------------------------------

_AT: Final = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_STEP: Final = re.compile(r"\.([^.\[]+)|\[([^\]]*)\]")
_EXPECTED: Final = re.compile(r"^Expected `(?P<expected>[^`]*)`, got `(?P<got>[^`]*)`$")
_FIELD: Final = re.compile(r"^Object (?P<what>contains unknown|missing required) field `(?P<name>[^`]*)`$")
_EXPECTED_NAMES: Final[Mapping[str, str]] = {
    "str": "a string",
    "int": "an integer",
    "bool": "a boolean",
    "object": "an object",
    "array": "an array",
}
_GOT_NAMES: Final[Mapping[str, str]] = {
    **_EXPECTED_NAMES,
    "int": "a number",
    "float": "a number",
    "null": "null",
}


def _param(path: str) -> str:
    param = ""
    for name, index in _STEP.findall(path):
        param = join(param, name or index)
    return param


def _stripe_error(text: str) -> DomainError:
    match = _AT.match(text)
    message, param = (match["message"], _param(match["path"] or "")) if match else (text, "")
    if field := _FIELD.match(message):
        name = join(param, field["name"])
        if field["what"] == "missing required":
            return MissingParameter(f"Missing required param: {name}.", param=name)
        return InvalidParameter(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")
    if expected := _EXPECTED.match(message):
        wanted = next((part for part in expected["expected"].split(" | ") if part != "null"), "")
        return InvalidParameter(
            f"Invalid {param}: expected {_EXPECTED_NAMES.get(wanted, wanted)}, "
            f"got {_GOT_NAMES.get(expected['got'], expected['got'])}.",
            param=param or None,
        )
    return InvalidParameter(f"Invalid {param}: {message}" if param else message, param=param or None)
