"""The Webhook Endpoints API in /openapi.json: schemas and paths, merged into service/openapi.py's
document (imported lazily from there: this module uses its helpers)."""

from __future__ import annotations

from typing import Any

from ledgerd.projections.stripe_events import EVENT_TYPES
from ledgerd.service import openapi as doc
from ledgerd.service.webhooks import params as endpoint_params

Schema = dict[str, Any]

ENDPOINT_PATH = doc.path("webhook_endpoint", "The webhook endpoint's id (`we_…`).")


def events_schema() -> Schema:
    return {
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "enum": [endpoint_params.ALL_EVENTS, *EVENT_TYPES]},
        "description": "Event types to send, or `*` for all.",
    }


def endpoint_schema(*, with_secret: bool) -> Schema:
    properties: dict[str, Schema] = {
        "id": doc.id_of("we_"),
        "object": doc.const("webhook_endpoint"),
        "api_version": doc.nullable({"type": "string"}),
        "application": doc.NULL,
        "created": doc.UNIX_TIME,
        "description": doc.nullable({"type": "string"}),
        "enabled_events": events_schema(),
        "livemode": {"type": "boolean"},
        "metadata": doc.metadata_schema(nullable_values=False),
        "status": {"type": "string", "enum": ["enabled", "disabled"]},
        "url": {"type": "string"},
    }
    if with_secret:
        properties["secret"] = {"type": "string", "pattern": "^whsec_[A-Za-z0-9]{32}$"}
    return doc.obj(properties, description="Where events are sent. `secret` is only returned by create.")


def response_schemas() -> dict[str, Schema]:
    return {
        "webhook_endpoint": endpoint_schema(with_secret=False),
        "webhook_endpoint_created": endpoint_schema(with_secret=True),
        "webhook_endpoint_list": doc.list_schema("webhook_endpoint", doc.const("/v1/webhook_endpoints")),
        "webhook_endpoint_recovery": doc.obj(
            {
                "object": doc.const("webhook_endpoint_recovery"),
                "webhook_endpoint": doc.id_of("we_"),
                "since": doc.UNIX_TIME,
                "until": doc.nullable(doc.UNIX_TIME),
                "deliveries": {"type": "integer", "minimum": 0, "description": "Deliveries queued."},
            },
            description="Extension: the events of a time range queued again for one endpoint.",
        ),
        "webhook_attempt": doc.obj(
            {
                "id": doc.id_of("wha_"),
                "object": doc.const("webhook_attempt"),
                "created": doc.UNIX_TIME,
                "event": doc.id_of("evt_"),
                "webhook_endpoint": doc.id_of("we_"),
                "status_code": doc.nullable({"type": "integer"}),
                "error": doc.nullable(
                    {"type": "string", "enum": ["timeout", "connection", "ssrf_blocked", "redirect", "http_status"]}
                ),
                "latency_ms": {"type": "integer", "minimum": 0},
                "response": {"type": "string", "description": "The first 20 000 bytes of the response, or the error."},
                "next_attempt_at": doc.nullable(doc.UNIX_TIME),
                "manual": {"type": "boolean"},
            },
            description="Extension: one attempt to deliver an event to an endpoint.",
        ),
        "webhook_attempt_list": doc.list_schema(
            "webhook_attempt", {"type": "string", "pattern": "^/v1/(webhook_endpoints|events)/[^/]+/attempts$"}
        ),
        "deleted_webhook_endpoint": doc.obj(
            {"id": doc.id_of("we_"), "object": doc.const("webhook_endpoint"), "deleted": doc.const(True)}
        ),
    }


def request_schemas() -> dict[str, Schema]:
    url = doc.text(endpoint_params.MAX_URL, min_length=1, description="An absolute http(s) URL.")
    common: dict[str, Schema] = {
        "url": url,
        "enabled_events": events_schema(),
        "description": doc.unsettable(doc.text(endpoint_params.MAX_DESCRIPTION)),
        "metadata": doc.unsettable(doc.metadata_schema(nullable_values=True)),
        "expand": doc.unsettable(doc.expand_schema()),
    }
    return {
        "webhook_event_retry_params": doc.obj(
            {"webhook_endpoint": doc.text(min_length=1), "expand": doc.unsettable(doc.expand_schema())},
            required=("webhook_endpoint",),
        ),
        "webhook_endpoint_recover_params": doc.obj(
            {
                "since": doc.integer(0, 2**53 - 1, "Unix seconds: events created at or after."),
                "until": doc.unsettable(doc.integer(0, 2**53 - 1, "Unix seconds: events created before.")),
                "expand": doc.unsettable(doc.expand_schema()),
            },
            required=("since",),
        ),
        "webhook_endpoint_roll_secret_params": doc.obj(
            {
                "expire_previous_in": doc.unsettable(
                    doc.integer(0, 86_400, "Seconds the previous secret keeps signing (default 0).")
                ),
                "expand": doc.unsettable(doc.expand_schema()),
            },
            required=(),
        ),
        "webhook_endpoint_create_params": doc.obj(
            {
                **common,
                "api_version": doc.unsettable(
                    {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}(\\.[a-z]+)?$"},
                    "Fixed at create.",
                ),
                "connect": doc.unsettable({"type": "boolean", "const": False}, "Only false: no Connect."),
            },
            required=("url", "enabled_events"),
        ),
        "webhook_endpoint_update_params": doc.obj(
            {**common, "disabled": {"type": "boolean", "description": "Disable or re-enable delivery."}},
            required=(),
        ),
    }


def paths() -> dict[str, Schema]:
    tag = "Webhook endpoints"
    write, read = doc.WRITE_ERRORS, doc.READ_ERRORS
    return {
        "/v1/webhook_endpoints": {
            "post": doc.operation(
                "PostWebhookEndpoints",
                "Create a webhook endpoint (the response carries its signing secret, once)",
                tag,
                {"200": doc.ok("webhook_endpoint_created", "The new endpoint.", write=True), **doc.errors(*write)},
                parameters=[doc.idempotency_header()],
                request_body=doc.body(
                    "webhook_endpoint_create_params",
                    required=True,
                    example={"url": "https://example.com/hooks", "enabled_events": ["customer.created"]},
                ),
            ),
            "get": doc.operation(
                "GetWebhookEndpoints",
                "List webhook endpoints, newest first",
                tag,
                {"200": doc.ok("webhook_endpoint_list", "A page of endpoints."), **doc.errors(*read)},
                parameters=doc.list_query(),
            ),
        },
        "/v1/webhook_endpoints/{webhook_endpoint}": {
            "parameters": [ENDPOINT_PATH],
            "get": doc.operation(
                "GetWebhookEndpointsWebhookEndpoint",
                "Retrieve a webhook endpoint",
                tag,
                {"200": doc.ok("webhook_endpoint", "The endpoint."), **doc.errors(*read, 404)},
                parameters=[doc.expand_query()],
            ),
            "post": doc.operation(
                "PostWebhookEndpointsWebhookEndpoint",
                "Update a webhook endpoint",
                tag,
                {"200": doc.ok("webhook_endpoint", "The updated endpoint.", write=True), **doc.errors(*write)},
                parameters=[doc.idempotency_header()],
                request_body=doc.body(
                    "webhook_endpoint_update_params", required=False, example={"disabled": True}
                ),
            ),
            "delete": doc.operation(
                "DeleteWebhookEndpointsWebhookEndpoint",
                "Delete a webhook endpoint (its pending deliveries are cancelled)",
                tag,
                {"200": doc.ok("deleted_webhook_endpoint", "The deleted endpoint.", write=True), **doc.errors(*write)},
                parameters=[doc.idempotency_header(), doc.expand_query()],
            ),
        },
        **extension_paths(),
    }


def extension_paths() -> dict[str, Schema]:
    tag = "Webhook endpoints"
    write, read = doc.WRITE_ERRORS, doc.READ_ERRORS
    endpoint = {"parameters": [ENDPOINT_PATH]}
    event = {"parameters": [doc.EVENT_PATH]}
    attempts_query = [
        doc.query("limit", doc.integer(1, 100)),
        doc.query("starting_after", doc.text(), "Cursor: an attempt id (`wha_…`); the older attempts."),
        doc.expand_query(),
    ]
    return {
        "/v1/events/{event}/retry": {
            **event,
            "post": doc.operation(
                "PostEventsEventRetry",
                "Extension: send an event to one endpoint again, now",
                "Events",
                {"200": doc.ok("event", "The event."), **doc.errors(*write)},
                request_body=doc.body("webhook_event_retry_params", required=True),
            ),
        },
        "/v1/events/{event}/attempts": {
            **event,
            "get": doc.operation(
                "GetEventsEventAttempts",
                "Extension: the event's delivery attempts, newest first",
                "Events",
                {"200": doc.ok("webhook_attempt_list", "A page of attempts."), **doc.errors(*read, 404)},
                parameters=attempts_query,
            ),
        },
        "/v1/webhook_endpoints/{webhook_endpoint}/attempts": {
            **endpoint,
            "get": doc.operation(
                "GetWebhookEndpointsWebhookEndpointAttempts",
                "Extension: the endpoint's delivery attempts, newest first",
                tag,
                {"200": doc.ok("webhook_attempt_list", "A page of attempts."), **doc.errors(*read, 404)},
                parameters=attempts_query,
            ),
        },
        "/v1/webhook_endpoints/{webhook_endpoint}/recover": {
            **endpoint,
            "post": doc.operation(
                "PostWebhookEndpointsWebhookEndpointRecover",
                "Extension: deliver again the events of a time range (backfill from the log)",
                tag,
                {"200": doc.ok("webhook_endpoint_recovery", "What was queued."), **doc.errors(*write)},
                request_body=doc.body("webhook_endpoint_recover_params", required=True),
            ),
        },
        "/v1/webhook_endpoints/{webhook_endpoint}/roll_secret": {
            **endpoint,
            "post": doc.operation(
                "PostWebhookEndpointsWebhookEndpointRollSecret",
                "Extension: a new signing secret; the previous one signs too until it expires",
                tag,
                {"200": doc.ok("webhook_endpoint_created", "The endpoint with its new secret."), **doc.errors(*write)},
                request_body=doc.body("webhook_endpoint_roll_secret_params", required=False),
            ),
        },
    }



