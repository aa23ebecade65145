"""The customer aggregate's commands: what a client asks for. Time and new ids arrive inside them, so
`decide` (domain/customer.py) needs no I/O."""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from ledgerd.domain.values import Address, CustomField, Profile, RenderingOptions, Shipping


class Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="command"):
    customer_id: str
    occurred_at: int  # unix time in microseconds, supplied by the caller's clock


class InvoiceSettingsPatch(msgspec.Struct, frozen=True, kw_only=True):
    custom_fields: tuple[CustomField, ...] | UnsetType | None = UNSET
    footer: str | UnsetType | None = UNSET
    rendering_options: RenderingOptions | UnsetType | None = UNSET


class ProfilePatch(msgspec.Struct, frozen=True, kw_only=True):
    """Fields left UNSET are unchanged; None unsets a nullable field."""

    email: str | UnsetType | None = UNSET
    name: str | UnsetType | None = UNSET
    phone: str | UnsetType | None = UNSET
    description: str | UnsetType | None = UNSET
    business_name: str | UnsetType | None = UNSET
    individual_name: str | UnsetType | None = UNSET
    address: Address | UnsetType | None = UNSET
    shipping: Shipping | UnsetType | None = UNSET
    invoice_prefix: str | UnsetType = UNSET
    invoice_settings: InvoiceSettingsPatch | UnsetType = UNSET
    next_invoice_sequence: int | UnsetType = UNSET
    preferred_locales: tuple[str, ...] | UnsetType = UNSET
    tax_exempt: str | UnsetType = UNSET
    # None (or an empty dict) clears every key; a None value removes one key; other keys are kept.
    metadata: dict[str, str | None] | UnsetType | None = UNSET
    external_id: str | UnsetType | None = UNSET


class CreateCustomer(Command, frozen=True, kw_only=True, tag="CreateCustomer"):
    account: str
    livemode: bool
    profile: Profile
    balance: int = 0
    currency: str | None = None
    initial_transaction_id: str | None = None  # required when balance != 0


class UpdateCustomer(Command, frozen=True, kw_only=True, tag="UpdateCustomer"):
    patch: ProfilePatch = ProfilePatch()
    balance: int | UnsetType = UNSET
    currency: str | UnsetType = UNSET
    adjustment_transaction_id: str | None = None  # required when balance changes
    # The account's default currency: what a balance change is in when the customer has no currency yet.
    default_currency: str | None = None


class DeleteCustomer(Command, frozen=True, kw_only=True, tag="DeleteCustomer"):
    pass


class AdjustBalance(Command, frozen=True, kw_only=True, tag="AdjustBalance"):
    transaction_id: str
    amount: int
    currency: str
    description: str | None = None
    metadata: dict[str, str] = {}


class UpdateBalanceTransaction(Command, frozen=True, kw_only=True, tag="UpdateBalanceTransaction"):
    transaction_id: str
    description: str | UnsetType | None = UNSET
    metadata: dict[str, str | None] | UnsetType | None = UNSET


AnyCommand = CreateCustomer | UpdateCustomer | DeleteCustomer | AdjustBalance | UpdateBalanceTransaction


class UpsertCustomer(msgspec.Struct, frozen=True, kw_only=True):
    """Create a customer, or update the live one that already has `create.profile.external_id`."""

    create: CreateCustomer
    update: UpdateCustomer  # its customer_id is replaced by the existing customer's id


def resolve_upsert(command: UpsertCustomer, existing_id: str | None) -> CreateCustomer | UpdateCustomer:
    if existing_id is None:
        return command.create
    return msgspec.structs.replace(command.update, customer_id=existing_id)
