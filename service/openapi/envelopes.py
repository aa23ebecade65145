"""The wire shapes around the objects: list pages, the search result, the customer's history, and the
status body of the health checks. Their schemas are generated like the objects' (`schemas.py`)."""

from __future__ import annotations

from typing import Annotated, Any, Final, Generic, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ledgerd.projections.objects import Customer, CustomerBalanceTransaction, Event
from ledgerd.service.params import MAX_LIMIT
from ledgerd.service.webhooks.wire import WebhookAttempt, WebhookEndpoint

__all__ = ["ENVELOPES"]

Item = TypeVar("Item")
TotalCount = Annotated[int, Meta(ge=0, description="With `expand[]=total_count`: every match, whatever the page.")]


class _Page(msgspec.Struct, Generic[Item], frozen=True, kw_only=True):
    object: Literal["list"] = "list"
    data: Annotated[list[Item], Meta(max_length=MAX_LIMIT)]
    has_more: bool
    url: str


class _List(_Page[Item], Generic[Item], frozen=True, kw_only=True):
    total_count: TotalCount | UnsetType = UNSET  # expand[] only (service/expand.py)


class CustomerList(_List[Customer], frozen=True, kw_only=True):
    """One page, newest first."""

    url: Literal["/v1/customers"]


class CustomerBalanceTransactionList(_List[CustomerBalanceTransaction], frozen=True, kw_only=True):
    """One page, newest first."""

    url: Annotated[str, Meta(pattern="^/v1/customers/[^/]+/balance_transactions$")]


class EventList(_List[Event], frozen=True, kw_only=True):
    """One page, newest first."""

    url: Literal["/v1/events"]


class WebhookEndpointList(_List[WebhookEndpoint], frozen=True, kw_only=True):
    """One page, newest first."""

    url: Literal["/v1/webhook_endpoints"]


class WebhookAttemptList(_List[WebhookAttempt], frozen=True, kw_only=True):
    """One page, newest first."""

    url: Annotated[str, Meta(pattern="^/v1/(webhook_endpoints|events)/[^/]+/attempts$")]


class CustomerSearchResult(msgspec.Struct, frozen=True, kw_only=True):
    """One page of the customers matching a search query."""

    object: Literal["search_result"] = "search_result"
    data: Annotated[list[Customer], Meta(max_length=MAX_LIMIT)]
    has_more: bool
    next_page: Annotated[str, Meta(min_length=1)] | None
    url: Literal["/v1/customers/search"]
    total_count: TotalCount | UnsetType = UNSET


class CustomerHistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the customer's stream, with the fields it changed (an extension)."""

    id: Annotated[str, Meta(description="The event's id: the cursor of the list.")]
    object: Literal["customer_history_entry"] = "customer_history_entry"
    version: Annotated[int, Meta(ge=1)]
    type: str
    event_id: str
    schema_version: Annotated[int, Meta(ge=1)]
    recorded_at: int
    recorded_at_us: int
    balance_transaction: str | None
    changes: dict[str, Any]
    request_id: str | None
    idempotency_key: str | None
    hash: Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]


class CustomerHistory(_Page[CustomerHistoryEntry], frozen=True, kw_only=True):
    """One page of the customer's events, oldest first."""

    url: Annotated[str, Meta(pattern="^/v1/customers/[^/]+/history$")]


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """The health checks' body."""

    status: Literal["ok", "ready"]


# The envelopes the document's schemas are generated from, by component name.
ENVELOPES: Final[dict[str, type[msgspec.Struct]]] = {
    "customer_list": CustomerList,
    "customer_balance_transaction_list": CustomerBalanceTransactionList,
    "event_list": EventList,
    "webhook_endpoint_list": WebhookEndpointList,
    "webhook_attempt_list": WebhookAttemptList,
    "customer_search_result": CustomerSearchResult,
    "customer_history_entry": CustomerHistoryEntry,
    "customer_history": CustomerHistory,
    "status": Status,
}
