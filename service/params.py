"""From decoded request params (service.forms) to domain commands, with Stripe-shaped errors.

Input is the nested dict `service.forms` produces: from a form every leaf is a string; from JSON leaves
may also be ints, bools, floats or null. Rules shared by every endpoint:

* ``""`` (and JSON ``null``) means *unset*: on create it is the same as leaving the param out; on update
  it clears a nullable field (``email=`` -> None, ``metadata=`` -> clear all, ``metadata[k]=`` -> drop k).
* Integers are decimal strings (``-100``) or JSON integers within int64; ``1.5``, ``1e3``, ``true`` are not.
* Booleans are ``true``/``false`` (string or JSON).
* ``expand`` (a list of strings) is accepted everywhere; ``validate`` (a bool) on customer create/update.

Errors are `domain.errors` exceptions carrying Stripe's codes: ``parameter_unknown``,
``parameter_unsupported``, ``parameter_missing``, ``parameter_invalid_integer``, ``parameter_invalid``,
``invalid_currency``, ``parameters_exclusive``. The first offending param (in the order received) wins.

Limits (lengths, metadata size, invoice prefix shape, ...) are *not* checked here: that is
`domain.validation.validate`, which the command handler runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, NoReturn

import msgspec
from msgspec import UNSET, UnsetType

from ledgerd.domain.customer import (
    AdjustBalance,
    CreateCustomer,
    InvoiceSettingsPatch,
    ProfilePatch,
    UpdateBalanceTransaction,
    UpdateCustomer,
    UpsertCustomer,
)
from ledgerd.domain.errors import InvalidParameter, MissingParameter
from ledgerd.domain.money import normalize_currency
from ledgerd.domain.values import Address, CustomField, InvoiceSettings, Profile, RenderingOptions, Shipping
from ledgerd.service import wire

__all__ = [
    "CreatedRange",
    "ListParams",
    "SearchParams",
    "balance_transaction_create",
    "balance_transaction_update",
    "check_expand",
    "customer_create",
    "customer_update",
    "list_params",
    "search_params",
]

INT64_MIN: Final[int] = -(2**63)
INT64_MAX: Final[int] = 2**63 - 1
DEFAULT_LIMIT: Final[int] = 10
MAX_LIMIT: Final[int] = 100
MAX_EVENT_TYPES: Final[int] = 20
MAX_EMAIL_FILTER: Final[int] = 512

NULLABLE_STRINGS: Final[tuple[str, ...]] = (
    "email",
    "name",
    "phone",
    "description",
    "business_name",
    "individual_name",
    "external_id",
)
# The accepted names are the request types' fields (service/wire.py); create and update take the same
# (tests/unit/test_wire.py).
CUSTOMER_PARAMS: Final[frozenset[str]] = wire.field_names(wire.CustomerCreateParams)
# Stripe params that only make sense for a payments processor. They get a precise error instead of
# "unknown", so a client migrating from Stripe learns why.
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
ADDRESS_PARAMS: Final[frozenset[str]] = wire.field_names(wire.AddressParams)
SHIPPING_PARAMS: Final[frozenset[str]] = wire.field_names(wire.ShippingParams)
INVOICE_SETTINGS_PARAMS: Final[frozenset[str]] = wire.field_names(wire.InvoiceSettingsParams)
UNSUPPORTED_INVOICE_SETTINGS_PARAMS: Final[frozenset[str]] = frozenset({"default_payment_method"})
CUSTOM_FIELD_PARAMS: Final[frozenset[str]] = wire.field_names(wire.CustomFieldParams)
RENDERING_OPTIONS_PARAMS: Final[frozenset[str]] = wire.field_names(wire.RenderingOptionsParams)
TRANSACTION_CREATE_PARAMS: Final[frozenset[str]] = wire.field_names(wire.TransactionCreateParams)
TRANSACTION_UPDATE_PARAMS: Final[frozenset[str]] = wire.field_names(wire.TransactionUpdateParams)
PAGINATION_PARAMS: Final[frozenset[str]] = frozenset({"limit", "starting_after", "ending_before", "expand"})
LIST_FILTERS: Final[frozenset[str]] = frozenset(
    {"created", "email", "type", "types", "invoice", "test_clock", "delivery_success"}
)
CREATED_PARAMS: Final[frozenset[str]] = frozenset({"gt", "gte", "lt", "lte"})
SEARCH_PARAMS: Final[frozenset[str]] = frozenset({"query", "limit", "page", "expand"})
NO_PARAMS: Final[frozenset[str]] = frozenset()
# Stripe's documented test payment methods and card tokens (`pm_card_visa`, `tok_visa`, ...): accepted on
# customer create so stand-in code that attaches one works; nothing is stored (no payment methods here).
TEST_TOKENS: Final[Mapping[str, re.Pattern[str]]] = {
    "payment_method": re.compile(r"pm_card_[a-z][a-z0-9_]*"),
    "source": re.compile(r"tok_[a-z][a-z0-9_]*"),
}

Params = Mapping[str, Any]


class CreatedRange(msgspec.Struct, frozen=True, kw_only=True):
    """``created`` filter in unix seconds. ``created=T`` becomes ``gte=T, lte=T``."""

    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None


class ListParams(msgspec.Struct, frozen=True, kw_only=True):
    limit: int = DEFAULT_LIMIT
    starting_after: str | None = None
    ending_before: str | None = None
    created: CreatedRange | None = None
    email: str | None = None  # customers
    type: str | None = None  # events: one name or a wildcard like "customer.*"
    types: tuple[str, ...] | None = None  # events
    invoice: str | None = None  # balance transactions
    test_clock: str | None = None  # customers
    delivery_success: bool | None = None  # events
    expand: tuple[str, ...] = ()  # accepted, informational only


class SearchParams(msgspec.Struct, frozen=True, kw_only=True):
    query: str
    limit: int = DEFAULT_LIMIT
    page: str | None = None
    expand: tuple[str, ...] = ()  # accepted, informational only (e.g. "total_count")


# ---------------------------------------------------------------------------------------------------
# Customers
# ---------------------------------------------------------------------------------------------------


def customer_create(
    params: Params,
    *,
    customer_id: str,
    transaction_id: str,
    invoice_prefix: str,
    occurred_at_us: int,
    account: str,
    livemode: bool,
    default_currency: str | None = None,
) -> UpsertCustomer:
    """POST /v1/customers. ``update`` is what runs instead when ``external_id`` names a live customer:
    it patches exactly the params sent (``""`` clears; ``""`` on a field that cannot be cleared, such as
    ``invoice_prefix`` or ``balance``, is left out)."""
    params = _without_test_tokens(params)
    _check_keys(params, CUSTOMER_PARAMS, UNSUPPORTED_CUSTOMER_PARAMS, "")
    _accept_ignored(params, validate=True)
    fields: dict[str, Any] = {}
    for name in NULLABLE_STRINGS:
        if name in params:
            fields[name] = _opt_string(params[name], name)
    if "address" in params:
        fields["address"] = _address(params["address"], "address")
    if "shipping" in params:
        fields["shipping"] = _shipping(params["shipping"])
    fields["invoice_prefix"] = _string_or_default(params, "invoice_prefix", invoice_prefix)
    if not _unset(params.get("invoice_settings")):
        fields["invoice_settings"] = _invoice_settings(params["invoice_settings"])
    if not _unset(params.get("next_invoice_sequence")):
        fields["next_invoice_sequence"] = _integer(params["next_invoice_sequence"], "next_invoice_sequence")
    if not _unset(params.get("preferred_locales")):
        fields["preferred_locales"] = _strings(params["preferred_locales"], "preferred_locales")
    fields["tax_exempt"] = _string_or_default(params, "tax_exempt", "none")
    if "metadata" in params:
        fields["metadata"] = _metadata(params["metadata"], "metadata")
    profile = Profile(**fields)
    balance = 0 if _unset(params.get("balance")) else _integer(params["balance"], "balance")
    currency = None if _unset(params.get("currency")) else _currency(params["currency"])
    if currency is None and balance != 0:
        currency = default_currency  # the account's default currency (an account setting)
    create = CreateCustomer(
        customer_id=customer_id,
        occurred_at=occurred_at_us,
        account=account,
        livemode=livemode,
        profile=profile,
        balance=balance,
        currency=currency,
        initial_transaction_id=transaction_id if balance != 0 else None,
    )
    update = _customer_patch(
        params,
        customer_id=customer_id,
        transaction_id=transaction_id,
        occurred_at_us=occurred_at_us,
        upsert=True,
        default_currency=default_currency,
    )
    return UpsertCustomer(create=create, update=update)


def customer_update(
    params: Params,
    *,
    customer_id: str,
    transaction_id: str,
    occurred_at_us: int,
    default_currency: str | None = None,
) -> UpdateCustomer:
    """POST /v1/customers/{id}. Only the params sent are in the patch; ``transaction_id`` names the
    adjustment entry if ``balance`` changes."""
    _check_keys(params, CUSTOMER_PARAMS, UNSUPPORTED_CUSTOMER_PARAMS, "")
    _accept_ignored(params, validate=True)
    return _customer_patch(
        params,
        customer_id=customer_id,
        transaction_id=transaction_id,
        occurred_at_us=occurred_at_us,
        upsert=False,
        default_currency=default_currency,
    )


def _customer_patch(
    params: Params,
    *,
    customer_id: str,
    transaction_id: str,
    occurred_at_us: int,
    upsert: bool,
    default_currency: str | None = None,
) -> UpdateCustomer:
    fields: dict[str, Any] = {}
    for name in NULLABLE_STRINGS:
        if name in params:
            fields[name] = _opt_string(params[name], name)
    if "address" in params:
        fields["address"] = _address(params["address"], "address")
    if "shipping" in params:
        fields["shipping"] = _shipping(params["shipping"])
    if _settable(params, "invoice_prefix", upsert):
        fields["invoice_prefix"] = _string(params["invoice_prefix"], "invoice_prefix")
    if "invoice_settings" in params:
        fields["invoice_settings"] = _invoice_settings_patch(params["invoice_settings"])
    if _settable(params, "next_invoice_sequence", upsert):
        fields["next_invoice_sequence"] = _integer(params["next_invoice_sequence"], "next_invoice_sequence")
    if "preferred_locales" in params:
        value = params["preferred_locales"]
        fields["preferred_locales"] = () if _unset(value) else _strings(value, "preferred_locales")
    if "tax_exempt" in params:
        value = params["tax_exempt"]
        fields["tax_exempt"] = "none" if _unset(value) else _string(value, "tax_exempt")
    if "metadata" in params:
        fields["metadata"] = _metadata_patch(params["metadata"], "metadata")
    balance: int | UnsetType = UNSET
    if _settable(params, "balance", upsert):
        balance = _integer(params["balance"], "balance")
    currency: str | UnsetType = UNSET
    if _settable(params, "currency", upsert):
        currency = _currency(params["currency"])
    return UpdateCustomer(
        customer_id=customer_id,
        occurred_at=occurred_at_us,
        patch=ProfilePatch(**fields),
        balance=balance,
        currency=currency,
        adjustment_transaction_id=transaction_id,
        default_currency=default_currency,
    )


def _without_test_tokens(params: Params) -> Params:
    """The params less a `payment_method`/`source` that is one of Stripe's test tokens (ignored)."""
    tokens = [
        name
        for name, pattern in TEST_TOKENS.items()
        if isinstance(params.get(name), str) and pattern.fullmatch(params[name])
    ]
    return {key: value for key, value in params.items() if key not in tokens} if tokens else params


def _settable(params: Params, name: str, upsert: bool) -> bool:
    """Whether a non-nullable field is in the patch. ``""`` cannot clear it: an error on update, left
    out of an upsert's patch (on create ``""`` means "use the default")."""
    if name not in params:
        return False
    if not _unset(params[name]):
        return True
    if upsert:
        return False
    raise InvalidParameter(
        f"You cannot unset {name}: it always has a value. Pass a new value or leave it out.", param=name
    )


def _string_or_default(params: Params, name: str, default: str) -> str:
    value = params.get(name)
    return default if _unset(value) else _string(value, name)


def _address(value: Any, param: str) -> Address | None:
    if _unset(value):
        return None
    obj = _object(value, param)
    _check_keys(obj, ADDRESS_PARAMS, NO_PARAMS, param)
    return Address(**{name: _opt_string(item, f"{param}[{name}]") for name, item in obj.items()})


def _shipping(value: Any) -> Shipping | None:
    if _unset(value):
        return None
    obj = _object(value, "shipping")
    _check_keys(obj, SHIPPING_PARAMS, NO_PARAMS, "shipping")
    address = _address(_required(obj, "address", "shipping"), "shipping[address]")
    assert address is not None  # _required rejects unset values
    return Shipping(
        address=address,
        name=_string(_required(obj, "name", "shipping"), "shipping[name]"),
        phone=_opt_string(obj["phone"], "shipping[phone]") if "phone" in obj else None,
    )


def _invoice_settings_fields(value: Any) -> dict[str, Any]:
    obj = _object(value, "invoice_settings")
    _check_keys(obj, INVOICE_SETTINGS_PARAMS, UNSUPPORTED_INVOICE_SETTINGS_PARAMS, "invoice_settings")
    fields: dict[str, Any] = {}
    if "custom_fields" in obj:
        fields["custom_fields"] = _custom_fields(obj["custom_fields"])
    if "footer" in obj:
        fields["footer"] = _opt_string(obj["footer"], "invoice_settings[footer]")
    if "rendering_options" in obj:
        fields["rendering_options"] = _rendering_options(obj["rendering_options"])
    return fields


def _invoice_settings(value: Any) -> InvoiceSettings:
    return InvoiceSettings(**_invoice_settings_fields(value))


def _invoice_settings_patch(value: Any) -> InvoiceSettingsPatch:
    if _unset(value):  # invoice_settings= clears every inner field
        return InvoiceSettingsPatch(custom_fields=None, footer=None, rendering_options=None)
    return InvoiceSettingsPatch(**_invoice_settings_fields(value))


def _custom_fields(value: Any) -> tuple[CustomField, ...] | None:
    param = "invoice_settings[custom_fields]"
    if _unset(value):
        return None
    items = _array(value, param)
    fields = []
    for index, item in enumerate(items):
        name = f"{param}[{index}]"
        obj = _object(item, name)
        _check_keys(obj, CUSTOM_FIELD_PARAMS, NO_PARAMS, name)
        fields.append(
            CustomField(
                name=_string(_required(obj, "name", name), f"{name}[name]"),
                value=_string(_required(obj, "value", name), f"{name}[value]"),
            )
        )
    return tuple(fields)


def _rendering_options(value: Any) -> RenderingOptions | None:
    param = "invoice_settings[rendering_options]"
    if _unset(value):
        return None
    obj = _object(value, param)
    _check_keys(obj, RENDERING_OPTIONS_PARAMS, NO_PARAMS, param)
    return RenderingOptions(**{name: _opt_string(item, f"{param}[{name}]") for name, item in obj.items()})


# ---------------------------------------------------------------------------------------------------
# Customer balance transactions
# ---------------------------------------------------------------------------------------------------


def balance_transaction_create(
    params: Params, *, customer_id: str, transaction_id: str, occurred_at_us: int
) -> AdjustBalance:
    """POST /v1/customers/{id}/balance_transactions."""
    _check_keys(params, TRANSACTION_CREATE_PARAMS, NO_PARAMS, "")
    _accept_ignored(params, validate=False)
    amount = _integer(_required(params, "amount", ""), "amount")
    currency = _currency(_required(params, "currency", ""))
    description = _opt_string(params["description"], "description") if "description" in params else None
    metadata = _metadata(params["metadata"], "metadata") if "metadata" in params else {}
    return AdjustBalance(
        customer_id=customer_id,
        occurred_at=occurred_at_us,
        transaction_id=transaction_id,
        amount=amount,
        currency=currency,
        description=description,
        metadata=metadata,
    )


def balance_transaction_update(
    params: Params, *, customer_id: str, transaction_id: str, occurred_at_us: int
) -> UpdateBalanceTransaction:
    """POST /v1/customers/{id}/balance_transactions/{txn}: only description and metadata."""
    _check_keys(params, TRANSACTION_UPDATE_PARAMS, NO_PARAMS, "")
    _accept_ignored(params, validate=False)
    description: str | UnsetType | None = UNSET
    if "description" in params:
        description = _opt_string(params["description"], "description")
    metadata: dict[str, str | None] | UnsetType | None = UNSET
    if "metadata" in params:
        metadata = _metadata_patch(params["metadata"], "metadata")
    return UpdateBalanceTransaction(
        customer_id=customer_id,
        occurred_at=occurred_at_us,
        transaction_id=transaction_id,
        description=description,
        metadata=metadata,
    )


# ---------------------------------------------------------------------------------------------------
# Lists and search
# ---------------------------------------------------------------------------------------------------


def list_params(params: Params, *, filters: frozenset[str]) -> ListParams:
    """Pagination params plus the endpoint's ``filters`` (a subset of `LIST_FILTERS`): customers use
    ``{"created", "email", "test_clock"}``, balance transactions ``{"created", "invoice"}``, events
    ``{"created", "type", "types", "delivery_success"}``."""
    if not filters <= LIST_FILTERS:
        raise ValueError(f"unsupported list filters: {sorted(filters - LIST_FILTERS)}")
    _check_keys(params, PAGINATION_PARAMS | filters, NO_PARAMS, "")
    fields: dict[str, Any] = {"expand": _accept_ignored(params, validate=False)}
    fields["limit"] = _limit(params)
    for name in ("starting_after", "ending_before", "invoice", "test_clock"):
        if name in params:
            fields[name] = _opt_string(params[name], name)
    if fields.get("starting_after") is not None and fields.get("ending_before") is not None:
        _exclusive("ending_before", "starting_after")
    if "created" in params:
        fields["created"] = _created(params["created"])
    if "email" in params:
        email = fields["email"] = _opt_string(params["email"], "email")
        if email is not None and len(email) > MAX_EMAIL_FILTER:
            raise InvalidParameter(
                f"Invalid email: must be at most {MAX_EMAIL_FILTER} characters long.", param="email"
            )
    if "type" in params:
        fields["type"] = _opt_string(params["type"], "type")
    if "types" in params and not _unset(params["types"]):
        types = fields["types"] = _strings(params["types"], "types")
        if len(types) > MAX_EVENT_TYPES:
            raise InvalidParameter(f"types takes at most {MAX_EVENT_TYPES} event types.", param="types")
    if fields.get("type") is not None and fields.get("types") is not None:
        _exclusive("type", "types")
    if "delivery_success" in params and not _unset(params["delivery_success"]):
        fields["delivery_success"] = _boolean(params["delivery_success"], "delivery_success")
    return ListParams(**fields)


def check_expand(params: Params) -> tuple[str, ...]:
    """Type-check ``expand`` (a list of strings, accepted everywhere and otherwise ignored)."""
    return _accept_ignored(params, validate=False)


def search_params(params: Params) -> SearchParams:
    """GET /v1/customers/search."""
    _check_keys(params, SEARCH_PARAMS, NO_PARAMS, "")
    expand = _accept_ignored(params, validate=False)
    query = _string(_required(params, "query", ""), "query")
    page = _opt_string(params["page"], "page") if "page" in params else None
    return SearchParams(query=query, limit=_limit(params), page=page, expand=expand)


def _limit(params: Params) -> int:
    value = params.get("limit")
    if _unset(value):
        return DEFAULT_LIMIT
    limit = _integer(value, "limit")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidParameter(f"Invalid limit: must be between 1 and {MAX_LIMIT}.", param="limit")
    return limit


def _created(value: Any) -> CreatedRange | None:
    if _unset(value):
        return None
    if isinstance(value, dict):
        _check_keys(value, CREATED_PARAMS, NO_PARAMS, "created")
        bounds = {
            name: _integer(item, f"created[{name}]") for name, item in value.items() if not _unset(item)
        }
        return CreatedRange(**bounds) if bounds else None
    at = _integer(value, "created")
    return CreatedRange(gte=at, lte=at)


def _exclusive(first: str, second: str) -> NoReturn:
    raise InvalidParameter(
        f"You may only specify one of these parameters: {first}, {second}.",
        param=first,
        code="parameters_exclusive",
    )


# ---------------------------------------------------------------------------------------------------
# Shared converters
# ---------------------------------------------------------------------------------------------------


def _join(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key


def _check_keys(
    obj: Mapping[str, Any], allowed: frozenset[str], unsupported: frozenset[str], prefix: str
) -> None:
    for key in obj:
        if key in allowed:
            continue
        name = _join(prefix, key)
        if key in unsupported:
            raise InvalidParameter(
                f"This ledger does not process payments, so the parameter {name} is not supported.",
                param=name,
                code="parameter_unsupported",
            )
        raise InvalidParameter(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")


def _accept_ignored(params: Params, *, validate: bool) -> tuple[str, ...]:
    """Type-check ``expand`` (and ``validate``); both are otherwise ignored. Returns ``expand``."""
    if validate and not _unset(params.get("validate")):
        _boolean(params["validate"], "validate")
    value = params.get("expand")
    return () if _unset(value) else _strings(value, "expand")


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value)


def _required(obj: Mapping[str, Any], name: str, prefix: str) -> Any:
    value = obj.get(name)
    if _unset(value):
        param = _join(prefix, name)
        raise MissingParameter(f"Missing required param: {param}.", param=param)
    return value


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return value if len(value) <= 100 else value[:100] + "..."
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a number"


def _wrong_type(param: str, expected: str, value: Any) -> NoReturn:
    raise InvalidParameter(f"Invalid {param}: expected {expected}, got {_kind(value)}.", param=param)


def _string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        _wrong_type(param, "a string", value)
    if "\x00" in value:
        raise InvalidParameter(f"Invalid {param}: must not contain NUL characters.", param=param)
    return value


def _opt_string(value: Any, param: str) -> str | None:
    return None if _unset(value) else _string(value, param)


def _integer(value: Any, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        if isinstance(value, (dict, list)):
            _wrong_type(param, "an integer", value)
        raise InvalidParameter(
            f"Invalid integer: {_describe(value)}", param=param, code="parameter_invalid_integer"
        )
    if isinstance(value, str):
        digits = value[1:] if value.startswith("-") else value
        if not (digits.isdigit() and digits.isascii()):
            raise InvalidParameter(
                f"Invalid integer: {_describe(value)}", param=param, code="parameter_invalid_integer"
            )
        if len(digits.lstrip("0")) > 19:
            _out_of_range(value, param)
        number = int(value)
    else:
        number = value
    if not INT64_MIN <= number <= INT64_MAX:
        _out_of_range(value, param)
    return number


def _out_of_range(value: Any, param: str) -> NoReturn:
    raise InvalidParameter(
        f"Invalid integer: {_describe(str(value))} is out of range (must be between {INT64_MIN} and "
        f"{INT64_MAX}).",
        param=param,
        code="parameter_invalid_integer",
    )


def _boolean(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if value == "true":
        return True
    if value == "false":
        return False
    if isinstance(value, (dict, list)):
        _wrong_type(param, "a boolean", value)
    raise InvalidParameter(f"Invalid boolean: {_describe(value)}", param=param)


def _object(value: Any, param: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        _wrong_type(param, "an object", value)
    return value


def _array(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        _wrong_type(param, "an array", value)
    return value


def _strings(value: Any, param: str) -> tuple[str, ...]:
    return tuple(_string(item, f"{param}[{index}]") for index, item in enumerate(_array(value, param)))


def _currency(value: Any) -> str:
    code = _string(value, "currency")
    currency = normalize_currency(code)
    if currency is None:
        raise InvalidParameter(
            f"Invalid currency: {_describe(code)}. Use a three-letter ISO 4217 code such as 'usd'.",
            param="currency",
            code="invalid_currency",
        )
    return currency


def _metadata(value: Any, param: str) -> dict[str, str]:
    """Metadata on create: unset values are simply absent."""
    if _unset(value):
        return {}
    return {key: item for key, item in _metadata_entries(value, param).items() if item is not None}


def _metadata_patch(value: Any, param: str) -> dict[str, str | None] | None:
    """Metadata on update: None (``metadata=``, ``{}``) clears all; a None value drops one key."""
    if _unset(value):
        return None
    return _metadata_entries(value, param) or None


def _metadata_entries(value: Any, param: str) -> dict[str, str | None]:
    obj = _object(value, param)
    entries: dict[str, str | None] = {}
    for key, item in obj.items():
        name = f"{param}[{key}]"
        if _unset(item):
            entries[key] = None
        elif isinstance(item, str):
            entries[key] = _string(item, name)
        else:
            raise InvalidParameter(
                f"Invalid {name}: metadata values must be strings, got {_kind(item)}.", param=name
            )
    return entries
