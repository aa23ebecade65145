"""The table of operations the document's paths are built from (`document.paths`), in the document's
order: each row names its path, method, operationId, summary, tag, request and response wire types,
query parameters and error statuses. The router is `service/routes/` and `service/webhooks/`;
`tests/e2e/test_openapi.py` holds the two equal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec

from ledgerd.projections import objects
from ledgerd.service import expand, params, wire
from ledgerd.service.openapi import envelopes
from ledgerd.service.openapi.parameters import (
    JSON,
    READ_ERRORS,
    WRITE_ERRORS,
    as_of_query,
    created_query,
    expand_query,
    limit_query,
    list_query,
    query,
)
from ledgerd.service.openapi.schemas import Schema, integer, text
from ledgerd.service.webhooks import wire as webhooks

OPENAPI_PATH: Final[str] = "/openapi.json"
READ_404: Final[tuple[int, ...]] = (*READ_ERRORS, 404)


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One documented operation. `response` is the 200 body: a wire type, a component name, or (with
    `media`) an inline schema."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    response: type[msgspec.Struct] | str | Schema
    response_description: str
    request: type[msgspec.Struct] | None = None
    request_required: bool = False
    example: dict[str, Any] | None = None
    query: tuple[Schema, ...] = ()
    errors: tuple[int, ...] = READ_ERRORS
    idempotent: bool = False  # takes an Idempotency-Key; the 200 then says whether it was a replay
    public: bool = False  # no API key
    media: str = JSON


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

CUSTOMERS, TRANSACTIONS, EVENTS = "Customers", "Customer balance transactions", "Events"
ENDPOINTS, OPERATIONS = "Webhook endpoints", "Operations"
CUSTOMER = "/v1/customers/{customer}"
TRANSACTION = CUSTOMER + "/balance_transactions"
ENDPOINT = "/v1/webhook_endpoints/{webhook_endpoint}"


def customer_operations() -> tuple[Operation, ...]:
    return (
        Operation(
            method="post", path="/v1/customers", operation_id="PostCustomers", tag=CUSTOMERS,
            summary="Create a customer (or, with a known external_id, update it)",
            request=wire.CustomerCreateParams, example=CUSTOMER_EXAMPLE,
            response=objects.Customer, response_description="The customer.",
            errors=WRITE_ERRORS, idempotent=True,
        ),
        Operation(
            method="get", path="/v1/customers", operation_id="GetCustomers", tag=CUSTOMERS,
            summary="List customers, newest first",
            response=envelopes.CustomerList, response_description="A page of customers.",
            query=list_query(
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
        Operation(
            method="get", path="/v1/customers/search", operation_id="GetCustomersSearch", tag=CUSTOMERS,
            summary="Search customers (consistent immediately)",
            response=envelopes.CustomerSearchResult, response_description="Matching customers.",
            query=(
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
            ),
        ),
        Operation(
            method="get", path=CUSTOMER, operation_id="GetCustomersCustomer", tag=CUSTOMERS,
            summary="Retrieve a customer (a deleted one as a stub)",
            response="customer_or_deleted", response_description="The customer.",
            query=(expand_query(expand.CUSTOMER), as_of_query()), errors=READ_404,
        ),
        Operation(
            method="post", path=CUSTOMER, operation_id="PostCustomersCustomer", tag=CUSTOMERS,
            summary="Update a customer",
            request=wire.CustomerUpdateParams, example={"metadata": {"plan": ""}},
            response=objects.Customer, response_description="The updated customer.",
            errors=WRITE_ERRORS, idempotent=True,
        ),
        Operation(
            method="delete", path=CUSTOMER, operation_id="DeleteCustomersCustomer", tag=CUSTOMERS,
            summary="Delete a customer",
            response=objects.DeletedCustomer, response_description="The deleted customer.",
            query=(expand_query(expand.CUSTOMER),), errors=WRITE_ERRORS, idempotent=True,
        ),
        Operation(
            method="post", path=TRANSACTION, operation_id="PostCustomersCustomerBalanceTransactions", tag=TRANSACTIONS,
            summary="Credit or debit a customer's balance",
            request=wire.TransactionCreateParams, request_required=True, example=TRANSACTION_EXAMPLE,
            response=objects.CustomerBalanceTransaction, response_description="The new ledger entry.",
            errors=WRITE_ERRORS, idempotent=True,
        ),
        Operation(
            method="get", path=TRANSACTION, operation_id="GetCustomersCustomerBalanceTransactions", tag=TRANSACTIONS,
            summary="List a customer's balance transactions, newest first",
            response=envelopes.CustomerBalanceTransactionList, response_description="A page of ledger entries.",
            query=list_query(
                created_query(),
                query("invoice", text(), "Accepted and ignored: there are no invoices."),
                as_of_query(),
                expand_root=expand.BALANCE_TRANSACTION_LIST,
            ),
            errors=READ_404,
        ),
        Operation(
            method="get", path=CUSTOMER + "/history", operation_id="GetCustomersCustomerHistory", tag=CUSTOMERS,
            summary="The customer's events in order, oldest first, with what each changed (an extension)",
            response=envelopes.CustomerHistory, response_description="A page of the customer's events.",
            query=(
                limit_query(),
                query("starting_after", text(), "Cursor: an entry's id; the page after it (later events)."),
                query("ending_before", text(), "Cursor: an entry's id; the page before it (earlier events)."),
                expand_query(),
            ),
            errors=READ_404,
        ),
        Operation(
            method="get", path=TRANSACTION + "/{transaction}", tag=TRANSACTIONS,
            operation_id="GetCustomersCustomerBalanceTransactionsTransaction",
            summary="Retrieve a balance transaction",
            response=objects.CustomerBalanceTransaction, response_description="The ledger entry.",
            query=(expand_query(expand.BALANCE_TRANSACTION),), errors=READ_404,
        ),
        Operation(
            method="post", path=TRANSACTION + "/{transaction}", tag=TRANSACTIONS,
            operation_id="PostCustomersCustomerBalanceTransactionsTransaction",
            summary="Update a balance transaction's description and metadata",
            request=wire.TransactionUpdateParams,
            response=objects.CustomerBalanceTransaction, response_description="The ledger entry.",
            errors=WRITE_ERRORS, idempotent=True,
        ),
    )


def event_operations() -> tuple[Operation, ...]:
    return (
        Operation(
            method="get", path="/v1/events", operation_id="GetEvents", tag=EVENTS,
            summary="List events, newest first",
            response=envelopes.EventList, response_description="A page of events.",
            query=list_query(
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
        Operation(
            method="get", path="/v1/events/{event}", operation_id="GetEventsEvent", tag=EVENTS,
            summary="Retrieve an event",
            response=objects.Event, response_description="The event.",
            query=(expand_query(),), errors=READ_404,
        ),
    )


def webhook_operations() -> tuple[Operation, ...]:
    attempts = (
        limit_query(),
        query("starting_after", text(), "Cursor: an attempt id (`wha_…`); the older attempts."),
        expand_query(),
    )
    return (
        Operation(
            method="post", path="/v1/webhook_endpoints", operation_id="PostWebhookEndpoints", tag=ENDPOINTS,
            summary="Create a webhook endpoint (the response carries its signing secret, once)",
            request=webhooks.WebhookEndpointCreateParams, request_required=True,
            example={"url": "https://example.com/hooks", "enabled_events": ["customer.created"]},
            response=webhooks.WebhookEndpointCreated, response_description="The new endpoint.",
            errors=WRITE_ERRORS, idempotent=True,
        ),
        Operation(
            method="get", path="/v1/webhook_endpoints", operation_id="GetWebhookEndpoints", tag=ENDPOINTS,
            summary="List webhook endpoints, newest first",
            response=envelopes.WebhookEndpointList, response_description="A page of endpoints.",
            query=list_query(),
        ),
        Operation(
            method="get", path=ENDPOINT, operation_id="GetWebhookEndpointsWebhookEndpoint", tag=ENDPOINTS,
            summary="Retrieve a webhook endpoint",
            response=webhooks.WebhookEndpoint, response_description="The endpoint.",
            query=(expand_query(),), errors=READ_404,
        ),
        Operation(
            method="post", path=ENDPOINT, operation_id="PostWebhookEndpointsWebhookEndpoint", tag=ENDPOINTS,
            summary="Update a webhook endpoint",
            request=webhooks.WebhookEndpointUpdateParams, example={"disabled": True},
            response=webhooks.WebhookEndpoint, response_description="The updated endpoint.",
            errors=WRITE_ERRORS, idempotent=True,
        ),
        Operation(
            method="delete", path=ENDPOINT, operation_id="DeleteWebhookEndpointsWebhookEndpoint", tag=ENDPOINTS,
            summary="Delete a webhook endpoint (its pending deliveries are cancelled)",
            response=webhooks.DeletedWebhookEndpoint, response_description="The deleted endpoint.",
            query=(expand_query(),), errors=WRITE_ERRORS, idempotent=True,
        ),
        # extensions
        Operation(
            method="post", path="/v1/events/{event}/retry", operation_id="PostEventsEventRetry", tag=EVENTS,
            summary="Extension: send an event to one endpoint again, now",
            request=webhooks.WebhookEventRetryParams, request_required=True,
            response=objects.Event, response_description="The event.", errors=WRITE_ERRORS,
        ),
        Operation(
            method="get", path="/v1/events/{event}/attempts", operation_id="GetEventsEventAttempts", tag=EVENTS,
            summary="Extension: the event's delivery attempts, newest first",
            response=envelopes.WebhookAttemptList, response_description="A page of attempts.",
            query=attempts, errors=READ_404,
        ),
        Operation(
            method="get", path=ENDPOINT + "/attempts", operation_id="GetWebhookEndpointsWebhookEndpointAttempts",
            tag=ENDPOINTS, summary="Extension: the endpoint's delivery attempts, newest first",
            response=envelopes.WebhookAttemptList, response_description="A page of attempts.",
            query=attempts, errors=READ_404,
        ),
        Operation(
            method="post", path=ENDPOINT + "/recover", operation_id="PostWebhookEndpointsWebhookEndpointRecover",
            tag=ENDPOINTS, summary="Extension: deliver again the events of a time range (backfill from the log)",
            request=webhooks.WebhookEndpointRecoverParams, request_required=True,
            response=webhooks.WebhookEndpointRecovery, response_description="What was queued.", errors=WRITE_ERRORS,
        ),
        Operation(
            method="post", path=ENDPOINT + "/roll_secret", tag=ENDPOINTS,
            operation_id="PostWebhookEndpointsWebhookEndpointRollSecret",
            summary="Extension: a new signing secret; the previous one signs too until it expires",
            request=webhooks.WebhookEndpointRollSecretParams,
            response=webhooks.WebhookEndpointCreated, response_description="The endpoint with its new secret.",
            errors=WRITE_ERRORS,
        ),
    )


def public_operations() -> tuple[Operation, ...]:
    """Health, metrics and this document: no API key."""
    return (
        Operation(
            method="get", path="/healthz", operation_id="GetHealthz", tag=OPERATIONS,
            summary="Liveness: the process is up",
            response=envelopes.Status, response_description='`{"status": "ok"}`', errors=(500,), public=True,
        ),
        Operation(
            method="get", path="/readyz", operation_id="GetReadyz", tag=OPERATIONS,
            summary="Readiness: the database answers",
            response=envelopes.Status, response_description='`{"status": "ready"}`', errors=(429, 500, 503),
            public=True,
        ),
        Operation(
            method="get", path="/metrics", operation_id="GetMetrics", tag=OPERATIONS,
            summary="Prometheus metrics",
            response={"type": "string"}, media="text/plain",
            response_description="Prometheus text exposition format.", errors=(500,), public=True,
        ),
        Operation(
            method="get", path=OPENAPI_PATH, operation_id="GetOpenapiJson", tag=OPERATIONS,
            summary="This OpenAPI document",
            response={"type": "object", "required": ["openapi", "paths"]},
            response_description="The OpenAPI 3.1 document.", errors=(500,), public=True,
        ),
    )


def operations() -> tuple[Operation, ...]:
    return (*customer_operations(), *event_operations(), *webhook_operations(), *public_operations())
