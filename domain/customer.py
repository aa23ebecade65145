"""The customer aggregate: the pure `decide` / `evolve` functions. Its commands (domain/commands.py),
events (domain/events.py) and state (domain/state.py) live beside it and are re-exported from here.

Sign convention (Stripe's): a positive balance means the customer owes you; a negative balance is a
credit the customer can spend. Every balance change is a ledger entry (`BalanceAdjusted`) whose
`ending_balance` is the previous balance *in its currency* plus its `amount`: a customer has one ledger
per currency. `currency` and `balance` are the customer's own currency's (the first one set); an entry
in another currency goes to that currency's ledger (Stripe's `invoice_credit_balance` buckets).

`decide` never performs I/O; time and new ids arrive inside the command. `evolve` never validates or
raises: history is history.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET

from ledgerd.domain.commands import (
    AdjustBalance,
    AnyCommand,
    Command,
    CreateCustomer,
    DeleteCustomer,
    InvoiceSettingsPatch,
    ProfilePatch,
    UpdateBalanceTransaction,
    UpdateCustomer,
    UpsertCustomer,
    resolve_upsert,
)
from ledgerd.domain.errors import (
    BalanceOverflow,
    Conflict,
    CurrencyMismatch,
    InvalidParameter,
    ResourceMissing,
)
from ledgerd.domain.events import (
    EVENT_TYPES,
    AnyEvent,
    BalanceAdjusted,
    BalanceTransactionUpdated,
    CustomerChanges,
    CustomerCreated,
    CustomerDeleted,
    CustomerUpdated,
    Event,
    TransactionChanges,
)
from ledgerd.domain.limits import METADATA_MAX_KEYS
from ledgerd.domain.money import MAX_AMOUNT, amount_in_bounds, balance_in_bounds
from ledgerd.domain.state import INITIAL_STATE, BalanceTransactionState, CustomerState, balance_in, ledgers
from ledgerd.domain.values import (
    PROFILE_FIELDS,
    InvoiceSettings,
    Profile,
)

__all__ = [  # the commands and events are re-exported: most modules import the aggregate from here
    "EVENT_TYPES",
    "INITIAL_STATE",
    "AdjustBalance",
    "AnyCommand",
    "AnyEvent",
    "BalanceAdjusted",
    "BalanceTransactionState",
    "BalanceTransactionUpdated",
    "Command",
    "CreateCustomer",
    "CustomerChanges",
    "CustomerCreated",
    "CustomerDeleted",
    "CustomerState",
    "CustomerUpdated",
    "DeleteCustomer",
    "Event",
    "InvoiceSettingsPatch",
    "ProfilePatch",
    "TransactionChanges",
    "TransactionType",
    "UpdateBalanceTransaction",
    "UpdateCustomer",
    "UpsertCustomer",
    "apply_changes",
    "balance_in",
    "decide",
    "decide_adjust",
    "decide_create",
    "decide_delete",
    "decide_transaction_update",
    "decide_update",
    "diff_profile",
    "evolve",
    "evolve_transaction",
    "fold",
    "ledgers",
    "merge_invoice_settings",
    "merge_metadata",
    "require_live_customer",
    "resolve_upsert",
    "seconds",
    "transaction_created",
    "transaction_updated",
]

TransactionType = Literal["adjustment", "initial"]

# ---------------------------------------------------------------------------------------------------
# evolve
# ---------------------------------------------------------------------------------------------------


def evolve(state: CustomerState, event: AnyEvent) -> CustomerState:
    version = state.version + 1
    if isinstance(event, CustomerCreated):
        return CustomerState(
            version=version,
            exists=True,
            customer_id=event.customer_id,
            account=event.account,
            livemode=event.livemode,
            created=event.created,
            profile=event.profile,
            currency=event.currency,
        )
    if isinstance(event, CustomerUpdated):
        currency = state.currency if event.changes.currency is UNSET else event.changes.currency
        return msgspec.structs.replace(
            state, version=version, profile=apply_changes(state.profile, event.changes), currency=currency
        )
    if isinstance(event, CustomerDeleted):
        return msgspec.structs.replace(state, version=version, deleted=True)
    if isinstance(event, BalanceAdjusted):
        currency = state.currency or event.currency
        return msgspec.structs.replace(
            state,
            version=version,
            balance=event.ending_balance if event.currency == currency else state.balance,
            currency=currency,
            entries=state.entries + 1,
            balances={**state.balances, event.currency: event.ending_balance},
        )
    return msgspec.structs.replace(state, version=version)


def evolve_transaction(state: BalanceTransactionState, event: AnyEvent) -> BalanceTransactionState:
    customer = evolve(state.customer, event)
    if isinstance(event, BalanceAdjusted) and event.transaction_id == state.transaction_id:
        return transaction_created(customer, event)
    if isinstance(event, BalanceTransactionUpdated) and event.transaction_id == state.transaction_id:
        return msgspec.structs.replace(transaction_updated(state, event), customer=customer)
    return msgspec.structs.replace(state, customer=customer)


def transaction_updated(
    state: BalanceTransactionState, event: BalanceTransactionUpdated
) -> BalanceTransactionState:
    """The transaction after a change of its description or metadata."""
    changes = event.changes
    return msgspec.structs.replace(
        state,
        description=state.description if changes.description is UNSET else changes.description,
        metadata=state.metadata if changes.metadata is UNSET else changes.metadata,
    )


def transaction_created(customer: CustomerState, event: BalanceAdjusted) -> BalanceTransactionState:
    """The transaction a BalanceAdjusted event creates; `customer` is the state after the event."""
    return BalanceTransactionState(
        transaction_id=event.transaction_id,
        customer=customer,
        found=True,
        version=customer.version,
        type=event.type,
        amount=event.amount,
        currency=event.currency,
        ending_balance=event.ending_balance,
        created=event.created,
        description=event.description,
        metadata=event.metadata,
    )


def apply_changes(profile: Profile, changes: CustomerChanges) -> Profile:
    updates = {name: getattr(changes, name) for name in PROFILE_FIELDS if getattr(changes, name) is not UNSET}
    return msgspec.structs.replace(profile, **updates) if updates else profile


def fold(events: list[AnyEvent], state: CustomerState = INITIAL_STATE) -> CustomerState:
    for event in events:
        state = evolve(state, event)
    return state


# ---------------------------------------------------------------------------------------------------
# decide
# ---------------------------------------------------------------------------------------------------


def decide(command: AnyCommand, state: CustomerState) -> list[AnyEvent]:
    if isinstance(command, CreateCustomer):
        return decide_create(command, state)
    if isinstance(command, UpdateCustomer):
        return decide_update(command, state)
    if isinstance(command, DeleteCustomer):
        return decide_delete(command, state)
    if isinstance(command, AdjustBalance):
        return decide_adjust(command, state)
    raise TypeError(f"{type(command).__name__} is decided by decide_transaction_update")


def seconds(occurred_at_us: int) -> int:
    return occurred_at_us // 1_000_000


def require_live_customer(state: CustomerState, customer_id: str, param: str) -> None:
    if not state.exists or state.deleted:
        raise ResourceMissing(f"No such customer: '{customer_id}'", param=param)


def decide_create(command: CreateCustomer, state: CustomerState) -> list[AnyEvent]:
    if state.exists:
        raise Conflict(f"Customer '{command.customer_id}' already exists", param="id")
    created = CustomerCreated(
        customer_id=command.customer_id,
        account=command.account,
        livemode=command.livemode,
        created=seconds(command.occurred_at),
        profile=command.profile,
        currency=command.currency,
    )
    if command.balance == 0:
        return [created]
    if command.currency is None:
        raise InvalidParameter("A non-zero balance requires a currency.", param="currency")
    if command.initial_transaction_id is None:
        raise InvalidParameter("A non-zero balance needs a transaction id.", param="balance")
    initial = BalanceAdjusted(
        customer_id=command.customer_id,
        transaction_id=command.initial_transaction_id,
        amount=command.balance,
        currency=command.currency,
        type="initial",
        ending_balance=command.balance,
        created=seconds(command.occurred_at),
    )
    return [created, initial]


def decide_update(command: UpdateCustomer, state: CustomerState) -> list[AnyEvent]:
    require_live_customer(state, command.customer_id, "id")
    changes, previous = diff_profile(state.profile, command.patch)
    currency = state.currency
    if command.currency is not UNSET and command.currency != state.currency:
        if state.currency is not None:
            raise CurrencyMismatch(
                f"The customer's currency is '{state.currency}' and cannot be changed to "
                f"'{command.currency}'.",
                param="currency",
            )
        currency = command.currency
        changes["currency"] = currency
        previous["currency"] = None
    events: list[AnyEvent] = []
    if changes:
        events.append(
            CustomerUpdated(
                customer_id=command.customer_id,
                changes=CustomerChanges(**changes),
                previous=CustomerChanges(**previous),
            )
        )
    if command.balance is not UNSET and command.balance != state.balance:
        if currency is None:  # the entry sets the customer's currency, as a first balance transaction does
            currency = command.default_currency
        if currency is None:
            raise InvalidParameter(
                "Setting a balance requires the customer to have a currency; pass `currency`.",
                param="balance",
            )
        if command.adjustment_transaction_id is None:
            raise InvalidParameter("A balance change needs a transaction id.", param="balance")
        if not amount_in_bounds(command.balance - state.balance):
            raise InvalidParameter(
                f"Moving the balance from {state.balance} to {command.balance} is a change of more than "
                f"{MAX_AMOUNT} minor units; make it in several steps.",
                param="balance",
            )
        events.append(
            BalanceAdjusted(
                customer_id=command.customer_id,
                transaction_id=command.adjustment_transaction_id,
                amount=command.balance - state.balance,
                currency=currency,
                type="adjustment",
                ending_balance=command.balance,
                created=seconds(command.occurred_at),
            )
        )
    return events


def decide_delete(command: DeleteCustomer, state: CustomerState) -> list[AnyEvent]:
    require_live_customer(state, command.customer_id, "id")
    return [CustomerDeleted(customer_id=command.customer_id, deleted_at=seconds(command.occurred_at))]


def decide_adjust(command: AdjustBalance, state: CustomerState) -> list[AnyEvent]:
    require_live_customer(state, command.customer_id, "customer")
    ending_balance = balance_in(state, command.currency) + command.amount  # that currency's ledger
    if not balance_in_bounds(ending_balance):
        raise BalanceOverflow(
            f"This transaction would move the balance to {ending_balance}, outside the supported "
            f"range of +/-{2**53 - 1} minor units.",
            param="amount",
        )
    return [
        BalanceAdjusted(
            customer_id=command.customer_id,
            transaction_id=command.transaction_id,
            amount=command.amount,
            currency=command.currency,
            type="adjustment",
            ending_balance=ending_balance,
            description=command.description,
            metadata=command.metadata,
            created=seconds(command.occurred_at),
        )
    ]


def decide_transaction_update(
    command: UpdateBalanceTransaction, state: BalanceTransactionState
) -> list[AnyEvent]:
    require_live_customer(state.customer, command.customer_id, "customer")
    if not state.found:
        raise ResourceMissing(
            f"No such customer balance transaction: '{command.transaction_id}'", param="transaction"
        )
    changes: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    if command.description is not UNSET and command.description != state.description:
        changes["description"], previous["description"] = command.description, state.description
    if command.metadata is not UNSET:
        merged = merge_metadata(state.metadata, command.metadata)
        if merged != state.metadata:
            changes["metadata"], previous["metadata"] = merged, state.metadata
    if not changes:
        return []
    return [
        BalanceTransactionUpdated(
            customer_id=command.customer_id,
            transaction_id=command.transaction_id,
            changes=TransactionChanges(**changes),
            previous=TransactionChanges(**previous),
        )
    ]


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def merge_metadata(current: dict[str, str], patch: dict[str, str | None] | None) -> dict[str, str]:
    """Stripe's metadata update: None or {} clears all; a None value removes one key; others merge."""
    if not patch:
        return {}
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > METADATA_MAX_KEYS:
        raise InvalidParameter(
            f"Metadata can have at most {METADATA_MAX_KEYS} keys; this update would leave {len(merged)}.",
            param="metadata",
        )
    return merged


def merge_invoice_settings(current: InvoiceSettings, patch: InvoiceSettingsPatch) -> InvoiceSettings:
    updates = {
        name: getattr(patch, name)
        for name in InvoiceSettingsPatch.__struct_fields__
        if getattr(patch, name) is not UNSET
    }
    return msgspec.structs.replace(current, **updates) if updates else current


def diff_profile(profile: Profile, patch: ProfilePatch) -> tuple[dict[str, Any], dict[str, Any]]:
    changes: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        requested = getattr(patch, name)
        if requested is UNSET:
            continue
        old = getattr(profile, name)
        if name == "metadata":
            new: Any = merge_metadata(old, requested)
        elif name == "invoice_settings":
            new = merge_invoice_settings(old, requested)
        else:
            new = requested
        if new != old:
            changes[name], previous[name] = new, old
    return changes, previous
