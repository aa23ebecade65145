"""Request parameter types: what each write operation accepts, with its limits, declared once.

`service/openapi/` generates the request-body schemas from these types, and `service/params.py`
decodes each request through its type (`service.decoding`: a strict scalar pre-pass, because Stripe is
stricter than a lax decoder -- ``1.5``, ``1e3`` and ``true`` are not integers -- then `msgspec.convert`);
an unknown name is a 400 ``parameter_unknown``, one in `UNSUPPORTED_PARAMS` ``parameter_unsupported``.
``""`` (form) or null (JSON) means *unset*. In the types that reads as: a field typed ``X | None`` may be
sent as ``""`` or null; a field typed ``X`` may not (a required one is then ``parameter_missing``).
Every field defaults to UNSET (not sent) except the required ones.

The field types and their limits are the domain's (`domain.limits`, shared with the response types);
`domain.validation` checks the same limits on every command and rejects a value past one with the
Stripe error naming the parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ledgerd.domain.limits import (
    MAX_CUSTOM_FIELDS,
    MAX_LOCALES,
    METADATA_MAX_KEYS,
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
    MetadataKey,
    MetadataValue,
    Name,
    Phone,
    TaxExempt,
    Text5000,
    TransactionDescription,
)
from ledgerd.domain.money import MAX_AMOUNT, MAX_BALANCE
from ledgerd.projections.objects import CURRENCIES

__all__ = [
    "REQUEST_TYPES",
    "UNSUPPORTED_CUSTOMER_PARAMS",
    "UNSUPPORTED_PARAMS",
    "AddressParams",
    "CreatedParams",
    "CustomFieldParams",
    "CustomerCreateParams",
    "CustomerUpdateParams",
    "InvoiceSettingsParams",
    "ListQuery",
    "RenderingOptionsParams",
    "SearchQuery",
    "ShippingParams",
    "TransactionCreateParams",
    "TransactionUpdateParams",
    "field_names",
]

ExternalIdParam = Annotated[
    ExternalId,
    Meta(description="Extension. On create, a live customer with this external_id is updated and returned instead."),
]
# On a request, a metadata value of "" (or null) removes its key, and removals do not count against the
# limit: at most METADATA_MAX_KEYS values, twice as many keys.
MetadataParam = Annotated[
    dict[MetadataKey, MetadataValue | None], Meta(max_length=2 * METADATA_MAX_KEYS)
]
Expand = Annotated[list[str], Meta(description="Properties to expand.")]  # the paths: service/expand.py
BalanceParam = Annotated[
    int, Meta(ge=-MAX_AMOUNT, le=MAX_AMOUNT, description="Sets the balance; the difference becomes a ledger entry.")
]
CurrencyParam = Annotated[
    str, Meta(description="Extension: the balance's currency.", extra_json_schema={"enum": CURRENCIES})
]
NonEmpty5000 = Annotated[Text5000, Meta(min_length=1)]


class AddressParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    city: AddressText | UnsetType | None = UNSET
    country: AddressText | UnsetType | None = UNSET
    line1: AddressText | UnsetType | None = UNSET
    line2: AddressText | UnsetType | None = UNSET
    postal_code: AddressText | UnsetType | None = UNSET
    state: AddressText | UnsetType | None = UNSET


class ShippingParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    address: Annotated[AddressParams, Meta(extra_json_schema={"minProperties": 1})]
    name: Annotated[NonEmpty5000, Meta(description="The recipient's name.")]
    phone: Annotated[Text5000, Meta(description="The recipient's phone number.")] | UnsetType | None = UNSET


class CustomFieldParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[CustomFieldName, Meta(min_length=1)]
    value: Annotated[CustomFieldValue, Meta(min_length=1)]


class RenderingOptionsParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    amount_tax_display: AmountTaxDisplay | UnsetType | None = UNSET
    template: Text5000 | UnsetType | None = UNSET


class InvoiceSettingsParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`invoice_settings[default_payment_method]` is rejected (parameter_unsupported)."""

    custom_fields: (
        Annotated[list[CustomFieldParams], Meta(max_length=MAX_CUSTOM_FIELDS)] | UnsetType | None
    ) = UNSET
    footer: Text5000 | UnsetType | None = UNSET
    rendering_options: RenderingOptionsParams | UnsetType | None = UNSET


class _ProfileParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What customer create and update share."""

    email: Email | UnsetType | None = UNSET
    name: Name | UnsetType | None = UNSET
    phone: Phone | UnsetType | None = UNSET
    description: Description | UnsetType | None = UNSET
    business_name: BusinessName | UnsetType | None = UNSET
    individual_name: IndividualName | UnsetType | None = UNSET
    external_id: ExternalIdParam | UnsetType | None = UNSET
    address: AddressParams | UnsetType | None = UNSET
    shipping: ShippingParams | UnsetType | None = UNSET
    invoice_settings: InvoiceSettingsParams | UnsetType | None = UNSET
    preferred_locales: Annotated[list[Locale], Meta(max_length=MAX_LOCALES)] | UnsetType | None = UNSET
    tax_exempt: TaxExempt | UnsetType | None = UNSET


class CustomerCreateParams(_ProfileParams, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/customers."""

    balance: BalanceParam | UnsetType | None = UNSET
    currency: CurrencyParam | UnsetType | None = UNSET
    invoice_prefix: InvoicePrefix | UnsetType | None = UNSET
    next_invoice_sequence: InvoiceSequence | UnsetType | None = UNSET
    metadata: (
        Annotated[MetadataParam, Meta(description=f"Up to {METADATA_MAX_KEYS} key-value pairs for your own use.")] | UnsetType | None
    ) = UNSET
    expand: Expand | UnsetType | None = UNSET
    validate: Annotated[bool, Meta(description="Accepted and ignored (Stripe uses it to validate tax ids).")] | UnsetType | None = UNSET


class CustomerUpdateParams(_ProfileParams, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/customers/{customer}. `balance`, `currency`, `invoice_prefix` and `next_invoice_sequence`
    cannot be unset."""

    balance: Annotated[BalanceParam, Meta(description="Cannot be unset on update.")] | UnsetType = UNSET
    currency: CurrencyParam | UnsetType = UNSET
    invoice_prefix: InvoicePrefix | UnsetType = UNSET
    next_invoice_sequence: InvoiceSequence | UnsetType = UNSET
    metadata: (
        Annotated[MetadataParam, Meta(description='Merged into the existing metadata; a key set to "" is removed, and metadata="" clears all.')] | UnsetType | None
    ) = UNSET
    expand: Expand | UnsetType | None = UNSET
    validate: Annotated[bool, Meta(description="Accepted and ignored (Stripe uses it to validate tax ids).")] | UnsetType | None = UNSET


class TransactionCreateParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/customers/{customer}/balance_transactions."""

    amount: Annotated[
        int,
        Meta(
            ge=-MAX_AMOUNT,
            le=MAX_AMOUNT,
            description="Minor units: negative credits the customer, positive debits. Not zero. The resulting "
            f"balance must stay within +/-{MAX_BALANCE} (else 400 balance_overflow).",
            extra_json_schema={"not": {"const": 0}},
        ),
    ]
    currency: Annotated[
        str,
        Meta(
            description="The ledger it applies to: a customer has one per currency (its `balance` is its own "
            "currency's; expand `invoice_credit_balance` for all); the first one sets the customer's currency.",
            extra_json_schema={"enum": CURRENCIES},
        ),
    ]
    description: (
        Annotated[TransactionDescription, Meta(description="An arbitrary string attached to the entry.")] | UnsetType | None
    ) = UNSET
    metadata: Annotated[MetadataParam, Meta(description="Key-value pairs for your own use.")] | UnsetType | None = UNSET
    expand: Expand | UnsetType | None = UNSET


class TransactionUpdateParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/customers/{customer}/balance_transactions/{transaction}: only description and metadata."""

    description: TransactionDescription | UnsetType | None = UNSET
    metadata: MetadataParam | UnsetType | None = UNSET
    expand: Expand | UnsetType | None = UNSET


class CreatedParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A list's ``created`` bounds, in unix seconds."""

    gt: int | UnsetType | None = UNSET
    gte: int | UnsetType | None = UNSET
    lt: int | UnsetType | None = UNSET
    lte: int | UnsetType | None = UNSET


class ListQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A list's query: the pagination params and every filter (each list takes a subset of them:
    service/params.py's list_params). Its query parameters are still documented by hand."""

    limit: int | UnsetType | None = UNSET
    starting_after: str | UnsetType | None = UNSET
    ending_before: str | UnsetType | None = UNSET
    expand: list[str] | UnsetType | None = UNSET
    created: int | CreatedParams | UnsetType | None = UNSET  # created=T is created[gte]=T&created[lte]=T
    email: str | UnsetType | None = UNSET
    type: str | UnsetType | None = UNSET
    types: list[str] | UnsetType | None = UNSET
    invoice: str | UnsetType | None = UNSET
    test_clock: str | UnsetType | None = UNSET
    delivery_success: bool | UnsetType | None = UNSET


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """GET /v1/customers/search."""

    query: str
    limit: int | UnsetType | None = UNSET
    page: str | UnsetType | None = UNSET
    expand: list[str] | UnsetType | None = UNSET


# The request types the document's schemas are generated from, by component name.
REQUEST_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    "address_params": AddressParams,
    "shipping_params": ShippingParams,
    "custom_field_params": CustomFieldParams,
    "rendering_options_params": RenderingOptionsParams,
    "invoice_settings_params": InvoiceSettingsParams,
    "customer_create_params": CustomerCreateParams,
    "customer_update_params": CustomerUpdateParams,
    "customer_balance_transaction_create_params": TransactionCreateParams,
    "customer_balance_transaction_update_params": TransactionUpdateParams,
}


def field_names(cls: type[msgspec.Struct]) -> frozenset[str]:
    """The parameter names `cls` accepts."""
    return frozenset(cls.__struct_fields__)


# Stripe params that only make sense for a payments processor, by the type that would take them: they get
# a precise error instead of "unknown", so a client migrating from Stripe learns why.
UNSUPPORTED_CUSTOMER_PARAMS: Final[frozenset[str]] = frozenset(
    {
        "source",
        "payment_method",
        "default_source",
        "coupon",
        "promotion_code",
        "discounts",
        "test_clock",
        "tax_id_data",
        "cash_balance",
        "tax",
    }
)
UNSUPPORTED_PARAMS: Final[Mapping[type[msgspec.Struct], frozenset[str]]] = {
    CustomerCreateParams: UNSUPPORTED_CUSTOMER_PARAMS,
    CustomerUpdateParams: UNSUPPORTED_CUSTOMER_PARAMS,
    InvoiceSettingsParams: frozenset({"default_payment_method"}),
}
