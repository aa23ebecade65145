"""Balance ledger projection (table `balance_transactions`): one row per ledger entry.

The row is a function of the entry's folded state (`row`, from `domain.customer.BalanceTransactionState`:
the BalanceAdjusted event that created it, then the BalanceTransactionUpdated events that changed its
description or metadata). `position` is the log position of the creating event.
"""

from __future__ import annotations

from typing import Any

from ledgerd.domain.customer import BalanceTransactionState

TABLE = "balance_transactions"
TABLES = (TABLE,)
COLUMNS = (
    "id",
    "customer_id",
    "account",
    "livemode",
    "position",
    "version",
    "type",
    "amount",
    "currency",
    "ending_balance",
    "description",
    "metadata",
    "created",
)
JSONB_COLUMNS = frozenset({"metadata"})
MUTABLE_COLUMNS = ("description", "metadata")  # what BalanceTransactionUpdated may change


def row(state: BalanceTransactionState, position: int | None = None) -> dict[str, Any]:
    customer = state.customer
    return {
        "id": state.transaction_id,
        "customer_id": customer.customer_id,
        "account": customer.account,
        "livemode": customer.livemode,
        "position": position,
        "version": state.version,
        "type": state.type,
        "amount": state.amount,
        "currency": state.currency,
        "ending_balance": state.ending_balance,
        "description": state.description,
        "metadata": dict(state.metadata),
        "created": state.created,
    }
