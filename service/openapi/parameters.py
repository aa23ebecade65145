"""Parameters, headers and responses the operations share: path and query parameters in Stripe's
bracket notation, the Idempotency-Key header, the response headers, and the Stripe-shaped error
responses."""

from __future__ import annotations

from typing import Any, Final

from ledgerd.service import expand, params
from ledgerd.service.openapi.requests import expand_schema
from ledgerd.service.openapi.schemas import INT64, Schema, integer, obj, ref, text

JSON: Final[str] = "application/json"
MAX_IDEMPOTENCY_KEY: Final[int] = 255  # service.routes.MAX_IDEMPOTENCY_KEY (checked by a test)


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


# A path template's parameters, by name.
PATH_PARAMETERS: Final[dict[str, str]] = {
    "customer": "The customer's id (`cus_…`).",
    "transaction": "The balance transaction's id (`cbtxn_…`).",
    "event": "The event's id (`evt_…`).",
    "webhook_endpoint": "The webhook endpoint's id (`we_…`).",
}


def path_parameter(name: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
        "description": PATH_PARAMETERS[name],
    }


def expand_query(root: expand.Node = expand.NOTHING, *, omit: tuple[str, ...] = ()) -> Schema:
    return query("expand", expand_schema(root, omit=omit))


def limit_query() -> Schema:
    return query(
        "limit", integer(1, params.MAX_LIMIT), f"Page size, 1 to {params.MAX_LIMIT}; default {params.DEFAULT_LIMIT}."
    )


def list_query(*filters: Schema, expand_root: expand.Node = expand.EVENT_LIST) -> tuple[Schema, ...]:
    """Stripe's list pagination (newest first), the list's filters, and `expand`."""
    return (
        limit_query(),
        query("starting_after", text(), "Cursor: an object id; the page after it (older objects)."),
        query("ending_before", text(), "Cursor: an object id; the page before it (newer objects)."),
        *filters,
        # total_count on lists is refused from 2025-03-31.basil, the latest version's shape here
        expand_query(expand_root, omit=("total_count",)),
    )


def as_of_query() -> Schema:
    return query(
        "as_of",
        integer(0, 2**53 - 1),
        "Extension: the state at the end of this unix second, folded from the event log.",
    )


def created_query() -> Schema:
    return query(
        "created",
        {"anyOf": [INT64, obj({op: INT64 for op in sorted(params.CREATED_PARAMS)})]},
        "Unix seconds: an exact value, or a range `created[gt|gte|lt|lte]`.",
    )


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


REPLAY_HEADERS: Final[tuple[str, ...]] = ("Idempotent-Replayed", "Original-Request", "Idempotency-Key")
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
    "400": ("Stripe-Should-Retry", *REPLAY_HEADERS),
    "404": ("Stripe-Should-Retry", *REPLAY_HEADERS),
    "409": ("Stripe-Should-Retry", *REPLAY_HEADERS),
    "429": ("Stripe-Should-Retry",),
    "503": ("Retry-After", "Stripe-Should-Retry"),
}
READ_ERRORS: Final[tuple[int, ...]] = (400, 401, 403, 429, 500, 503)
WRITE_ERRORS: Final[tuple[int, ...]] = (400, 401, 403, 404, 409, 413, 429, 500, 503)


def error_responses() -> dict[str, Schema]:
    return {
        status: {
            "description": description,
            "headers": header_refs(*ERROR_HEADERS.get(status, ())),
            "content": {JSON: {"schema": ref("error")}},
        }
        for status, description in ERROR_DESCRIPTIONS.items()
    }


def error_refs(*statuses: int) -> dict[str, Schema]:
    return {str(status): {"$ref": f"#/components/responses/{status}"} for status in statuses}
