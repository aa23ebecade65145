"""The customer aggregate's events. Stored forever: they tolerate unknown fields and carry a
schema_version (domain/upcasting.py)."""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from ledgerd.domain.values import Address, InvoiceSettings, Profile, Shipping


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="event_type"):
    schema_version: int = 1
    customer_id: str


class CustomerChanges(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A sparse set of customer fields: only the fields present were changed."""

    email: str | UnsetType | None = UNSET
    name: str | UnsetType | None = UNSET
    phone: str | UnsetType | None = UNSET
    description: str | UnsetType | None = UNSET
    business_name: str | UnsetType | None = UNSET
    individual_name: str | UnsetType | None = UNSET
    address: Address | UnsetType | None = UNSET
    shipping: Shipping | UnsetType | None = UNSET
    invoice_prefix: str | UnsetType = UNSET
    invoice_settings: InvoiceSettings | UnsetType = UNSET
    next_invoice_sequence: int | UnsetType = UNSET
    preferred_locales: tuple[str, ...] | UnsetType = UNSET
    tax_exempt: str | UnsetType = UNSET
    metadata: dict[str, str] | UnsetType = UNSET
    external_id: str | UnsetType | None = UNSET
    currency: str | UnsetType | None = UNSET


class CustomerCreated(Event, frozen=True, kw_only=True, tag="CustomerCreated"):
    account: str
    livemode: bool
    created: int  # unix seconds
    profile: Profile
    currency: str | None = None


class CustomerUpdated(Event, frozen=True, kw_only=True, tag="CustomerUpdated"):
    changes: CustomerChanges
    previous: CustomerChanges


class CustomerDeleted(Event, frozen=True, kw_only=True, tag="CustomerDeleted"):
    deleted_at: int  # unix seconds


class BalanceAdjusted(Event, frozen=True, kw_only=True, tag="BalanceAdjusted"):
    transaction_id: str
    amount: int
    currency: str
    type: str  # "initial" | "adjustment"
    ending_balance: int
    description: str | None = None
    metadata: dict[str, str] = {}
    created: int  # unix seconds


class TransactionChanges(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    description: str | UnsetType | None = UNSET
    metadata: dict[str, str] | UnsetType = UNSET


class BalanceTransactionUpdated(Event, frozen=True, kw_only=True, tag="BalanceTransactionUpdated"):
    transaction_id: str
    changes: TransactionChanges
    previous: TransactionChanges


AnyEvent = CustomerCreated | CustomerUpdated | CustomerDeleted | BalanceAdjusted | BalanceTransactionUpdated
EVENT_TYPES: dict[str, type[AnyEvent]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (CustomerCreated, CustomerUpdated, CustomerDeleted, BalanceAdjusted, BalanceTransactionUpdated)
}
