"""Stateless checks of a command's parameters (Stripe's limits). They run before a command executes,
so a request rejected here writes nothing and is not recorded under its idempotency key."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from msgspec import UNSET

from ledgerd.domain import limits
from ledgerd.domain.customer import (
    AdjustBalance,
    AnyCommand,
    CreateCustomer,
    DeleteCustomer,
    InvoiceSettingsPatch,
    ProfilePatch,
    UpdateBalanceTransaction,
    UpdateCustomer,
)
from ledgerd.domain.errors import InvalidParameter
from ledgerd.domain.money import MAX_AMOUNT, amount_in_bounds, balance_in_bounds, normalize_currency
from ledgerd.domain.values import Address, CustomField, InvoiceSettings, Profile, RenderingOptions, Shipping

# Every limit is its type's (domain.limits): the document states exactly what is refused here.
MAX_LENGTHS: dict[str, int] = {name: limits.max_length(tp) for name, tp in limits.PROFILE_TEXT.items()}
ADDRESS_FIELD_MAX = limits.max_length(limits.AddressText)
SHIPPING_TEXT_MAX = limits.max_length(limits.Text5000)
FOOTER_MAX = limits.max_length(limits.Text5000)
TEMPLATE_MAX = limits.max_length(limits.Text5000)
CUSTOM_FIELD_NAME_MAX = limits.max_length(limits.CustomFieldName)
CUSTOM_FIELD_VALUE_MAX = limits.max_length(limits.CustomFieldValue)
TRANSACTION_DESCRIPTION_MAX = limits.max_length(limits.TransactionDescription)
METADATA_MAX_KEYS = limits.METADATA_MAX_KEYS
METADATA_KEY_MAX = limits.max_length(limits.MetadataKey)
METADATA_VALUE_MAX = limits.max_length(limits.MetadataValue)
INVOICE_PREFIX = limits.INVOICE_PREFIX
TAX_EXEMPT = frozenset(limits.choices(limits.TaxExempt))
AMOUNT_TAX_DISPLAY = frozenset(limits.choices(limits.AmountTaxDisplay))
MAX_CUSTOM_FIELDS = limits.MAX_CUSTOM_FIELDS
MAX_LOCALES = limits.MAX_LOCALES
LOCALE = limits.LOCALE
# An address as Stripe accepts one (else 400 email_invalid): an ASCII dot-atom local part, "@", and a
# domain of two or more DNS labels, so `x@com`, `@localhost`, a fullwidth at sign (U+FF20) or a stray space are refused.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")


def validate(command: AnyCommand) -> None:
    """Raise InvalidParameter naming the first bad parameter; return None when the command is well formed."""
    if isinstance(command, CreateCustomer):
        validate_profile(command.profile)
        validate_amount(command.balance, "balance")
        if command.currency is not None:
            validate_currency(command.currency)
    elif isinstance(command, UpdateCustomer):
        validate_patch(command.patch)
        if command.balance is not UNSET:
            validate_amount(command.balance, "balance")
        if command.currency is not UNSET:
            validate_currency(command.currency)
    elif isinstance(command, AdjustBalance):
        validate_amount(command.amount, "amount")
        if command.amount == 0:
            raise InvalidParameter("The amount of a balance transaction must not be zero.", param="amount")
        validate_currency(command.currency)
        validate_text(command.description, "description", TRANSACTION_DESCRIPTION_MAX)
        validate_metadata(command.metadata)
    elif isinstance(command, UpdateBalanceTransaction):
        if command.description is not UNSET:
            validate_text(command.description, "description", TRANSACTION_DESCRIPTION_MAX)
        if command.metadata is not UNSET and command.metadata is not None:
            validate_metadata(command.metadata)
    elif isinstance(command, DeleteCustomer):
        pass


def validate_amount(amount: int, param: str) -> None:
    if not amount_in_bounds(amount) or not balance_in_bounds(amount):
        raise InvalidParameter(
            f"Invalid {param}: the magnitude must be at most {MAX_AMOUNT} minor units.", param=param
        )


def validate_currency(currency: str) -> None:
    if normalize_currency(currency) != currency:
        raise InvalidParameter(
            f"Invalid currency: {currency!r}. Use a lowercase ISO 4217 code such as 'usd'.",
            param="currency",
            code="invalid_currency",
        )


def validate_text(value: str | None, param: str, max_length: int) -> None:
    if value is None:
        return
    if len(value) > max_length:
        raise InvalidParameter(f"Invalid {param}: must be at most {max_length} characters long.", param=param)
    if "\x00" in value:
        raise InvalidParameter(f"Invalid {param}: must not contain NUL characters.", param=param)


def validate_metadata(metadata: Mapping[str, str | None]) -> None:
    # A patch may name more keys than a customer keeps (removals are `None`); what is kept is
    # counted after merging (domain.customer.merge_metadata). Additions alone must fit.
    kept = sum(1 for value in metadata.values() if value is not None)
    if kept > METADATA_MAX_KEYS or len(metadata) > 2 * METADATA_MAX_KEYS:
        raise InvalidParameter(
            f"Metadata can have at most {METADATA_MAX_KEYS} keys; received {kept} values in {len(metadata)} keys.",
            param="metadata",
        )
    for key, value in metadata.items():
        param = f"metadata[{key}]"
        if not key or len(key) > METADATA_KEY_MAX or "[" in key or "]" in key or "\x00" in key:
            raise InvalidParameter(
                f"Invalid metadata key {key!r}: keys are 1 to {METADATA_KEY_MAX} characters and may not "
                "contain '[' or ']'.",
                param=param,
            )
        validate_text(value, param, METADATA_VALUE_MAX)


def validate_email(email: str | None) -> None:
    if email is not None and not EMAIL.fullmatch(email):
        shown = email if len(email) <= 100 else email[:100] + "..."
        raise InvalidParameter(f"Invalid email address: {shown}", param="email", code="email_invalid")


def validate_profile(profile: Profile) -> None:
    for field, max_length in MAX_LENGTHS.items():
        if field in Profile.__struct_fields__:
            validate_text(getattr(profile, field), field, max_length)
    validate_email(profile.email)
    validate_address(profile.address, "address")
    validate_shipping(profile.shipping)
    validate_invoice_prefix(profile.invoice_prefix)
    validate_invoice_settings(profile.invoice_settings)
    validate_sequence(profile.next_invoice_sequence)
    validate_locales(profile.preferred_locales)
    validate_tax_exempt(profile.tax_exempt)
    validate_metadata(profile.metadata)


def validate_patch(patch: ProfilePatch) -> None:
    for field, max_length in MAX_LENGTHS.items():
        value = getattr(patch, field, UNSET)
        if value is not UNSET:
            validate_text(value, field, max_length)
    if patch.email is not UNSET:
        validate_email(patch.email)
    if patch.address is not UNSET:
        validate_address(patch.address, "address")
    if patch.shipping is not UNSET:
        validate_shipping(patch.shipping)
    if patch.invoice_prefix is not UNSET:
        validate_invoice_prefix(patch.invoice_prefix)
    if patch.invoice_settings is not UNSET:
        validate_invoice_settings_patch(patch.invoice_settings)
    if patch.next_invoice_sequence is not UNSET:
        validate_sequence(patch.next_invoice_sequence)
    if patch.preferred_locales is not UNSET:
        validate_locales(patch.preferred_locales)
    if patch.tax_exempt is not UNSET:
        validate_tax_exempt(patch.tax_exempt)
    if patch.metadata is not UNSET and patch.metadata is not None:
        validate_metadata(patch.metadata)


def validate_address(address: Address | None, param: str) -> None:
    if address is None:
        return
    for field in Address.__struct_fields__:
        validate_text(getattr(address, field), f"{param}[{field}]", ADDRESS_FIELD_MAX)


def validate_shipping(shipping: Shipping | None) -> None:
    if shipping is None:
        return
    validate_address(shipping.address, "shipping[address]")
    validate_text(shipping.name, "shipping[name]", SHIPPING_TEXT_MAX)
    validate_text(shipping.phone, "shipping[phone]", SHIPPING_TEXT_MAX)


def validate_invoice_prefix(prefix: str) -> None:
    if INVOICE_PREFIX.fullmatch(prefix) is None:
        raise InvalidParameter(
            "Invalid invoice_prefix: use 1 to 12 uppercase letters or numbers.", param="invoice_prefix"
        )


def validate_custom_fields(fields: Iterable[CustomField] | None) -> None:
    if fields is None:
        return
    items = list(fields)
    if len(items) > MAX_CUSTOM_FIELDS:
        raise InvalidParameter(
            f"invoice_settings[custom_fields] takes at most {MAX_CUSTOM_FIELDS} entries.",
            param="invoice_settings[custom_fields]",
        )
    for index, item in enumerate(items):
        validate_text(item.name, f"invoice_settings[custom_fields][{index}][name]", CUSTOM_FIELD_NAME_MAX)
        validate_text(item.value, f"invoice_settings[custom_fields][{index}][value]", CUSTOM_FIELD_VALUE_MAX)


def validate_rendering(options: RenderingOptions | None) -> None:
    if options is None:
        return
    validate_text(options.template, "invoice_settings[rendering_options][template]", TEMPLATE_MAX)
    display = options.amount_tax_display
    if display is not None and display not in AMOUNT_TAX_DISPLAY:
        raise InvalidParameter(
            "invoice_settings[rendering_options][amount_tax_display] must be one of: "
            + ", ".join(sorted(AMOUNT_TAX_DISPLAY)),
            param="invoice_settings[rendering_options][amount_tax_display]",
        )


def validate_invoice_settings(settings: InvoiceSettings) -> None:
    validate_custom_fields(settings.custom_fields)
    validate_text(settings.footer, "invoice_settings[footer]", FOOTER_MAX)
    validate_rendering(settings.rendering_options)


def validate_invoice_settings_patch(patch: InvoiceSettingsPatch) -> None:
    if patch.custom_fields is not UNSET:
        validate_custom_fields(patch.custom_fields)
    if patch.footer is not UNSET:
        validate_text(patch.footer, "invoice_settings[footer]", FOOTER_MAX)
    if patch.rendering_options is not UNSET:
        validate_rendering(patch.rendering_options)


def validate_sequence(sequence: int) -> None:
    if not limits.MIN_INVOICE_SEQUENCE <= sequence <= limits.MAX_INVOICE_SEQUENCE:
        raise InvalidParameter(
            f"next_invoice_sequence must be between {limits.MIN_INVOICE_SEQUENCE} and "
            f"{limits.MAX_INVOICE_SEQUENCE}.",
            param="next_invoice_sequence",
        )


def validate_locales(locales: tuple[str, ...]) -> None:
    if len(locales) > MAX_LOCALES:
        raise InvalidParameter(
            f"preferred_locales takes at most {MAX_LOCALES} entries.", param="preferred_locales"
        )
    for index, locale in enumerate(locales):
        if LOCALE.fullmatch(locale) is None:
            raise InvalidParameter(f"Invalid locale: {locale!r}.", param=f"preferred_locales[{index}]")


def validate_tax_exempt(value: str) -> None:
    if value not in TAX_EXEMPT:
        raise InvalidParameter(
            f"Invalid tax_exempt: {value!r}; must be one of {', '.join(limits.choices(limits.TaxExempt))}.",
            param="tax_exempt",
        )
