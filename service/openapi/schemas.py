"""Schema building blocks, and the schemas generated from the wire types with
`msgspec.json.schema_components`, renamed to the document's component names and tidied."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from ledgerd.projections import objects
from ledgerd.service import params, wire

Schema = dict[str, Any]

REF_PREFIX: Final[str] = "#/components/schemas/"
NO_NUL: Final[str] = objects.NO_NUL
NULL: Final[Schema] = {"type": "null"}


def ref(name: str) -> Schema:
    return {"$ref": REF_PREFIX + name}


def const(value: Any) -> Schema:
    return {"const": value}


def text(max_length: int | None = None, *, min_length: int = 0) -> Schema:
    """A string without NUL characters (the service rejects them everywhere)."""
    schema: Schema = {"type": "string", "pattern": NO_NUL}
    if min_length:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


def integer(minimum: int, maximum: int) -> Schema:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


INT64: Final[Schema] = integer(params.INT64_MIN, params.INT64_MAX)


def obj(properties: dict[str, Schema], *, description: str | None = None) -> Schema:
    """A closed object schema whose properties are all optional."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if description:
        schema["description"] = description
    return schema


def unsettable(schema: Schema) -> Schema:
    """A request parameter that also takes ``""`` (form) or ``null`` (JSON), both meaning *unset*."""
    return {"anyOf": [schema, const(""), NULL]}


def metadata_schema(*, nullable_values: bool) -> Schema:
    """Stored metadata (``nullable_values=False``), or a request's: there ``""``/null removes a key, and
    removals do not count against the limit (`service.wire.MetadataParam`)."""
    schema: Schema = msgspec.json.schema(wire.MetadataParam if nullable_values else objects.Metadata)
    schema.pop("description", None)
    return schema


def generated(types: Mapping[str, type[msgspec.Struct]]) -> dict[str, Schema]:
    """The schemas of `types` (component name -> type) and of every type they use, which must be among
    them (else a KeyError here), by component name."""
    names = {cls.__name__: name for name, cls in types.items()}
    _, components = msgspec.json.schema_components(list(types.values()), ref_template=REF_PREFIX + "{name}")
    return {names[class_name]: tidied(renamed(schema, names)) for class_name, schema in components.items()}


def renamed(schema: Any, names: dict[str, str]) -> Any:
    """`schema` with its references to the types' class names pointing at their component names."""
    if isinstance(schema, dict):
        return {
            key: REF_PREFIX + names[value.removeprefix(REF_PREFIX)] if key == "$ref" else renamed(value, names)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [renamed(item, names) for item in schema]
    return schema


def tidied(schema: Schema) -> Schema:
    """A generated object schema without msgspec's title and defaults (a response field with a default is
    a constant; a request field's default is *not sent*), its descriptions at the top."""
    schema.pop("title", None)
    if "description" in schema:
        schema["description"] = inspect.cleandoc(schema["description"])
    for name, prop in schema["properties"].items():
        prop.pop("default", None)
        options = prop.get("anyOf", [])
        described_options = [option for option in options if "description" in option]
        if "description" not in prop and len(described_options) == 1:
            prop = {"description": described_options[0]["description"], **prop}
            prop["anyOf"] = [{k: v for k, v in option.items() if k != "description"} for option in options]
        schema["properties"][name] = prop
    return schema
