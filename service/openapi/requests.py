"""The request body schemas, generated from their types (`service.wire`, `service.webhooks.wire`), whose
fields are the names the params layer accepts; plus what each body's `expand` can name."""

from __future__ import annotations

from typing import Final

import msgspec

from ledgerd.service import expand, params, wire
from ledgerd.service.openapi.schemas import NO_NUL, NULL, Schema, const, generated, text, unsettable
from ledgerd.service.webhooks.wire import WEBHOOK_PARAMS

REQUEST_TYPES: Final[dict[str, type[msgspec.Struct]]] = {**WEBHOOK_PARAMS, **wire.REQUEST_TYPES}


def expand_schema(root: expand.Node = expand.NOTHING, *, omit: tuple[str, ...] = ()) -> Schema:
    """The paths `root` can expand (service/expand.py); any other is a 400."""
    paths = [path for path in expand.expandable_paths(root) if path not in omit]
    if not paths:
        return {"type": "array", "items": text(), "description": "Nothing here is expandable: any path is a 400."}
    return {
        "type": "array",
        "items": {"type": "string", "enum": paths},
        "description": "Properties to expand; any other path is a 400 (at most 4 levels).",
    }


ADDRESS_DESCRIPTIONS: Final[dict[str, str]] = {
    "city": "City, district, suburb, town or village.",
    "country": "Two-letter country code (ISO 3166-1 alpha-2).",
    "line1": "Address line 1, e.g. street, PO box or company name.",
    "line2": "Address line 2, e.g. apartment, suite, unit or building.",
    "postal_code": "ZIP or postal code.",
    "state": "State, county, province or region.",
}
CUSTOMER_PARAM_DESCRIPTIONS: Final[dict[str, str]] = {
    "email": "The customer's email address.",
    "name": "The customer's full name or business name.",
    "phone": "The customer's phone number.",
    "description": "An arbitrary string, e.g. an internal note; shown in the dashboard of a Stripe account.",
    "business_name": "The customer's business name.",
    "individual_name": "The customer's individual name.",
    "address": "The customer's address. Send `address=` to clear it.",
    "shipping": "Shipping details: `address` and `name` are required, `phone` is optional.",
    "invoice_settings": "Default invoice settings: custom fields, footer, rendering options.",
    "preferred_locales": "Preferred languages, most preferred first (IETF tags such as `en`, `fr-CA`).",
    "tax_exempt": "The customer's tax exemption.",
    "invoice_prefix": "Prefix of the customer's invoice numbers: uppercase letters and digits (see the pattern).",
    "next_invoice_sequence": "The suffix of the customer's next invoice number.",
    "expand": "Properties to expand (invoice_credit_balance, tax, tax_ids, sources, subscriptions, ...).",
    "validate": "Accepted and ignored (Stripe uses it to validate tax ids).",
}
PARAM_DESCRIPTIONS: Final[dict[str, dict[str, str]]] = {
    "address_params": ADDRESS_DESCRIPTIONS,
    "customer_create_params": CUSTOMER_PARAM_DESCRIPTIONS,
    "customer_update_params": CUSTOMER_PARAM_DESCRIPTIONS,
}
# What each request type's `expand` can name (service/expand.py); the others' nothing.
EXPAND_ROOTS: Final[dict[str, expand.Node]] = {
    "customer_create_params": expand.CUSTOMER,
    "customer_update_params": expand.CUSTOMER,
    "customer_balance_transaction_create_params": expand.BALANCE_TRANSACTION,
    "customer_balance_transaction_update_params": expand.BALANCE_TRANSACTION,
}


def described(properties: dict[str, Schema], descriptions: dict[str, str]) -> dict[str, Schema]:
    """``properties`` with a description on each named one that has none yet."""
    return {
        name: schema if "description" in schema or name not in descriptions
        else {**schema, "description": descriptions[name]}
        for name, schema in properties.items()
    }


def request_schemas() -> dict[str, Schema]:
    unsupported = ", ".join(sorted(params.UNSUPPORTED_CUSTOMER_PARAMS))
    schemas = generated(REQUEST_TYPES)
    for name, schema in schemas.items():
        properties = {prop: accepting_unset(value) for prop, value in schema["properties"].items()}
        if "expand" in properties:
            properties["expand"] = unsettable(expand_schema(EXPAND_ROOTS.get(name, expand.NOTHING)))
        schema["properties"] = described(properties, PARAM_DESCRIPTIONS.get(name, {}))
        if name.startswith("customer_") and not name.startswith("customer_balance"):
            schema["description"] = (
                "Unknown parameters are rejected (400 parameter_unknown); payment parameters "
                f"({unsupported}) are rejected with 400 parameter_unsupported."
            )
        if not schema.get("required"):
            schema.pop("required", None)
    return schemas


def accepting_unset(schema: Schema) -> Schema:
    """A nullable parameter (``X | None``) also takes ``""`` (form): both mean *unset*."""
    options = schema.get("anyOf")
    if not options or NULL not in options:
        return schema
    takes_empty = any(
        option.get("type") == "string"
        and option.get("minLength", 0) == 0
        and option.get("pattern", NO_NUL) == NO_NUL
        and "enum" not in option
        for option in options
    )
    if takes_empty:
        return schema
    rest = [option for option in options if option != NULL]
    return {**schema, "anyOf": [*rest, const(""), NULL]}
