"""The OpenAPI 3.1 document of the whole HTTP API, served at ``GET /openapi.json`` (no auth).

Built once. The schemas of the response objects (customer, deleted customer, balance transaction, event,
and what they embed) are generated from their types in `projections.objects`, which the renderers walk;
the request bodies' from `service.wire`, whose fields are the names `service.params` accepts; both with
`msgspec.json.schema_components`, post-processed to this document's conventions (below). What is
written here by hand is the table of paths and operations, the list, search, history, error and status
envelopes (not yet types), and the webhook endpoint schemas (`service/webhooks/openapi.py`). Limits come
from the modules that enforce them (`domain.validation`, `domain.money`, `service.params`,
`service.forms`), so the document cannot drift from the code silently: `tests/e2e/test_openapi.py`
checks it against the router and real responses, and `tests/e2e/test_schemathesis.py` fuzzes the running
service with it.

Conventions of the wire format the document encodes:

* Request bodies are ``application/x-www-form-urlencoded`` with Stripe's bracket notation
  (``metadata[plan]=pro``, ``preferred_locales[0]=en``, ``expand[]=x``) or ``application/json``; both
  media types share one schema. In a form every value is a string (integers as decimal strings,
  booleans as ``true``/``false``); in JSON they may also be numbers and booleans.
* ``""`` (form) and ``null`` (JSON) mean *unset*: on create the parameter is ignored, on update a
  nullable field is cleared. Schemas therefore accept ``""`` and ``null`` exactly where the service does.
* Query parameters use the same bracket notation: ``created[gte]=...``, ``types[]=...``, ``expand[]=...``.

Stripe fidelity (issue 13):

* ``Stripe-Version`` (request header) selects the API version a request is answered at; without it the
  account's default (``ledgerd api-keys create --api-version``), else the latest. An unknown version is a
  400 "Invalid Stripe API version: X". Responses carry ``Stripe-Version``. This document shows the latest
  version's shapes; older versions differ as `service/versions.py` declares (before 2019-10-17 a
  customer's ``balance`` is ``account_balance``, in params too; before 2020-08-27 customers carry
  ``sources``, ``subscriptions`` and ``tax_ids``; before 2025-03-31.basil lists expand ``total_count``).
* ``Stripe-Account`` naming another account is a 403 ``platform_account_required`` (no Connect here).
* ``expand[]`` takes the paths each operation lists; others are 400 "This property cannot be expanded".
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
from typing import Any, Final, get_args

import msgspec
from aiohttp import web

from ledgerd.projections import customers as customers_projection
from ledgerd.projections import objects
from ledgerd.service import errors as errors_module
from ledgerd.service import expand, forms, params, versions, wire
from ledgerd.service.config import Config

__all__ = ["OPENAPI_PATH", "document", "openapi_view"]

OPENAPI_PATH: Final[str] = "/openapi.json"
OPENAPI_VERSION: Final[str] = "3.1.0"
JSON_SCHEMA_DIALECT: Final[str] = "https://json-schema.org/draft/2020-12/schema"
MAX_IDEMPOTENCY_KEY: Final[int] = 255  # service.routes.MAX_IDEMPOTENCY_KEY (checked by a test)

FORM: Final[str] = "application/x-www-form-urlencoded"
JSON: Final[str] = "application/json"
NO_NUL: Final[str] = "^[^\\x00]*$"

Schema = dict[str, Any]

# ---------------------------------------------------------------------------------------------------
# schema helpers
# ---------------------------------------------------------------------------------------------------


REF_PREFIX: Final[str] = "#/components/schemas/"


def ref(name: str) -> Schema:
    return {"$ref": REF_PREFIX + name}


def text(max_length: int | None = None, *, min_length: int = 0, description: str | None = None) -> Schema:
    """A string without NUL characters (the service rejects them everywhere)."""
    schema: Schema = {"type": "string", "pattern": NO_NUL}
    if min_length:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    if description:
        schema["description"] = description
    return schema


def nullable(schema: Schema) -> Schema:
    """``schema`` or JSON null (response fields)."""
    if "$ref" in schema or "enum" in schema or "const" in schema or "anyOf" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    result = dict(schema)
    kind = result["type"]
    result["type"] = [*kind, "null"] if isinstance(kind, list) else [kind, "null"]
    return result


def unsettable(schema: Schema, description: str | None = None) -> Schema:
    """A request parameter that also takes ``""`` (form) or ``null`` (JSON), both meaning *unset*."""
    if schema.get("type") == "string" and "enum" not in schema and schema.get("minLength", 0) == 0:
        # "" already matches; a string pattern must admit it too.
        result = nullable(schema)
        if "pattern" in schema and schema["pattern"] != NO_NUL:
            result = {"anyOf": [schema, {"const": ""}, {"type": "null"}]}
    else:
        result = {"anyOf": [schema, {"const": ""}, {"type": "null"}]}
    if description:
        result["description"] = description
    return result


def integer(minimum: int, maximum: int, description: str | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "integer", "minimum": minimum, "maximum": maximum, **extra}
    if description:
        schema["description"] = description
    return schema


def obj(
    properties: dict[str, Schema],
    *,
    required: tuple[str, ...] | None = None,
    closed: bool = True,
    description: str | None = None,
    **extra: Any,
) -> Schema:
    """An object schema; ``required=None`` means every property is always present (response objects)."""
    schema: Schema = {"type": "object", "properties": properties}
    names = list(properties) if required is None else list(required)
    if names:
        schema["required"] = names
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    schema.update(extra)
    return schema


def const(value: Any) -> Schema:
    return {"const": value}


def id_of(prefix: str) -> Schema:
    return {"type": "string", "pattern": f"^{prefix}[A-Za-z0-9]+$"}


NULL: Final[Schema] = {"type": "null"}
INT64: Final[Schema] = integer(params.INT64_MIN, params.INT64_MAX)
UNIX_TIME: Final[Schema] = {**INT64, "description": "Unix time in seconds."}

# ---------------------------------------------------------------------------------------------------
# object schemas (responses)
# ---------------------------------------------------------------------------------------------------


def metadata_schema(*, nullable_values: bool) -> Schema:
    """Stored metadata (``nullable_values=False``), or a request's: there ``""``/null removes a key, and
    removals do not count against the limit (`service.wire.MetadataParam`)."""
    schema: Schema = msgspec.json.schema(wire.MetadataParam if nullable_values else objects.Metadata)
    schema.pop("description", None)
    return schema


RESPONSE_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    **objects.RESPONSE_OBJECTS,
    "error_detail": errors_module.ErrorDetail,
    "error": errors_module.ErrorObject,
}


def object_schemas() -> dict[str, Schema]:
    """The response objects' schemas, generated from their types (`projections.objects`, the error's in
    `service.errors`)."""
    types = RESPONSE_TYPES
    names = {cls.__name__: name for name, cls in types.items()}
    _, components = msgspec.json.schema_components(list(types.values()), ref_template=REF_PREFIX + "{name}")
    schemas: dict[str, Schema] = {}
    for class_name, generated in components.items():
        name = names[class_name]  # a KeyError here: a type used by an object is missing from RESPONSE_OBJECTS
        schema = tidied(renamed(generated, names))  # a response field with a default is a constant
        # Response objects carry every field, except those only `expand[]` adds (UNSET by default).
        schema["required"] = [
            field.name for field in msgspec.structs.fields(types[name]) if field.default is not msgspec.UNSET
        ]
        schema["additionalProperties"] = False
        schemas[name] = schema
    return schemas


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


def response_schemas() -> dict[str, Schema]:
    generated = object_schemas()
    # The value of a field before an update, as `customer.updated` events report it: the fields a
    # command can change (the projection's mutable columns).
    previous = {
        name: schema
        for name, schema in generated["customer"]["properties"].items()
        if name in customers_projection.MUTABLE_COLUMNS
    }
    previous["metadata"] = metadata_schema(nullable_values=True)
    generated["error_detail"]["dependentRequired"] = {"code": ["doc_url"], "doc_url": ["code"]}
    event = generated["event"]
    event["properties"]["api_version"]["enum"] = list(versions.VERSIONS)
    # An event's `data`: which object (and previous attributes) goes with which event type.
    generated["event_data"]["properties"] = {
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
        **generated,
        "customer_or_deleted": {"oneOf": [ref("customer"), ref("deleted_customer")]},
        "customer_previous_attributes": obj(
            previous, required=(), description="Old values of the fields a `customer.updated` changed."
        ),
        "customer_balance_transaction_previous_attributes": obj(
            {
                "description": generated["customer_balance_transaction"]["properties"]["description"],
                "metadata": metadata_schema(nullable_values=True),
            },
            required=(),
        ),
        "customer_list": list_schema("customer", const("/v1/customers")),
        "customer_balance_transaction_list": list_schema(
            "customer_balance_transaction",
            {"type": "string", "pattern": "^/v1/customers/[^/]+/balance_transactions$"},
        ),
        "event_list": list_schema("event", const("/v1/events")),
        "customer_history_entry": {
            "type": "object",
            "description": "One event of the customer's stream, with the fields it changed (an extension).",
            "required": ["id", "object", "version", "type", "event_id", "recorded_at", "changes", "hash"],
            "properties": {
                "id": {"type": "string", "description": "The event's id: the cursor of the list."},
                "object": const("customer_history_entry"),
                "version": {"type": "integer", "minimum": 1},
                "type": {"type": "string"},
                "event_id": {"type": "string"},
                "schema_version": {"type": "integer", "minimum": 1},
                "recorded_at": {"type": "integer"},
                "recorded_at_us": {"type": "integer"},
                "balance_transaction": nullable({"type": "string"}),
                "changes": {"type": "object"},
                "request_id": nullable({"type": "string"}),
                "idempotency_key": nullable({"type": "string"}),
                "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            },
        },
        "customer_history": {
            "type": "object",
            "required": ["object", "data", "has_more", "url"],
            "additionalProperties": False,
            "properties": {
                "object": const("list"),
                "data": {"type": "array", "items": ref("customer_history_entry"), "maxItems": params.MAX_LIMIT},
                "has_more": {"type": "boolean"},
                "url": {"type": "string", "pattern": "^/v1/customers/[^/]+/history$"},
            },
        },
        "customer_search_result": obj(
            {
                "object": const("search_result"),
                "data": {"type": "array", "maxItems": params.MAX_LIMIT, "items": ref("customer")},
                "has_more": {"type": "boolean"},
                "next_page": nullable({"type": "string", "minLength": 1}),
                "url": const("/v1/customers/search"),
                "total_count": TOTAL_COUNT,
            },
            required=("object", "data", "has_more", "next_page", "url"),
        ),
        "status": obj({"status": {"type": "string", "enum": ["ok", "ready"]}}),
    }


# event type prefix -> the schemas of its `data.object` and `data.previous_attributes`
EVENT_PAYLOADS: Final[dict[str, tuple[str, str]]] = {
    "customer": ("customer", "customer_previous_attributes"),
    "customer_balance_transaction": (
        "customer_balance_transaction",
        "customer_balance_transaction_previous_attributes",
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


TOTAL_COUNT: Final[Schema] = {
    "type": "integer",
    "minimum": 0,
    "description": "With `expand[]=total_count`: every match, whatever the page.",
}


def list_schema(item: str, url: Schema) -> Schema:
    return obj(
        {
            "object": const("list"),
            "data": {"type": "array", "maxItems": params.MAX_LIMIT, "items": ref(item)},
            "has_more": {"type": "boolean"},
            "url": url,
            "total_count": TOTAL_COUNT,
        },
        required=("object", "data", "has_more", "url"),
        description="One page, newest first.",
    )


# ---------------------------------------------------------------------------------------------------
# request schemas
# ---------------------------------------------------------------------------------------------------


def expand_schema(root: expand.Node = expand.NOTHING, *, omit: tuple[str, ...] = ()) -> Schema:
    """The paths `root` can expand (service/expand.py); any other is a 400."""
    paths = [path for path in expand.expandable_paths(root) if path not in omit]
    if not paths:
        return {"type": "array", "items": text(), "description": "Nothing here is expandable: any path is a 400."}
    return {
        "type": "array",
        "items": {"type": "string", "enum": paths},
        "description": "Properties to expand; any other path is a 400 (at most 4 levels).",
    }


ADDRESS_DESCRIPTIONS: Final[dict[str, str]] = {
    "city": "City, district, suburb, town or village.",
    "country": "Two-letter country code (ISO 3166-1 alpha-2).",
    "line1": "Address line 1, e.g. street, PO box or company name.",
    "line2": "Address line 2, e.g. apartment, suite, unit or building.",
    "postal_code": "ZIP or postal code.",
    "state": "State, county, province or region.",
}


CUSTOMER_PARAM_DESCRIPTIONS: Final[dict[str, str]] = {
    "email": "The customer's email address.",
    "name": "The customer's full name or business name.",
    "phone": "The customer's phone number.",
    "description": "An arbitrary string, e.g. an internal note; shown in the dashboard of a Stripe account.",
    "business_name": "The customer's business name.",
    "individual_name": "The customer's individual name.",
    "address": "The customer's address. Send `address=` to clear it.",
    "shipping": "Shipping details: `address` and `name` are required, `phone` is optional.",
    "invoice_settings": "Default invoice settings: custom fields, footer, rendering options.",
    "preferred_locales": "Preferred languages, most preferred first (IETF tags such as `en`, `fr-CA`).",
    "tax_exempt": "The customer's tax exemption.",
    "invoice_prefix": "Prefix of the customer's invoice numbers: uppercase letters and digits (see the pattern).",
    "next_invoice_sequence": "The suffix of the customer's next invoice number.",
    "expand": "Properties to expand (invoice_credit_balance, tax, tax_ids, sources, subscriptions, ...).",
    "validate": "Accepted and ignored (Stripe uses it to validate tax ids).",
}


def described(properties: dict[str, Schema], descriptions: dict[str, str]) -> dict[str, Schema]:
    """``properties`` with a description on each named one that has none yet."""
    return {
        name: schema if "description" in schema or name not in descriptions
        else {**schema, "description": descriptions[name]}
        for name, schema in properties.items()
    }


# What each request type's `expand` can name (service/expand.py).
EXPAND_ROOTS: Final[dict[str, expand.Node]] = {
    "customer_create_params": expand.CUSTOMER,
    "customer_update_params": expand.CUSTOMER,
    "customer_balance_transaction_create_params": expand.BALANCE_TRANSACTION,
    "customer_balance_transaction_update_params": expand.BALANCE_TRANSACTION,
}
PARAM_DESCRIPTIONS: Final[dict[str, dict[str, str]]] = {
    "address_params": ADDRESS_DESCRIPTIONS,
    "customer_create_params": CUSTOMER_PARAM_DESCRIPTIONS,
    "customer_update_params": CUSTOMER_PARAM_DESCRIPTIONS,
}


def generated_request_schemas() -> dict[str, Schema]:
    """The request bodies' schemas, generated from their types (`service.wire`)."""
    types = wire.REQUEST_TYPES
    names = {cls.__name__: name for name, cls in types.items()}
    _, components = msgspec.json.schema_components(list(types.values()), ref_template=REF_PREFIX + "{name}")
    unsupported = ", ".join(sorted(params.UNSUPPORTED_CUSTOMER_PARAMS))
    schemas: dict[str, Schema] = {}
    for class_name, generated in components.items():
        name = names[class_name]  # a KeyError here: a type used by a request is missing from REQUEST_TYPES
        schema = tidied(renamed(generated, names))
        properties = {prop: accepting_unset(value) for prop, value in schema["properties"].items()}
        if name in EXPAND_ROOTS:
            properties["expand"] = unsettable(expand_schema(EXPAND_ROOTS[name]))
        schema["properties"] = described(properties, PARAM_DESCRIPTIONS.get(name, {}))
        if name.startswith("customer_") and not name.startswith("customer_balance"):
            schema["description"] = (
                "Unknown parameters are rejected (400 parameter_unknown); payment parameters "
                f"({unsupported}) are rejected with 400 parameter_unsupported."
            )
        if not schema.get("required"):
            schema.pop("required", None)
        schemas[name] = schema
    return schemas


def tidied(schema: Schema) -> Schema:
    """A generated object schema without msgspec's title and defaults, its descriptions at the top."""
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


def accepting_unset(schema: Schema) -> Schema:
    """A nullable parameter (``X | None``) also takes ``""`` (form): both mean *unset*."""
    options = schema.get("anyOf")
    if not options or NULL not in options:
        return schema
    takes_empty = any(
        option.get("type") == "string"
        and option.get("minLength", 0) == 0
        and option.get("pattern", NO_NUL) == NO_NUL
        and "enum" not in option
        for option in options
    )
    if takes_empty:
        return schema
    rest = [option for option in options if option != NULL]
    return {**schema, "anyOf": [*rest, const(""), NULL]}


def request_schemas() -> dict[str, Schema]:
    from ledgerd.service.webhooks import openapi as webhooks  # uses this module's helpers

    return {**webhooks.request_schemas(), **generated_request_schemas()}


# ---------------------------------------------------------------------------------------------------
# parameters, responses, operations
# ---------------------------------------------------------------------------------------------------


def query(
    name: str,
    schema: Schema,
    description: str | None = None,
    *,
    required: bool = False,
    examples: dict[str, Any] | None = None,
) -> Schema:
    parameter: Schema = {"name": name, "in": "query", "required": required, "schema": schema}
    if examples:
        parameter["examples"] = {key: {"value": value} for key, value in examples.items()}
    if schema.get("type") in ("array", "object") or "anyOf" in schema:
        # Stripe's bracket notation: created[gte]=1, expand[0]=a (form arrays and objects).
        parameter["style"] = "deepObject"
        parameter["explode"] = True
    if description:
        parameter["description"] = description
    return parameter


def path(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
        "description": description,
    }


CUSTOMER_PATH = path("customer", "The customer's id (`cus_…`).")
TRANSACTION_PATH = path("transaction", "The balance transaction's id (`cbtxn_…`).")
EVENT_PATH = path("event", "The event's id (`evt_…`).")


def expand_query(root: expand.Node = expand.NOTHING, *, omit: tuple[str, ...] = ()) -> Schema:
    return query("expand", expand_schema(root, omit=omit))


def list_query(*filters: Schema, expand_root: expand.Node = expand.EVENT_LIST) -> list[Schema]:
    return [
        query(
            "limit",
            integer(1, params.MAX_LIMIT),
            f"Page size, {1} to {params.MAX_LIMIT}; default {params.DEFAULT_LIMIT}.",
        ),
        query("starting_after", text(), "Cursor: an object id; the page after it (older objects)."),
        query("ending_before", text(), "Cursor: an object id; the page before it (newer objects)."),
        *filters,
        # total_count on lists is refused from 2025-03-31.basil, the latest version's shape here
        expand_query(expand_root, omit=("total_count",)),
    ]


def as_of_query() -> Schema:
    return query(
        "as_of",
        integer(0, 2**53 - 1),
        "Extension: the state at the end of this unix second, folded from the event log.",
    )


def created_query() -> Schema:
    bound = INT64
    return query(
        "created",
        {
            "anyOf": [
                bound,
                obj({op: bound for op in sorted(params.CREATED_PARAMS)}, required=()),
            ]
        },
        "Unix seconds: an exact value, or a range `created[gt|gte|lt|lte]`.",
    )


def headers_component() -> dict[str, Schema]:
    return {
        "Request-Id": {
            "description": "Unique id of this request (`req_…`); it is in the service's log line.",
            "required": True,
            "schema": {"type": "string", "pattern": "^req_[A-Za-z0-9]+$"},
        },
        "Idempotent-Replayed": {
            "description": "`true` when the response is the stored result of an earlier request with the key.",
            "schema": {"type": "string", "enum": ["true"]},
        },
        "Original-Request": {
            "description": "On a replay, the Request-Id of the request whose result is replayed.",
            "schema": {"type": "string"},
        },
        "Idempotency-Key": {
            "description": "The Idempotency-Key of the request, echoed.",
            "schema": {"type": "string"},
        },
        "Stripe-Version": {
            "description": "The Stripe API version the request was answered at.",
            "schema": {"type": "string"},
        },
        "Stripe-Should-Retry": {
            "description": "Whether retrying the same request may succeed.",
            "schema": {"type": "string", "enum": ["true", "false"]},
        },
        "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}},
    }


def header_refs(*names: str) -> dict[str, Schema]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in ("Request-Id", "Stripe-Version", *names)}


ERROR_DESCRIPTIONS: Final[dict[str, str]] = {
    "400": "Invalid request: unknown (`parameter_unknown`), unsupported (`parameter_unsupported`), "
    "missing (`parameter_missing`) or invalid parameters, `currency_mismatch`, `balance_overflow`, "
    "a reused Idempotency-Key with other parameters (`idempotency_error`), an unknown `Stripe-Version`, "
    "a path `expand[]` cannot expand, an invalid email (`email_invalid`).",
    "401": "No API key, or an invalid or revoked one.",
    "403": "A `Stripe-Account` header naming another account (`platform_account_required`).",
    "404": "No such object for this account and mode (`resource_missing`).",
    "409": "A concurrent change to the same object; retrying may succeed (`Stripe-Should-Retry: true`).",
    "413": "The request body is larger than 1 MiB (`request_too_large`).",
    "429": "The database did not answer in time (`lock_timeout`); retry.",
    "500": "An unexpected error; it is logged with the Request-Id.",
    "503": "The database is unavailable (`service_unavailable`); retry after `Retry-After` seconds.",
}
ERROR_HEADERS: Final[dict[str, tuple[str, ...]]] = {
    "400": ("Stripe-Should-Retry", "Idempotent-Replayed", "Original-Request", "Idempotency-Key"),
    "404": ("Stripe-Should-Retry", "Idempotent-Replayed", "Original-Request", "Idempotency-Key"),
    "409": ("Stripe-Should-Retry", "Idempotent-Replayed", "Original-Request", "Idempotency-Key"),
    "429": ("Stripe-Should-Retry",),
    "503": ("Retry-After", "Stripe-Should-Retry"),
}


def error_responses() -> dict[str, Schema]:
    return {
        status: {
            "description": description,
            "headers": header_refs(*ERROR_HEADERS.get(status, ())),
            "content": {JSON: {"schema": ref("error")}},
        }
        for status, description in ERROR_DESCRIPTIONS.items()
    }


def ok(schema_name: str, description: str, *, write: bool = False) -> Schema:
    extra = ("Idempotent-Replayed", "Original-Request", "Idempotency-Key") if write else ()
    return {
        "description": description,
        "headers": header_refs(*extra),
        "content": {JSON: {"schema": ref(schema_name)}},
    }


def errors(*statuses: int) -> dict[str, Schema]:
    return {str(status): {"$ref": f"#/components/responses/{status}"} for status in statuses}


READ_ERRORS: Final[tuple[int, ...]] = (400, 401, 403, 429, 500, 503)
WRITE_ERRORS: Final[tuple[int, ...]] = (400, 401, 403, 404, 409, 413, 429, 500, 503)


SEARCH_EXAMPLES: Final[dict[str, str]] = {
    "email": "email:'jenny@example.com'",
    "substring": "name~'jen' AND metadata['plan']:'pro'",
    "either": "created>1700000000 OR phone:'+15555550123'",
    "negated": "-email:'jenny@example.com'",
}
CUSTOMER_EXAMPLE: Final[dict[str, Any]] = {
    "email": "jenny@example.com",
    "name": "Jenny Rosen",
    "address": {"line1": "1 Main St", "city": "Springfield", "country": "US"},
    "preferred_locales": ["en", "fr-CA"],
    "metadata": {"plan": "pro"},
}
TRANSACTION_EXAMPLE: Final[dict[str, Any]] = {
    "amount": -500,
    "currency": "usd",
    "description": "Goodwill credit",
    "metadata": {"ticket": "T-1"},
}


BRACKET_PARAMS: Final[tuple[str, ...]] = (
    "address",
    "shipping",
    "invoice_settings",
    "metadata",
    "preferred_locales",
    "expand",
)


def body(schema_name: str, *, required: bool, example: dict[str, Any] | None = None) -> Schema:
    schema = ref(schema_name)
    properties = request_schemas()[schema_name]["properties"]
    encoding = {
        # Nested objects and arrays use Stripe's bracket notation: a[b]=1, a[0]=x, a[]=x.
        name: {"style": "deepObject", "explode": True}
        for name in BRACKET_PARAMS
        if name in properties
    }
    form: Schema = {"schema": schema, "encoding": encoding}
    json: Schema = {"schema": schema}
    if example is not None:
        form["examples"] = json["examples"] = {"typical": {"value": example}}
    return {"required": required, "content": {FORM: form, JSON: json}}


def idempotency_header() -> Schema:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Retries with the same key and parameters replay the first result (kept >= 24 h); "
        "a concurrent request with the same key waits for the first.",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_IDEMPOTENCY_KEY,
            "pattern": "^[!-~]([ -~]*[!-~])?$",
        },
    }


def operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Schema],
    *,
    parameters: list[Schema] | None = None,
    request_body: Schema | None = None,
    public: bool = False,
) -> Schema:
    op: Schema = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if parameters:
        op["parameters"] = parameters
    if request_body is not None:
        op["requestBody"] = request_body
    op["responses"] = responses
    if public:
        op["security"] = []
    return op


def paths() -> dict[str, Schema]:
    from ledgerd.service.webhooks import openapi as webhooks  # uses this module's helpers

    customer = {"parameters": [CUSTOMER_PATH]}
    return {
        "/v1/customers": {
            "post": operation(
                "PostCustomers",
                "Create a customer (or, with a known external_id, update it)",
                "Customers",
                {"200": ok("customer", "The customer.", write=True), **errors(*WRITE_ERRORS)},
                parameters=[idempotency_header()],
                request_body=body("customer_create_params", required=False, example=CUSTOMER_EXAMPLE),
            ),
            "get": operation(
                "GetCustomers",
                "List customers, newest first",
                "Customers",
                {"200": ok("customer_list", "A page of customers."), **errors(*READ_ERRORS)},
                parameters=list_query(
                    query(
                        "email",
                        text(params.MAX_EMAIL_FILTER),
                        "Exact email, case-insensitive (Stripe's is case-sensitive).",
                    ),
                    created_query(),
                    query("test_clock", text(), "There are no test clocks: a value matches no customer."),
                    expand_root=expand.CUSTOMER_LIST,
                ),
            ),
        },
        "/v1/customers/search": {
            "get": operation(
                "GetCustomersSearch",
                "Search customers (consistent immediately)",
                "Customers",
                {"200": ok("customer_search_result", "Matching customers."), **errors(*READ_ERRORS)},
                parameters=[
                    query(
                        "query",
                        text(min_length=1),
                        "Stripe's search query language over email, name, phone, metadata['key'] and "
                        "created, with `:`, `~`, `>`, `<`, `AND`, `OR`, `-`.",
                        required=True,
                        examples=SEARCH_EXAMPLES,
                    ),
                    query("limit", integer(1, params.MAX_LIMIT)),
                    query("page", text(), "The `next_page` of the previous result."),
                    expand_query(expand.CUSTOMER_LIST),
                ],
            ),
        },
        "/v1/customers/{customer}": {
            **customer,
            "get": operation(
                "GetCustomersCustomer",
                "Retrieve a customer (a deleted one as a stub)",
                "Customers",
                {"200": ok("customer_or_deleted", "The customer."), **errors(*READ_ERRORS, 404)},
                parameters=[expand_query(expand.CUSTOMER), as_of_query()],
            ),
            "post": operation(
                "PostCustomersCustomer",
                "Update a customer",
                "Customers",
                {"200": ok("customer", "The updated customer.", write=True), **errors(*WRITE_ERRORS)},
                parameters=[idempotency_header()],
                request_body=body(
                    "customer_update_params", required=False, example={"metadata": {"plan": ""}}
                ),
            ),
            "delete": operation(
                "DeleteCustomersCustomer",
                "Delete a customer",
                "Customers",
                {"200": ok("deleted_customer", "The deleted customer.", write=True), **errors(*WRITE_ERRORS)},
                parameters=[idempotency_header(), expand_query(expand.CUSTOMER)],
            ),
        },
        "/v1/customers/{customer}/balance_transactions": {
            **customer,
            "post": operation(
                "PostCustomersCustomerBalanceTransactions",
                "Credit or debit a customer's balance",
                "Customer balance transactions",
                {
                    "200": ok("customer_balance_transaction", "The new ledger entry.", write=True),
                    **errors(*WRITE_ERRORS),
                },
                parameters=[idempotency_header()],
                request_body=body(
                    "customer_balance_transaction_create_params", required=True, example=TRANSACTION_EXAMPLE
                ),
            ),
            "get": operation(
                "GetCustomersCustomerBalanceTransactions",
                "List a customer's balance transactions, newest first",
                "Customer balance transactions",
                {
                    "200": ok("customer_balance_transaction_list", "A page of ledger entries."),
                    **errors(*READ_ERRORS, 404),
                },
                parameters=list_query(
                    created_query(),
                    query("invoice", text(), "Accepted and ignored: there are no invoices."),
                    as_of_query(),
                    expand_root=expand.BALANCE_TRANSACTION_LIST,
                ),
            ),
        },
        "/v1/customers/{customer}/history": {
            **customer,
            "get": operation(
                "GetCustomersCustomerHistory",
                "The customer's events in order, oldest first, with what each changed (an extension)",
                "Customers",
                {"200": ok("customer_history", "A page of the customer's events."), **errors(*READ_ERRORS, 404)},
                parameters=[
                    query("limit", integer(1, params.MAX_LIMIT), f"Page size, 1 to {params.MAX_LIMIT}; default {params.DEFAULT_LIMIT}."),
                    query("starting_after", text(), "Cursor: an entry's id; the page after it (later events)."),
                    query("ending_before", text(), "Cursor: an entry's id; the page before it (earlier events)."),
                    expand_query(),
                ],
            ),
        },
        "/v1/customers/{customer}/balance_transactions/{transaction}": {
            "parameters": [CUSTOMER_PATH, TRANSACTION_PATH],
            "get": operation(
                "GetCustomersCustomerBalanceTransactionsTransaction",
                "Retrieve a balance transaction",
                "Customer balance transactions",
                {
                    "200": ok("customer_balance_transaction", "The ledger entry."),
                    **errors(*READ_ERRORS, 404),
                },
                parameters=[expand_query(expand.BALANCE_TRANSACTION)],
            ),
            "post": operation(
                "PostCustomersCustomerBalanceTransactionsTransaction",
                "Update a balance transaction's description and metadata",
                "Customer balance transactions",
                {
                    "200": ok("customer_balance_transaction", "The ledger entry.", write=True),
                    **errors(*WRITE_ERRORS),
                },
                parameters=[idempotency_header()],
                request_body=body("customer_balance_transaction_update_params", required=False),
            ),
        },
        "/v1/events": {
            "get": operation(
                "GetEvents",
                "List events, newest first",
                "Events",
                {"200": ok("event_list", "A page of events."), **errors(*READ_ERRORS)},
                parameters=list_query(
                    query("type", text(), "One event type, or a prefix wildcard such as `customer.*`."),
                    query(
                        "types",
                        {"type": "array", "maxItems": params.MAX_EVENT_TYPES, "items": text()},
                        "Several event types (not with `type`).",
                    ),
                    created_query(),
                    query(
                        "delivery_success",
                        {"type": "boolean"},
                        "false: events with a webhook delivery still pending or failed; true: the others.",
                    ),
                ),
            ),
        },
        "/v1/events/{event}": {
            "parameters": [EVENT_PATH],
            "get": operation(
                "GetEventsEvent",
                "Retrieve an event",
                "Events",
                {"200": ok("event", "The event."), **errors(*READ_ERRORS, 404)},
                parameters=[expand_query()],
            ),
        },
        **webhooks.paths(),
        "/healthz": {
            "get": operation(
                "GetHealthz",
                "Liveness: the process is up",
                "Operations",
                {"200": ok("status", '`{"status": "ok"}`'), **errors(500)},
                public=True,
            )
        },
        "/readyz": {
            "get": operation(
                "GetReadyz",
                "Readiness: the database answers",
                "Operations",
                {"200": ok("status", '`{"status": "ready"}`'), **errors(429, 500, 503)},
                public=True,
            )
        },
        "/metrics": {
            "get": operation(
                "GetMetrics",
                "Prometheus metrics",
                "Operations",
                {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "headers": header_refs(),
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **errors(500),
                },
                public=True,
            )
        },
        OPENAPI_PATH: {
            "get": operation(
                "GetOpenapiJson",
                "This OpenAPI document",
                "Operations",
                {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "headers": header_refs(),
                        "content": {JSON: {"schema": {"type": "object", "required": ["openapi", "paths"]}}},
                    },
                    **errors(500),
                },
                public=True,
            )
        },
    }


def build() -> dict[str, Any]:
    """A fresh copy of the document (`document()` caches one)."""
    return {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": JSON_SCHEMA_DIALECT,
        "info": {
            "title": "ledgerd",
            "version": "0.1.0",
            "summary": "Event-sourced customer ledger, wire-compatible with Stripe's Customers, Customer "
            "Balance Transactions and Events API.",
            "description": __doc__,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://127.0.0.1:8080", "description": "`make serve`"}],
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "tags": [
            {"name": "Customers"},
            {"name": "Customer balance transactions"},
            {"name": "Events"},
            {"name": "Webhook endpoints"},
            {"name": "Operations", "description": "Public: no API key needed."},
        ],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer sk_test_…` (a secret key; the mode follows the key).",
                },
                "basicAuth": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "HTTP Basic with the secret key as the user name and an empty password.",
                },
            },
            "schemas": {**response_schemas(), **webhook_response_schemas(), **request_schemas()},
            "responses": error_responses(),
            "headers": headers_component(),
        },
        "x-limits": {
            "max_body_bytes": next(
                f.default for f in dataclasses.fields(Config) if f.name == "max_body_bytes"
            ),
            "max_params": forms.MAX_PARAMS,
            "max_depth": forms.MAX_DEPTH,
        },
    }


def webhook_response_schemas() -> dict[str, Schema]:
    from ledgerd.service.webhooks import openapi as webhooks  # uses this module's helpers

    return webhooks.response_schemas()


@functools.cache
def _cached() -> tuple[dict[str, Any], bytes]:
    doc = build()
    return doc, msgspec.json.encode(doc)


def document() -> dict[str, Any]:
    """The OpenAPI document (built once; a deep copy, so callers may mutate it)."""
    return copy.deepcopy(_cached()[0])


async def openapi_view(request: web.Request) -> web.Response:
    """``GET /openapi.json``: public, no API key."""
    return web.Response(body=_cached()[1], content_type=JSON)
