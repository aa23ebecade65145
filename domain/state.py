"""The customer aggregate's state: what `evolve` (domain/customer.py) folds its events into and `decide`
decides on."""

from __future__ import annotations

import msgspec

from ledgerd.domain.values import Profile


class CustomerState(msgspec.Struct, frozen=True, kw_only=True):
    version: int = 0
    exists: bool = False
    deleted: bool = False
    customer_id: str = ""
    account: str = ""
    livemode: bool = False
    created: int = 0
    profile: Profile = Profile()
    currency: str | None = None
    balance: int = 0
    entries: int = 0
    # Every currency's balance, the customer's own currency's included once it has an entry. A snapshot
    # written before this field existed decodes it empty; `ledgers` adds `currency: balance` anyway.
    balances: dict[str, int] = {}


def ledgers(state: CustomerState) -> dict[str, int]:
    """The customer's balance in every currency it has (its own currency first)."""
    own = {} if state.currency is None else {state.currency: state.balance}
    return {**own, **{code: amount for code, amount in state.balances.items() if code not in own}}


def balance_in(state: CustomerState, currency: str) -> int:
    """The balance of the customer's ledger in `currency` (0 if it has none)."""
    if state.currency is None or currency == state.currency:
        return state.balance
    return state.balances.get(currency, 0)


class BalanceTransactionState(msgspec.Struct, frozen=True, kw_only=True):
    """What UpdateBalanceTransaction decides on: the customer plus the one transaction it names, as
    its events left it (everything the ledger entry shows, so its row can be rendered from here)."""

    transaction_id: str
    customer: CustomerState = CustomerState()
    found: bool = False
    version: int = 0  # the stream version of the BalanceAdjusted event that created it
    type: str = "adjustment"
    amount: int = 0
    currency: str = ""
    ending_balance: int = 0
    created: int = 0
    description: str | None = None
    metadata: dict[str, str] = {}


INITIAL_STATE = CustomerState()
