"""The response schemas: every object and envelope generated from its type (`projections.objects`,
`service.webhooks.wire`, `envelopes`, the error's in `service.errors`), and what an event's `data` holds
for each event type, derived from them."""

from __future__ import annotations

from typing import Final, get_args

import msgspec

from ledgerd.projections import customers as customers_projection
from ledgerd.projections import objects
from ledgerd.service import errors, versions
from ledgerd.service.openapi.envelopes import ENVELOPES
from ledgerd.service.openapi.schemas import Schema, generated, metadata_schema, obj, ref
from ledgerd.service.webhooks.wire import WEBHOOK_TYPES

RESPONSE_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    **objects.RESPONSE_OBJECTS,
    **WEBHOOK_TYPES,
    **ENVELOPES,
    "error_detail": errors.ErrorDetail,
    "error": errors.ErrorObject,
}

# event type prefix -> the schemas of its `data.object` and `data.previous_attributes`
EVENT_PAYLOADS: Final[dict[str, tuple[str, str]]] = {
    "customer": ("customer", "customer_previous_attributes"),
    "customer_balance_transaction": (
        "customer_balance_transaction",
        "customer_balance_transaction_previous_attributes",
    ),
}


def object_schemas() -> dict[str, Schema]:
    """The generated schemas; a response carries every field, except those only `expand[]` adds (UNSET
    by default)."""
    schemas = generated(RESPONSE_TYPES)
    for name, schema in schemas.items():
        schema["required"] = [
            field.name for field in msgspec.structs.fields(RESPONSE_TYPES[name]) if field.default is not msgspec.UNSET
        ]
        schema["additionalProperties"] = False
    return schemas


def response_schemas() -> dict[str, Schema]:
    schemas = object_schemas()
    # The value of a field before an update, as `customer.updated` events report it: the fields a
    # command can change (the projection's mutable columns).
    previous = {
        name: schema
        for name, schema in schemas["customer"]["properties"].items()
        if name in customers_projection.MUTABLE_COLUMNS
    }
    previous["metadata"] = metadata_schema(nullable_values=True)
    schemas["error_detail"]["dependentRequired"] = {"code": ["doc_url"], "doc_url": ["code"]}
    event = schemas["event"]
    event["properties"]["api_version"]["enum"] = list(versions.VERSIONS)
    # An event's `data`: which object (and previous attributes) goes with which event type.
    schemas["event_data"]["properties"] = {
        "object": {"oneOf": [ref(name) for name, _ in EVENT_PAYLOADS.values()]},
        "previous_attributes": {"anyOf": [ref(previous) for _, previous in EVENT_PAYLOADS.values()]},
    }
    event_types = get_args(objects.EventType)
    event["allOf"] = [
        event_payload([t for t in event_types if t.rsplit(".", 1)[0] == prefix], name, previous)
        for prefix, (name, previous) in EVENT_PAYLOADS.items()
    ]
    return {
        "metadata": msgspec.json.schema(objects.Metadata),
        **schemas,
        "customer_or_deleted": {"oneOf": [ref("customer"), ref("deleted_customer")]},
        "customer_previous_attributes": obj(
            previous, description="Old values of the fields a `customer.updated` changed."
        ),
        "customer_balance_transaction_previous_attributes": obj(
            {
                "description": schemas["customer_balance_transaction"]["properties"]["description"],
                "metadata": metadata_schema(nullable_values=True),
            }
        ),
    }


def event_payload(types: list[str], object_schema: str, previous_schema: str) -> Schema:
    """The event ``data`` that goes with these event types."""
    return {
        "if": {"properties": {"type": {"enum": types}}},
        "then": {
            "properties": {
                "data": {
                    "properties": {
                        "object": ref(object_schema),
                        "previous_attributes": ref(previous_schema),
                    }
                }
            }
        },
    }
