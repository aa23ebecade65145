"""The Webhook Endpoints API's wire types: the params each operation accepts and the objects it returns.

`service/openapi` generates their schemas (`msgspec.json.schema_components`), as it does for
`service.wire` and `projections.objects`. Decoding stays with `service/webhooks/params.py` and
`service/webhooks/extensions.py` (the same strict pre-pass as `service.params`; a field typed ``X | None``
may be sent as ``""`` or null), whose limits these are; `tests/e2e/test_openapi.py` holds the create and
update names equal to `service.webhooks.params`' and checks real responses against the schemas.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ledgerd.projections.objects import NO_NUL, Metadata, UnixTime
from ledgerd.projections.stripe_events import EVENT_TYPES
from ledgerd.service.webhooks.extensions import MAX_SECRET_OVERLAP_S
from ledgerd.service.webhooks.params import ALL_EVENTS, MAX_DESCRIPTION, MAX_URL
from ledgerd.service.wire import Expand, MetadataParam

__all__ = [
    "WEBHOOK_PARAMS",
    "WEBHOOK_TYPES",
    "DeletedWebhookEndpoint",
    "WebhookAttempt",
    "WebhookEndpoint",
    "WebhookEndpointCreateParams",
    "WebhookEndpointCreated",
    "WebhookEndpointRecoverParams",
    "WebhookEndpointRecovery",
    "WebhookEndpointRollSecretParams",
    "WebhookEndpointUpdateParams",
    "WebhookEventRetryParams",
]

EndpointId = Annotated[str, Meta(pattern="^we_[A-Za-z0-9]+$")]
EventName = Annotated[str, Meta(extra_json_schema={"enum": [ALL_EVENTS, *EVENT_TYPES]})]
EnabledEvents = Annotated[list[EventName], Meta(min_length=1, description="Event types to send, or `*` for all.")]
Url = Annotated[str, Meta(min_length=1, max_length=MAX_URL, pattern=NO_NUL, description="An absolute http(s) URL.")]
EndpointDescription = Annotated[str, Meta(max_length=MAX_DESCRIPTION, pattern=NO_NUL)]
Seconds = Annotated[int, Meta(ge=0, le=2**53 - 1)]

# ---------------------------------------------------------------------------------------------------
# objects
# ---------------------------------------------------------------------------------------------------


class WebhookEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """Where events are sent. `secret` is only returned by create."""

    id: EndpointId
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    api_version: str | None
    application: None = None
    created: UnixTime
    description: str | None
    enabled_events: EnabledEvents
    livemode: bool
    metadata: Metadata
    status: Literal["enabled", "disabled"]
    url: str


class WebhookEndpointCreated(WebhookEndpoint, frozen=True, kw_only=True):
    """Where events are sent. `secret` is only returned by create."""

    secret: Annotated[str, Meta(pattern="^whsec_[A-Za-z0-9]{32}$")]


class DeletedWebhookEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """What DELETE returns."""

    id: EndpointId
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    deleted: Literal[True] = True


class WebhookEndpointRecovery(msgspec.Struct, frozen=True, kw_only=True):
    """Extension: the events of a time range queued again for one endpoint."""

    object: Literal["webhook_endpoint_recovery"] = "webhook_endpoint_recovery"
    webhook_endpoint: EndpointId
    since: UnixTime
    until: UnixTime | None
    deliveries: Annotated[int, Meta(ge=0, description="Deliveries queued.")]


DeliveryError = Literal["timeout", "connection", "ssrf_blocked", "redirect", "http_status"]


class WebhookAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """Extension: one attempt to deliver an event to an endpoint."""

    id: Annotated[str, Meta(pattern="^wha_[A-Za-z0-9]+$")]
    object: Literal["webhook_attempt"] = "webhook_attempt"
    created: UnixTime
    event: Annotated[str, Meta(pattern="^evt_[A-Za-z0-9]+$")]
    webhook_endpoint: EndpointId
    status_code: int | None
    error: DeliveryError | None
    latency_ms: Annotated[int, Meta(ge=0)]
    response: Annotated[str, Meta(description="The first 20 000 bytes of the response, or the error.")]
    next_attempt_at: UnixTime | None
    manual: bool


# ---------------------------------------------------------------------------------------------------
# request params
# ---------------------------------------------------------------------------------------------------


class _EndpointParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What create and update share."""

    description: EndpointDescription | UnsetType | None = UNSET
    metadata: MetadataParam | UnsetType | None = UNSET
    expand: Expand | UnsetType | None = UNSET


class WebhookEndpointCreateParams(_EndpointParams, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/webhook_endpoints."""

    url: Url
    enabled_events: EnabledEvents
    api_version: (
        Annotated[str, Meta(pattern="^[0-9]{4}-[0-9]{2}-[0-9]{2}(\\.[a-z]+)?$", description="Fixed at create.")]
        | UnsetType
        | None
    ) = UNSET
    connect: (
        Annotated[bool, Meta(description="Only false: no Connect.", extra_json_schema={"const": False})]
        | UnsetType
        | None
    ) = UNSET


class WebhookEndpointUpdateParams(_EndpointParams, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/webhook_endpoints/{webhook_endpoint}."""

    url: Url | UnsetType = UNSET
    enabled_events: EnabledEvents | UnsetType = UNSET
    disabled: Annotated[bool, Meta(description="Disable or re-enable delivery.")] | UnsetType = UNSET


class WebhookEventRetryParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/events/{event}/retry (an extension)."""

    webhook_endpoint: Annotated[str, Meta(min_length=1, pattern=NO_NUL)]
    expand: Expand | UnsetType | None = UNSET


class WebhookEndpointRecoverParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/webhook_endpoints/{webhook_endpoint}/recover (an extension)."""

    since: Annotated[Seconds, Meta(description="Unix seconds: events created at or after.")]
    until: Annotated[Seconds, Meta(description="Unix seconds: events created before.")] | UnsetType | None = UNSET
    expand: Expand | UnsetType | None = UNSET


class WebhookEndpointRollSecretParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/webhook_endpoints/{webhook_endpoint}/roll_secret (an extension)."""

    expire_previous_in: (
        Annotated[
            int,
            Meta(ge=0, le=MAX_SECRET_OVERLAP_S, description="Seconds the previous secret keeps signing (default 0)."),
        ]
        | UnsetType
        | None
    ) = UNSET
    expand: Expand | UnsetType | None = UNSET


# The types the document's schemas are generated from, by component name.
WEBHOOK_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    "webhook_endpoint": WebhookEndpoint,
    "webhook_endpoint_created": WebhookEndpointCreated,
    "deleted_webhook_endpoint": DeletedWebhookEndpoint,
    "webhook_endpoint_recovery": WebhookEndpointRecovery,
    "webhook_attempt": WebhookAttempt,
}
WEBHOOK_PARAMS: Final[dict[str, type[msgspec.Struct]]] = {
    "webhook_endpoint_create_params": WebhookEndpointCreateParams,
    "webhook_endpoint_update_params": WebhookEndpointUpdateParams,
    "webhook_event_retry_params": WebhookEventRetryParams,
    "webhook_endpoint_recover_params": WebhookEndpointRecoverParams,
    "webhook_endpoint_roll_secret_params": WebhookEndpointRollSecretParams,
}
