"""Stripe-shaped objects rendered from projection rows. Shared by the HTTP responses and by the
event feed projection, so an event's `data.object` is exactly what the API returned then."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

_JSON_TEXT = (str, bytes, msgspec.Raw)


def as_json(value: Any) -> Any:
    """jsonb arrives as text from asyncpg unless a codec is set; the projections' in-memory rows hold
    documents (and msgspec.Raw for a JSON null); accept all."""
    return msgspec.json.decode(value) if isinstance(value, _JSON_TEXT) else value


def render_shipping(value: Any) -> dict[str, Any] | None:
    shipping = as_json(value)
    if shipping is None:
        return None
    return {
        "address": shipping.get("address"),
        "carrier": None,
        "name": shipping.get("name"),
        "phone": shipping.get("phone"),
        "tracking_number": None,
    }


def render_invoice_settings(value: Any) -> dict[str, Any]:
    settings = as_json(value) or {}
    return {
        "custom_fields": settings.get("custom_fields"),
        "default_payment_method": None,
        "footer": settings.get("footer"),
        "rendering_options": settings.get("rendering_options"),
    }


def render_customer(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "customer",
        "address": as_json(row["address"]),
        "balance": row["balance"],
        "business_name": row["business_name"],
        "created": row["created"],
        "currency": row["currency"],
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": row["description"],
        "discount": None,
        "email": row["email"],
        "external_id": row["external_id"],
        "individual_name": row["individual_name"],
        "invoice_prefix": row["invoice_prefix"],
        "invoice_settings": render_invoice_settings(row["invoice_settings"]),
        "livemode": row["livemode"],
        "metadata": as_json(row["metadata"]),
        "name": row["name"],
        "next_invoice_sequence": row["next_invoice_sequence"],
        "phone": row["phone"],
        "preferred_locales": as_json(row["preferred_locales"]),
        "shipping": render_shipping(row["shipping"]),
        "tax_exempt": row["tax_exempt"],
        "test_clock": None,
    }


def render_deleted_customer(customer_id: str) -> dict[str, Any]:
    return {"id": customer_id, "object": "customer", "deleted": True}


def render_balance_transaction(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "customer_balance_transaction",
        "amount": row["amount"],
        "checkout_session": None,
        "created": row["created"],
        "credit_note": None,
        "currency": row["currency"],
        "customer": row["customer_id"],
        "customer_account": None,
        "description": row["description"],
        "ending_balance": row["ending_balance"],
        "invoice": None,
        "livemode": row["livemode"],
        "metadata": as_json(row["metadata"]),
        "type": row["type"],
    }


def customer_field_value(name: str, value: Any) -> Any:
    """A field of CustomerChanges rendered the way the customer object shows it."""
    if name == "shipping":
        return render_shipping(value)
    if name == "invoice_settings":
        return render_invoice_settings(value)
    return value
