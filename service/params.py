"""From request params (service.forms) to domain commands, with Stripe-shaped errors.

Input is the nested dict `service.forms` produces: from a form every leaf is a string; from JSON leaves
may also be ints, bools, floats or null. Each write request is decoded through its wire type
(`service.wire`, by `service.decoding`), then becomes its domain command. Rules shared by every endpoint:

* ``""`` (and JSON ``null``) means *unset*: on create it is the same as leaving the param out; on update
  it clears a nullable field (``email=`` -> None, ``metadata=`` -> clear all, ``metadata[k]=`` -> drop k).
* Integers are decimal strings (``-100``) or JSON integers within int64; ``1.5``, ``1e3``, ``true`` are not.
* Booleans are ``true``/``false`` (string or JSON).
* ``expand`` (a list of strings) is accepted everywhere; ``validate`` (a bool) on customer create/update.

Errors are `domain.errors` exceptions carrying Stripe's codes: ``parameter_unknown``,
``parameter_unsupported``, ``parameter_missing``, ``parameter_invalid_integer``, ``parameter_invalid``,
``invalid_currency``, ``parameters_exclusive``.

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
    ProfilePatch,
    UpdateBalanceTransaction,
    UpdateCustomer,
    UpsertCustomer,
)
from ledgerd.domain.errors import InvalidParameter
from ledgerd.domain.money import normalize_currency
from ledgerd.domain.values import PROFILE_FIELDS, Profile
from ledgerd.service import wire
from ledgerd.service.decoding import decode, nullable
from ledgerd.service.scalars import (
    INT64_MAX,
    INT64_MIN,
    NO_PARAMS,
    accept_ignored,
    check_keys,
    describe,
    integer,
    unset,
)

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
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

DEFAULT_LIMIT: Final[int] = 10
MAX_LIMIT: Final[int] = 100
MAX_EVENT_TYPES: Final[int] = 20
MAX_EMAIL_FILTER: Final[int] = 512

# The customer's nullable strings (those "" clears), as the profile types them.
NULLABLE_STRINGS: Final[tuple[str, ...]] = tuple(
    field.name for field in msgspec.structs.fields(Profile) if field.type == (str | None)
)
# The accepted names are the request types' fields (service/wire.py); create and update take the same
# (tests/unit/test_wire.py).
CUSTOMER_PARAMS: Final[frozenset[str]] = wire.field_names(wire.CustomerCreateParams)
UNSUPPORTED_CUSTOMER_PARAMS: Final[frozenset[str]] = wire.UNSUPPORTED_CUSTOMER_PARAMS
ADDRESS_PARAMS: Final[frozenset[str]] = wire.field_names(wire.AddressParams)
TRANSACTION_CREATE_PARAMS: Final[frozenset[str]] = wire.field_names(wire.TransactionCreateParams)
TRANSACTION_UPDATE_PARAMS: Final[frozenset[str]] = wire.field_names(wire.TransactionUpdateParams)
PAGINATION_PARAMS: Final[frozenset[str]] = frozenset({"limit", "starting_after", "ending_before", "expand"})
LIST_FILTERS: Final[frozenset[str]] = frozenset(
    {"created", "email", "type", "types", "invoice", "test_clock", "delivery_success"}
)
CREATED_PARAMS: Final[frozenset[str]] = wire.field_names(wire.CreatedParams)
SEARCH_PARAMS: Final[frozenset[str]] = wire.field_names(wire.SearchQuery)
# Stripe's documented test payment methods and card tokens (`pm_card_visa`, `tok_visa`, ...): accepted on
# customer create so stand-in code that attaches one works; nothing is stored (no payment methods here).
TEST_TOKENS: Final[Mapping[str, re.Pattern[str]]] = {
    "payment_method": re.compile(r"pm_card_[a-z][a-z0-9_]*"),
    "source": re.compile(r"tok_[a-z][a-z0-9_]*"),
}
# What an unset ("" or null) profile field becomes in an update: the profile's default (None for the
# nullable ones, which the patch types as such). Fields the update type cannot unset are not here.
CLEARABLE: Final[frozenset[str]] = frozenset(
    field.name
    for field in msgspec.structs.fields(wire.CustomerUpdateParams)
    if field.name in PROFILE_FIELDS and nullable(field.type)
)

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
    sent = decode(_without_test_tokens(params), wire.CustomerCreateParams)
    profile = {name: sent[name] for name in PROFILE_FIELDS if sent.get(name) is not None}
    profile.setdefault("invoice_prefix", invoice_prefix)
    if "metadata" in profile:  # on create an unset value is simply absent
        profile["metadata"] = {key: value for key, value in profile["metadata"].items() if value is not None}
    balance: int = sent.get("balance") or 0
    currency = None if sent.get("currency") is None else _currency(sent["currency"])
    if currency is None and balance != 0:
        currency = default_currency  # the account's default currency (an account setting)
    create = CreateCustomer(
        customer_id=customer_id,
        occurred_at=occurred_at_us,
        account=account,
        livemode=livemode,
        profile=msgspec.convert(profile, Profile),
        balance=balance,
        currency=currency,
        initial_transaction_id=transaction_id if balance != 0 else None,
    )
    update = _customer_patch(
        sent,
        customer_id=customer_id,
        transaction_id=transaction_id,
        occurred_at_us=occurred_at_us,
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
    return _customer_patch(
        decode(params, wire.CustomerUpdateParams),
        customer_id=customer_id,
        transaction_id=transaction_id,
        occurred_at_us=occurred_at_us,
        default_currency=default_currency,
    )


_DEFAULT_PROFILE: Final[dict[str, Any]] = msgspec.to_builtins(Profile())


def _customer_patch(
    sent: dict[str, Any],
    *,
    customer_id: str,
    transaction_id: str,
    occurred_at_us: int,
    default_currency: str | None = None,
) -> UpdateCustomer:
    """The patch of the params sent. An unset one clears its field back to the profile's default; on
    an upsert (create's params) an unset field that cannot be cleared is left out."""
    patch: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        if name not in sent or (sent[name] is None and name not in CLEARABLE):
            continue
        value = _DEFAULT_PROFILE[name] if sent[name] is None else sent[name]
        patch[name] = (value or None) if name == "metadata" else value  # metadata None (or {}) clears all
    balance: int | UnsetType = UNSET if sent.get("balance") is None else sent["balance"]
    currency: str | UnsetType = UNSET if sent.get("currency") is None else _currency(sent["currency"])
    return UpdateCustomer(
        customer_id=customer_id,
        occurred_at=occurred_at_us,
        patch=msgspec.convert(patch, ProfilePatch),
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


def _currency(code: str) -> str:
    currency = normalize_currency(code)
    if currency is None:
        raise InvalidParameter(
            f"Invalid currency: {describe(code)}. Use a three-letter ISO 4217 code such as 'usd'.",
            param="currency",
            code="invalid_currency",
        )
    return currency


# ---------------------------------------------------------------------------------------------------
# Customer balance transactions
# ---------------------------------------------------------------------------------------------------


def balance_transaction_create(
    params: Params, *, customer_id: str, transaction_id: str, occurred_at_us: int
) -> AdjustBalance:
    """POST /v1/customers/{id}/balance_transactions."""
    sent = decode(params, wire.TransactionCreateParams)
    metadata = sent.get("metadata") or {}
    return AdjustBalance(
        customer_id=customer_id,
        occurred_at=occurred_at_us,
        transaction_id=transaction_id,
        amount=sent["amount"],
        currency=_currency(sent["currency"]),
        description=sent.get("description"),
        metadata={key: value for key, value in metadata.items() if value is not None},
    )


def balance_transaction_update(
    params: Params, *, customer_id: str, transaction_id: str, occurred_at_us: int
) -> UpdateBalanceTransaction:
    """POST /v1/customers/{id}/balance_transactions/{txn}: only description and metadata (None or {}
    clears all; a None value drops one key)."""
    sent = decode(params, wire.TransactionUpdateParams)
    return UpdateBalanceTransaction(
        customer_id=customer_id,
        occurred_at=occurred_at_us,
        transaction_id=transaction_id,
        description=sent.get("description", UNSET),
        metadata=sent["metadata"] or None if "metadata" in sent else UNSET,
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
    check_keys(params, PAGINATION_PARAMS | filters, NO_PARAMS, "")
    sent = {name: value for name, value in decode(params, wire.ListQuery).items() if value is not None}
    fields: dict[str, Any] = {**sent, "limit": _in_range(sent.get("limit", DEFAULT_LIMIT))}
    if "starting_after" in sent and "ending_before" in sent:
        _exclusive("ending_before", "starting_after")
    if isinstance(created := sent.get("created"), int):
        fields["created"] = CreatedRange(gte=created, lte=created)
    elif created is not None:
        fields["created"] = msgspec.convert({k: v for k, v in created.items() if v is not None}, CreatedRange)
        if fields["created"] == CreatedRange():
            fields["created"] = None
    if len(sent.get("email", "")) > MAX_EMAIL_FILTER:
        raise InvalidParameter(
            f"Invalid email: must be at most {MAX_EMAIL_FILTER} characters long.", param="email"
        )
    if len(sent.get("types", ())) > MAX_EVENT_TYPES:
        raise InvalidParameter(f"types takes at most {MAX_EVENT_TYPES} event types.", param="types")
    if "type" in sent and "types" in sent:
        _exclusive("type", "types")
    return msgspec.convert(fields, ListParams)


def check_expand(params: Params) -> tuple[str, ...]:
    """Type-check ``expand`` (a list of strings, accepted everywhere and otherwise ignored)."""
    return accept_ignored(params, validate=False)


def search_params(params: Params) -> SearchParams:
    """GET /v1/customers/search."""
    sent = {name: value for name, value in decode(params, wire.SearchQuery).items() if value is not None}
    return msgspec.convert({**sent, "limit": _in_range(sent.get("limit", DEFAULT_LIMIT))}, SearchParams)


def _limit(params: Params) -> int:
    """The ``limit`` of params that have no wire type (service/webhooks/extensions.py)."""
    value = params.get("limit")
    return DEFAULT_LIMIT if unset(value) else _in_range(integer(value, "limit"))


def _in_range(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidParameter(f"Invalid limit: must be between 1 and {MAX_LIMIT}.", param="limit")
    return limit


def _exclusive(first: str, second: str) -> NoReturn:
    raise InvalidParameter(
        f"You may only specify one of these parameters: {first}, {second}.",
        param=first,
        code="parameters_exclusive",
    )
