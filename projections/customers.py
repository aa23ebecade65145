"""Customer view projection (table `customers`): one row per customer, every Stripe field, its balance
and stream version.

The row is a function of the customer's folded state (`row`): the live path writes the state a command
leaves (one row per command, whatever its number of events), a replay writes the state each command
left, and `as_of` renders the state folded up to an instant. `position` is the log position of the
customer's CustomerCreated event (list order); the live path learns it when the event is appended.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledgerd.domain.customer import CustomerState, ledgers
from ledgerd.domain.values import PROFILE_FIELDS

TABLE = "customers"
TABLES = (TABLE,)
# The profile's columns are its fields (`row` spreads the profile), so the field list is domain.values'.
COLUMNS = (
    "id",
    "account",
    "livemode",
    "position",
    "version",
    "created",
    "deleted",
    *PROFILE_FIELDS,
    "balance",
    "currency",
    "balances",
)
JSONB_COLUMNS = frozenset({"address", "shipping", "invoice_settings", "preferred_locales", "metadata", "balances"})
# What a later command may change; id, account, livemode, position and created are fixed at creation.
MUTABLE_COLUMNS = tuple(c for c in COLUMNS if c not in ("id", "account", "livemode", "position", "created"))

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def row(state: CustomerState, position: int | None = None) -> dict[str, Any]:
    """The `customers` row of a folded state (jsonb columns as documents; a JSON null is SQL NULL)."""
    profile = _decode(_encode(state.profile))  # the documents as JSON has them (tuples -> lists)
    return {
        "id": state.customer_id,
        "account": state.account,
        "livemode": state.livemode,
        "position": position,
        "version": state.version,
        "created": state.created,
        "deleted": state.deleted,
        **profile,
        "balance": state.balance,
        "currency": state.currency,
        "balances": ledgers(state),  # every currency's ledger: Stripe's invoice_credit_balance (negated)
    }
