"""Value objects shared by commands, events and state. Stored events embed them, so they tolerate
unknown fields (no forbid_unknown_fields) and never change meaning once written."""

from __future__ import annotations

import msgspec


class Address(msgspec.Struct, frozen=True, kw_only=True):
    city: str | None = None
    country: str | None = None
    line1: str | None = None
    line2: str | None = None
    postal_code: str | None = None
    state: str | None = None


class Shipping(msgspec.Struct, frozen=True, kw_only=True):
    address: Address
    name: str
    phone: str | None = None


class CustomField(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    value: str


class RenderingOptions(msgspec.Struct, frozen=True, kw_only=True):
    amount_tax_display: str | None = None
    template: str | None = None


class InvoiceSettings(msgspec.Struct, frozen=True, kw_only=True):
    custom_fields: tuple[CustomField, ...] | None = None
    footer: str | None = None
    rendering_options: RenderingOptions | None = None


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """Every customer field a client may set, except balance and currency (which are ledger facts)."""

    email: str | None = None
    name: str | None = None
    phone: str | None = None
    description: str | None = None
    business_name: str | None = None
    individual_name: str | None = None
    address: Address | None = None
    shipping: Shipping | None = None
    invoice_prefix: str = ""
    invoice_settings: InvoiceSettings = InvoiceSettings()
    next_invoice_sequence: int = 1
    preferred_locales: tuple[str, ...] = ()
    tax_exempt: str = "none"
    metadata: dict[str, str] = {}
    external_id: str | None = None


PROFILE_FIELDS: tuple[str, ...] = Profile.__struct_fields__
