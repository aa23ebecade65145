"""Stripe-shaped response objects: their wire types, and their rendering from projection rows.

The types below are the one declaration of each object's fields: `service/openapi/` generates the
document's schemas from them (`msgspec.json.schema_components`), and the renderers below build each
object by walking the same fields. A field with no default comes from the projection row (under its
own name, unless a renderer names another source); a field with a default is a constant of this API
(`object`, and what Stripe has that a ledger never holds: `discount`, `test_clock`, ...); a field
defaulting to UNSET is only there when `expand[]` asks for it (service/expand.py adds it).

The renderers are shared by the HTTP responses and by the event feed projection, so an event's
`data.object` is exactly what the API returned then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import NODEFAULT, UNSET, Meta, UnsetType

from ledgerd.domain.limits import (
    MAX_CUSTOM_FIELDS,
    MAX_LOCALES,
    NO_NUL,
    AddressText,
    AmountTaxDisplay,
    BusinessName,
    CustomFieldName,
    CustomFieldValue,
    Description,
    Email,
    ExternalId,
    IndividualName,
    InvoicePrefix,
    InvoiceSequence,
    Locale,
    Metadata,
    Name,
    Phone,
    TaxExempt,
    Text5000,
    TransactionDescription,
)
from ledgerd.domain.money import ISO_4217_EXPONENTS, MAX_AMOUNT, MAX_BALANCE

__all__ = [
    "NO_NUL",
    "RESPONSE_OBJECTS",
    "Address",
    "Customer",
    "CustomerBalanceTransaction",
    "DeletedCustomer",
    "Event",
    "Metadata",
    "as_json",
    "customer_field_value",
    "render_balance_transaction",
    "render_customer",
    "render_deleted_customer",
    "render_event",
]

INT64_MIN: Final[int] = -(2**63)
INT64_MAX: Final[int] = 2**63 - 1
CURRENCIES: Final[list[str]] = sorted(ISO_4217_EXPONENTS)

# ---------------------------------------------------------------------------------------------------
# field types: the customer's, with their limits, are domain.limits'; these are the responses' own
# ---------------------------------------------------------------------------------------------------

ExternalIdField = Annotated[ExternalId, Meta(description="Extension: the caller's own id (upsert).")]
CustomerId = Annotated[str, Meta(pattern="^cus_[A-Za-z0-9]+$")]
TransactionId = Annotated[str, Meta(pattern="^cbtxn_[A-Za-z0-9]+$")]
UnixTime = Annotated[int, Meta(ge=INT64_MIN, le=INT64_MAX, description="Unix time in seconds.")]
Currency = Annotated[str, Meta(description="Lowercase ISO 4217 code.", extra_json_schema={"enum": CURRENCIES})]
Balance = Annotated[
    int, Meta(ge=-MAX_BALANCE, le=MAX_BALANCE, description="Minor units; positive means the customer owes you.")
]
Amount = Annotated[
    int,
    Meta(
        ge=-MAX_AMOUNT,
        le=MAX_AMOUNT,
        description="Minor units; negative credits the customer. An `initial` or `adjustment` entry written by "
        "setting `balance` holds the difference between the two balances.",
    ),
]

# ---------------------------------------------------------------------------------------------------
# the objects
# ---------------------------------------------------------------------------------------------------


class Address(msgspec.Struct, frozen=True, kw_only=True):
    """A postal address; every field is present, null when not set."""

    city: AddressText | None
    country: AddressText | None
    line1: AddressText | None
    line2: AddressText | None
    postal_code: AddressText | None
    state: AddressText | None


class Shipping(msgspec.Struct, frozen=True, kw_only=True):
    """Shipping details."""

    address: Address
    carrier: None = None
    name: Text5000 | None
    phone: Text5000 | None
    tracking_number: None = None


class CustomField(msgspec.Struct, frozen=True, kw_only=True):
    """A custom field shown on the customer's invoices."""

    name: CustomFieldName
    value: CustomFieldValue


class RenderingOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How the customer's invoices are rendered."""

    amount_tax_display: AmountTaxDisplay | None
    template: Text5000 | None


class InvoiceSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The customer's default invoice settings."""

    custom_fields: Annotated[list[CustomField], Meta(max_length=MAX_CUSTOM_FIELDS)] | None
    default_payment_method: None = None
    footer: Text5000 | None
    rendering_options: RenderingOptions | None


class CustomerTax(msgspec.Struct, frozen=True, kw_only=True):
    """A customer's tax details (expandable): no location is known here."""

    automatic_tax: Literal["unrecognized_location"]
    ip_address: None
    location: None
    provider: Literal["stripe"]


class EmbeddedList(msgspec.Struct, frozen=True, kw_only=True):
    """An expandable list of objects this API does not have: always empty."""

    object: Literal["list"]
    data: Annotated[list[None], Meta(max_length=0)]
    has_more: Literal[False]
    total_count: Literal[0]
    url: Annotated[str, Meta(pattern="^/v1/customers/[^/]+/[a-z_]+$")]


class Customer(msgspec.Struct, frozen=True, kw_only=True):
    """A customer (Stripe's `customer` object); the last five fields only when expanded."""

    id: CustomerId
    object: Literal["customer"] = "customer"
    address: Address | None
    balance: Balance
    business_name: BusinessName | None
    created: UnixTime
    currency: Currency | None
    customer_account: None = None
    default_source: None = None
    delinquent: bool = False
    description: Description | None
    discount: None = None
    email: Email | None
    external_id: ExternalIdField | None
    individual_name: IndividualName | None
    invoice_prefix: InvoicePrefix
    invoice_settings: InvoiceSettings
    livemode: bool
    metadata: Metadata
    name: Name | None
    next_invoice_sequence: InvoiceSequence
    phone: Phone | None
    preferred_locales: Annotated[list[Locale], Meta(max_length=MAX_LOCALES)]
    shipping: Shipping | None
    tax_exempt: TaxExempt
    test_clock: None = None
    # expand[] only (service/expand.py)
    invoice_credit_balance: (
        Annotated[
            dict[str, int],
            Meta(description="Currency -> credit; positive = credit (the opposite sign of `balance`)."),
        ]
        | UnsetType
    ) = UNSET
    tax: CustomerTax | UnsetType = UNSET
    tax_ids: EmbeddedList | UnsetType = UNSET
    sources: EmbeddedList | UnsetType = UNSET
    subscriptions: EmbeddedList | UnsetType = UNSET


class DeletedCustomer(msgspec.Struct, frozen=True, kw_only=True):
    """What DELETE returns, and what a later GET of the customer returns."""

    id: CustomerId
    object: Literal["customer"] = "customer"
    deleted: Literal[True] = True


class CustomerBalanceTransaction(msgspec.Struct, frozen=True, kw_only=True):
    """One ledger entry; `ending_balance` = previous balance + `amount`."""

    id: TransactionId
    object: Literal["customer_balance_transaction"] = "customer_balance_transaction"
    amount: Amount
    checkout_session: None = None
    created: UnixTime
    credit_note: None = None
    currency: Currency
    customer: Annotated[CustomerId | Customer, Meta(description="Expandable.")]
    customer_account: None = None
    description: TransactionDescription | None
    ending_balance: Balance
    invoice: None = None
    livemode: bool
    metadata: Metadata
    type: Literal["adjustment", "initial"]


EventType = Literal[
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer_balance_transaction.created",
    "customer_balance_transaction.updated",
]


class EventData(msgspec.Struct, frozen=True, kw_only=True):
    """The object as it was after the change, and (`*.updated`) the old values of what changed. Which
    object goes with which event type: service/openapi/responses.py's EVENT_PAYLOADS."""

    object: dict[str, Any]
    previous_attributes: dict[str, Any] | UnsetType = UNSET


class EventRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The API request that caused the event."""

    id: str | None
    idempotency_key: str | None


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """A Stripe event. `customer_balance_transaction.*` are extensions."""

    id: Annotated[str, Meta(pattern="^evt_[A-Za-z0-9]+$")]
    object: Literal["event"] = "event"
    account: str
    api_version: Annotated[
        str, Meta(description="The API version `data` is rendered at: the account's default version.")
    ]  # its values: service/versions.py
    created: UnixTime
    data: EventData
    livemode: bool
    pending_webhooks: Annotated[
        int, Meta(ge=0, le=2**31 - 1, description="Webhook deliveries of this event not yet successful.")
    ]
    request: EventRequest
    type: EventType


# The objects the document's schemas are generated from, by component name.
RESPONSE_OBJECTS: Final[dict[str, type[msgspec.Struct]]] = {
    "address": Address,
    "shipping": Shipping,
    "custom_field": CustomField,
    "rendering_options": RenderingOptions,
    "invoice_settings": InvoiceSettings,
    "customer_tax": CustomerTax,
    "embedded_list": EmbeddedList,
    "customer": Customer,
    "deleted_customer": DeletedCustomer,
    "customer_balance_transaction": CustomerBalanceTransaction,
    "event_data": EventData,
    "event_request": EventRequest,
    "event": Event,
}

# ---------------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------------

_JSON_TEXT = (str, bytes, msgspec.Raw)

Source = Mapping[str, Any]
Getter = Callable[[Source], Any]


def as_json(value: Any) -> Any:
    """jsonb arrives as text from asyncpg unless a codec is set; the projections' in-memory rows hold
    documents (and msgspec.Raw for a JSON null); accept all."""
    return msgspec.json.decode(value) if isinstance(value, _JSON_TEXT) else value


def _constant(value: Any) -> Getter:
    return lambda _source: value


def _item(name: str) -> Getter:
    return lambda source: source[name]


def _entry(name: str) -> Getter:
    return lambda source: source.get(name)


def _json_item(name: str) -> Getter:
    return lambda source: as_json(source[name])


def _plan(
    cls: type[msgspec.Struct], getters: Mapping[str, Getter], default: Callable[[str], Getter]
) -> tuple[tuple[str, Getter], ...]:
    """How to render each field of `cls`, in its order: a constant for a field with a default, the
    named getter (else `default(name)`) for a field without; expand-only (UNSET) fields are left out."""
    plan: list[tuple[str, Getter]] = []
    for field in msgspec.structs.fields(cls):
        if field.default is UNSET:
            continue
        if field.default is NODEFAULT and field.default_factory is NODEFAULT:
            plan.append((field.name, getters.get(field.name) or default(field.name)))
        else:
            plan.append((field.name, _constant(field.default)))
    return tuple(plan)


_SHIPPING: Final = _plan(Shipping, {}, _entry)
_INVOICE_SETTINGS: Final = _plan(InvoiceSettings, {}, _entry)


def render_shipping(value: Any) -> dict[str, Any] | None:
    shipping = as_json(value)
    if shipping is None:
        return None
    return {name: get(shipping) for name, get in _SHIPPING}


def render_invoice_settings(value: Any) -> dict[str, Any]:
    settings = as_json(value) or {}
    return {name: get(settings) for name, get in _INVOICE_SETTINGS}


_CUSTOMER: Final = _plan(
    Customer,
    {
        "address": _json_item("address"),
        "metadata": _json_item("metadata"),
        "preferred_locales": _json_item("preferred_locales"),
        "shipping": lambda row: render_shipping(row["shipping"]),
        "invoice_settings": lambda row: render_invoice_settings(row["invoice_settings"]),
    },
    _item,
)
_BALANCE_TRANSACTION: Final = _plan(
    CustomerBalanceTransaction,
    {"customer": _item("customer_id"), "metadata": _json_item("metadata")},
    _item,
)
_DELETED_CUSTOMER: Final = _plan(DeletedCustomer, {}, _item)


def render_customer(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: get(row) for name, get in _CUSTOMER}


def render_deleted_customer(customer_id: str) -> dict[str, Any]:
    return {name: get({"id": customer_id}) for name, get in _DELETED_CUSTOMER}


def render_balance_transaction(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: get(row) for name, get in _BALANCE_TRANSACTION}


_EVENT: Final = _plan(
    Event,
    {
        "api_version": _constant(None),  # set at the version it is rendered at (service.versions.render_at)
        "data": _json_item("data"),
        "pending_webhooks": _constant(0),  # counted when served (service.webhooks.events.with_pending)
        "request": _json_item("request"),
    },
    _item,
)


def render_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `stripe_events` row as the event object, before its version and pending count are filled in."""
    return {name: get(row) for name, get in _EVENT}


def customer_field_value(name: str, value: Any) -> Any:
    """A field of CustomerChanges rendered the way the customer object shows it."""
    if name == "shipping":
        return render_shipping(value)
    if name == "invoice_settings":
        return render_invoice_settings(value)
    return value
