"""A Hypothesis state machine: random command sequences through the real command handler
(`service.handler.execute`) against a plain Python model of the ledger.

Rules: create (with and without an initial balance and currency), create over an existing id, update
(profile fields, metadata merge/unset, balance, currency), delete, adjust (random currencies: a customer
has one ledger per currency; invalid codes; out-of-bounds and zero amounts), update a balance transaction,
retry an idempotency key with the same parameters, and reuse a key with changed parameters or on another
endpoint.

After every step the invariants are checked against the store itself, per currency: balance = sum of
amounts = last ending_balance; every ending_balance = previous + amount (in its currency); the customer's
currency never changes once set and `balance` is that currency's; a
rejected command appends nothing; idempotent retries append nothing and return the original result;
stream versions run 1..n; the hash chain recomputes from GENESIS_HASH; the gap-safe global log holds
every event exactly once.

The machine runs on a store driver. Here: the in-memory store. tests/integration/test_state_machine_pg.py
runs the same machine on PostgreSQL (one fresh database per example) and finishes every example with a
replay from zero compared row for row with the inline projections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from msgspec import UNSET, UnsetType

from ledgerd.domain.customer import (
    INITIAL_STATE,
    AdjustBalance,
    AnyCommand,
    BalanceAdjusted,
    BalanceTransactionState,
    CreateCustomer,
    CustomerCreated,
    CustomerUpdated,
    DeleteCustomer,
    ProfilePatch,
    UpdateBalanceTransaction,
    UpdateCustomer,
    evolve,
    evolve_transaction,
    ledgers,
)
from ledgerd.domain.errors import (
    BalanceOverflow,
    Conflict,
    CurrencyMismatch,
    DomainError,
    InvalidParameter,
    ResourceMissing,
)
from ledgerd.domain.log import GENESIS_HASH, RecordedEvent, event_hash
from ledgerd.domain.money import MAX_AMOUNT, balance_in_bounds, normalize_currency
from ledgerd.domain.values import Profile
from ledgerd.projections.sql import Rows
from ledgerd.service.commands.errors import IdempotencyConflict
from ledgerd.service.commands.handle import execute
from ledgerd.service.commands.idempotency import IdempotencyRequest
from ledgerd.service.commands.requests import Outcome, RequestContext
from ledgerd.service.store.base import EventStore, GlobalCursor
from ledgerd.service.store.memory import MemoryEventStore

ACCOUNT = "acct_machine"
LIVEMODE = False
START_US = 1_700_000_000_000_000
KEYS = ("k0", "k1", "k2", "k3")
T = TypeVar("T")


# --- store drivers -----------------------------------------------------------------------------------


class StoreDriver(Protocol):
    store: EventStore

    async def start(self) -> None: ...

    async def count_events(self) -> int: ...

    async def finish(self, model: Model) -> None:
        """End-of-example checks (only run when every step passed)."""

    async def close(self) -> None: ...


class MemoryDriver:
    def __init__(self) -> None:
        self.memory = MemoryEventStore()
        self.store: EventStore = self.memory

    async def start(self) -> None:
        return None

    async def count_events(self) -> int:
        return len(self.memory.state.events)

    async def finish(self, model: Model) -> None:
        return None

    async def close(self) -> None:
        return None


# --- the model ---------------------------------------------------------------------------------------


@dataclass
class Entry:
    txn: str
    amount: int
    currency: str
    kind: str
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelCustomer:
    id: str
    version: int
    email: str | None
    metadata: dict[str, str]
    currency: str | None = None
    deleted: bool = False
    entries: list[Entry] = field(default_factory=list)

    @property
    def balance(self) -> int:
        """The customer's own currency's balance."""
        return self.balance_in(self.currency) if self.currency is not None else 0

    def balance_in(self, currency: str) -> int:
        return sum(entry.amount for entry in self.entries if entry.currency == currency)

    def ledgers(self) -> dict[str, int]:
        codes = {entry.currency for entry in self.entries} | ({self.currency} if self.currency else set())
        return {code: self.balance_in(code) for code in codes}


@dataclass
class Model:
    customers: dict[str, ModelCustomer] = field(default_factory=dict)
    events: int = 0

    def live(self, customer_id: str) -> ModelCustomer | None:
        customer = self.customers.get(customer_id)
        return customer if customer is not None and not customer.deleted else None


@dataclass(frozen=True)
class Reject:
    error: type[Exception]
    param: str
    before_execution: bool = False  # validation errors are not recorded under an idempotency key


@dataclass
class Accept:
    event_types: list[str]
    commit: Callable[[], None]


@dataclass(frozen=True)
class KeyUse:
    command: AnyCommand
    method: str
    path: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    params: dict[str, Any]
    status: int
    response: bytes


def merge(current: dict[str, str], patch: dict[str, str | None] | None) -> dict[str, str]:
    if not patch:
        return {}
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def render(rows: Rows) -> dict[str, Any]:
    [row] = (row for (table, _), row in rows.items() if table == "customers")
    return {"customer": row["id"], "version": row["version"], "balance": row["balance"], "currency": row["currency"]}


def respond_error(error: DomainError) -> tuple[int, bytes]:
    status = 404 if isinstance(error, ResourceMissing) else 400
    return status, msgspec.json.encode({"code": error.code, "param": error.param, "message": error.message})


def changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    return "x"


# --- strategies --------------------------------------------------------------------------------------

small_amounts = st.integers(min_value=-1000, max_value=1000).filter(bool)
amounts = st.one_of(
    small_amounts,
    small_amounts,
    st.integers(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT),
    st.sampled_from([0, MAX_AMOUNT, -MAX_AMOUNT, MAX_AMOUNT + 1, -MAX_AMOUNT - 1]),
)
currencies = st.sampled_from(["usd", "usd", "usd", "usd", "eur", "jpy", "kwd", "USD", "xyz"])
metadata_values = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(["a", "b"]), max_size=3)
metadata_patches = st.none() | st.dictionaries(
    st.sampled_from(KEYS), st.none() | st.sampled_from(["a", "b"]), max_size=3
)
emails: st.SearchStrategy[str | UnsetType | None] = st.sampled_from(
    [UNSET, None, "x@example.com", "y@example.com"]
)


# --- the machine -------------------------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    driver_factory: ClassVar[Callable[[], StoreDriver]] = MemoryDriver

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        self.driver = type(self).driver_factory()
        self.model = Model()
        self.clock = START_US
        self.counter = 0
        self.keys: dict[str, KeyUse] = {}
        self.recorded: dict[str, Recorded] = {}
        self.currency_seen: dict[str, str] = {}  # first currency the store showed for a customer
        self.broken = False
        self.started = False

    # -- plumbing

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self.runner.run(coro)
        except BaseException:
            self.broken = True
            raise

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter:04d}"

    def tick(self) -> int:
        self.clock += 1_000_003
        return self.clock

    def context(self) -> RequestContext:
        return RequestContext(
            account=ACCOUNT, livemode=LIVEMODE, occurred_at_us=self.tick(), request_id=self.next_id("req")
        )

    def customer_ids(self, data: st.DataObject) -> str:
        """Mostly a live customer; sometimes a deleted or an unknown one."""
        live = sorted(customer.id for customer in self.model.customers.values() if not customer.deleted)
        if live and data.draw(st.integers(min_value=0, max_value=9), label="pick live") < 8:
            return data.draw(st.sampled_from(live), label="customer")
        return data.draw(st.sampled_from([*sorted(self.model.customers), "cus_missing"]), label="customer")

    def teardown(self) -> None:
        try:
            if self.started and not self.broken:
                self.run(self.driver.finish(self.model))
        finally:
            try:
                if self.started:
                    self.runner.run(self.driver.close())
            finally:
                self.runner.close()

    @initialize(currencies=st.lists(st.none() | st.sampled_from(["usd", "jpy"]), min_size=1, max_size=3))
    def start(self, currencies: list[str | None]) -> None:
        self.run(self.driver.start())
        self.started = True
        for currency in currencies:  # a few live customers to work on from the first step
            self.create(0, currency, None, {}, False)

    # -- executing a command and checking its outcome against the model

    def perform(
        self, command: AnyCommand, method: str, path: str, params: dict[str, Any], keyed: bool
    ) -> None:
        use = KeyUse(command, method, path, params)
        key = None
        if keyed:
            key = self.next_id("idem")
            self.keys[key] = use
        self.execute_checked(use, key)

    def execute_checked(self, use: KeyUse, key: str | None, differing: list[str] | None = None) -> None:
        self.run(self._execute_checked(use, key, differing))

    async def _execute_checked(self, use: KeyUse, key: str | None, differing: list[str] | None) -> None:
        before = await self.driver.count_events()
        idempotency = IdempotencyRequest(key, use.method, use.path, use.params) if key else None

        async def go() -> Outcome:
            return await execute(
                self.driver.store,
                use.command,
                self.context(),
                idempotency=idempotency,
                render=render,
                render_error=respond_error,
            )

        if key is not None and key in self.recorded:
            original = self.recorded[key]
            if (use.method, use.path) != (original.method, original.path):
                try:
                    await go()
                except IdempotencyConflict as error:
                    assert error.other_path == original.path
                else:
                    raise AssertionError("a key reused on another endpoint must conflict")
            elif use.params != original.params:
                assert differing is not None
                try:
                    await go()
                except IdempotencyConflict as error:
                    assert error.differences == differing, (error.differences, differing)
                    assert error.other_path is None
                else:
                    raise AssertionError("a key reused with other parameters must conflict")
            else:
                outcome = await go()
                assert outcome.replayed
                assert (outcome.status, outcome.response) == (original.status, original.response)
                assert outcome.events == []
            assert await self.driver.count_events() == before, "an idempotent retry appended events"
            return

        expectation = self.expect(use.command)
        try:
            outcome = await go()
        except DomainError as error:
            assert isinstance(expectation, Reject), f"unexpected rejection {error!r}"
            assert type(error) is expectation.error, (error, expectation)
            assert error.param == expectation.param, (error.param, expectation)
            assert await self.driver.count_events() == before, "a rejected command appended events"
            if key is not None and not expectation.before_execution:
                status, body = respond_error(error)
                self.recorded[key] = Recorded(use.method, use.path, use.params, status, body)
            return
        assert isinstance(expectation, Accept), f"expected {expectation}, got {outcome}"
        assert not outcome.replayed
        assert [event.event_type for event in outcome.events] == expectation.event_types
        assert await self.driver.count_events() == before + len(expectation.event_types)
        expectation.commit()
        customer = self.model.customers[outcome.customer_id]
        assert outcome.state.version == customer.version
        assert outcome.state.balance == customer.balance
        assert outcome.state.currency == customer.currency
        assert outcome.status == 200
        if key is not None:
            self.recorded[key] = Recorded(use.method, use.path, use.params, outcome.status, outcome.response)

    def expect(self, command: AnyCommand) -> Reject | Accept:
        if isinstance(command, CreateCustomer):
            return self.expect_create(command)
        if isinstance(command, UpdateCustomer):
            return self.expect_update(command)
        if isinstance(command, DeleteCustomer):
            return self.expect_delete(command)
        if isinstance(command, AdjustBalance):
            return self.expect_adjust(command)
        return self.expect_transaction_update(command)

    # -- the model's expectations

    def expect_create(self, command: CreateCustomer) -> Reject | Accept:
        if abs(command.balance) > MAX_AMOUNT:
            return Reject(InvalidParameter, "balance", before_execution=True)
        if command.currency is not None and normalize_currency(command.currency) != command.currency:
            return Reject(InvalidParameter, "currency", before_execution=True)
        if command.customer_id in self.model.customers:
            return Reject(Conflict, "id")
        if command.balance != 0 and command.currency is None:
            return Reject(InvalidParameter, "currency")
        types = ["CustomerCreated"] + (["BalanceAdjusted"] if command.balance else [])

        def commit() -> None:
            customer = ModelCustomer(
                id=command.customer_id,
                version=len(types),
                email=command.profile.email,
                metadata=dict(command.profile.metadata),
                currency=command.currency,
            )
            if command.balance:
                assert command.currency is not None and command.initial_transaction_id is not None
                customer.entries.append(
                    Entry(command.initial_transaction_id, command.balance, command.currency, "initial")
                )
            self.model.customers[command.customer_id] = customer
            self.model.events += len(types)

        return Accept(types, commit)

    def expect_update(self, command: UpdateCustomer) -> Reject | Accept:
        if command.balance is not UNSET and abs(command.balance) > MAX_AMOUNT:
            return Reject(InvalidParameter, "balance", before_execution=True)
        if command.currency is not UNSET and normalize_currency(command.currency) != command.currency:
            return Reject(InvalidParameter, "currency", before_execution=True)
        customer = self.model.live(command.customer_id)
        if customer is None:
            return Reject(ResourceMissing, "id")
        email = customer.email if command.patch.email is UNSET else command.patch.email
        metadata = customer.metadata
        if command.patch.metadata is not UNSET:
            metadata = merge(customer.metadata, command.patch.metadata)
        currency = customer.currency
        if command.currency is not UNSET and command.currency != customer.currency:
            if customer.currency is not None:
                return Reject(CurrencyMismatch, "currency")
            currency = command.currency
        types = []
        if (email, metadata, currency) != (customer.email, customer.metadata, customer.currency):
            types.append("CustomerUpdated")
        amount = 0
        if command.balance is not UNSET and command.balance != customer.balance:
            if currency is None:
                return Reject(InvalidParameter, "balance")
            amount = command.balance - customer.balance
            if abs(amount) > MAX_AMOUNT:  # one ledger entry may not exceed the amount bound
                return Reject(InvalidParameter, "balance")
            types.append("BalanceAdjusted")

        def commit() -> None:
            customer.email, customer.metadata, customer.currency = email, metadata, currency
            if amount:
                assert currency is not None and command.adjustment_transaction_id is not None
                customer.entries.append(
                    Entry(command.adjustment_transaction_id, amount, currency, "adjustment")
                )
            customer.version += len(types)
            self.model.events += len(types)

        return Accept(types, commit)

    def expect_delete(self, command: DeleteCustomer) -> Reject | Accept:
        customer = self.model.live(command.customer_id)
        if customer is None:
            return Reject(ResourceMissing, "id")

        def commit() -> None:
            customer.deleted = True
            customer.version += 1
            self.model.events += 1

        return Accept(["CustomerDeleted"], commit)

    def expect_adjust(self, command: AdjustBalance) -> Reject | Accept:
        if abs(command.amount) > MAX_AMOUNT or command.amount == 0:
            return Reject(InvalidParameter, "amount", before_execution=True)
        if normalize_currency(command.currency) != command.currency:
            return Reject(InvalidParameter, "currency", before_execution=True)
        customer = self.model.live(command.customer_id)
        if customer is None:
            return Reject(ResourceMissing, "customer")
        if not balance_in_bounds(customer.balance_in(command.currency) + command.amount):  # that ledger
            return Reject(BalanceOverflow, "amount")

        def commit() -> None:
            customer.currency = customer.currency or command.currency
            customer.entries.append(
                Entry(
                    command.transaction_id,
                    command.amount,
                    command.currency,
                    "adjustment",
                    command.description,
                    dict(command.metadata),
                )
            )
            customer.version += 1
            self.model.events += 1

        return Accept(["BalanceAdjusted"], commit)

    def expect_transaction_update(self, command: UpdateBalanceTransaction) -> Reject | Accept:
        customer = self.model.live(command.customer_id)
        if customer is None:
            return Reject(ResourceMissing, "customer")
        entry = next((entry for entry in customer.entries if entry.txn == command.transaction_id), None)
        if entry is None:
            return Reject(ResourceMissing, "transaction")
        description = entry.description if command.description is UNSET else command.description
        metadata = entry.metadata if command.metadata is UNSET else merge(entry.metadata, command.metadata)
        if (description, metadata) == (entry.description, entry.metadata):
            return Accept([], lambda: None)

        def commit() -> None:
            entry.description, entry.metadata = description, metadata
            customer.version += 1
            self.model.events += 1

        return Accept(["BalanceTransactionUpdated"], commit)

    # -- rules

    @rule(
        balance=st.just(0) | amounts,
        currency=st.none() | currencies,
        email=st.none() | st.just("c@example.com"),
        metadata=metadata_values,
        keyed=st.booleans(),
        reuse=st.integers(min_value=0, max_value=9),
    )
    def create(
        self,
        balance: int,
        currency: str | None,
        email: str | None,
        metadata: dict[str, str],
        keyed: bool,
        reuse: int = 0,
    ) -> None:
        customer_id = self.next_id("cus")
        if reuse == 9 and self.model.customers:  # now and then, an id that is already taken
            customer_id = sorted(self.model.customers)[self.counter % len(self.model.customers)]
        command = CreateCustomer(
            customer_id=customer_id,
            occurred_at=self.tick(),
            account=ACCOUNT,
            livemode=LIVEMODE,
            profile=Profile(invoice_prefix="MACHINE1", email=email, metadata=metadata),
            balance=balance,
            currency=currency,
            initial_transaction_id=self.next_id("cbtxn"),
        )
        params = {"balance": balance, "currency": currency, "email": email, "metadata": metadata}
        self.perform(command, "POST", "/v1/customers", params, keyed)

    @rule(
        data=st.data(),
        email=emails,
        metadata=st.just(UNSET) | metadata_patches,
        balance=st.just(UNSET) | amounts,
        currency=st.just(UNSET) | currencies,
        keyed=st.booleans(),
    )
    def update(
        self,
        data: st.DataObject,
        email: str | UnsetType | None,
        metadata: dict[str, str | None] | UnsetType | None,
        balance: int | UnsetType,
        currency: str | UnsetType,
        keyed: bool,
    ) -> None:
        customer_id = self.customer_ids(data)
        command = UpdateCustomer(
            customer_id=customer_id,
            occurred_at=self.tick(),
            patch=ProfilePatch(email=email, metadata=metadata),
            balance=balance,
            currency=currency,
            adjustment_transaction_id=self.next_id("cbtxn"),
        )
        params = {
            name: value
            for name, value in (
                ("email", email),
                ("metadata", metadata),
                ("balance", balance),
                ("currency", currency),
            )
            if value is not UNSET
        }
        self.perform(command, "POST", f"/v1/customers/{customer_id}", params, keyed)

    @rule(data=st.data(), keyed=st.booleans())
    def delete(self, data: st.DataObject, keyed: bool) -> None:
        customer_id = self.customer_ids(data)
        command = DeleteCustomer(customer_id=customer_id, occurred_at=self.tick())
        self.perform(command, "DELETE", f"/v1/customers/{customer_id}", {}, keyed)

    @rule(
        data=st.data(),
        amount=amounts,
        currency=currencies,
        description=st.none() | st.sampled_from(["refund", "fee"]),
        metadata=metadata_values,
        keyed=st.booleans(),
    )
    def adjust(
        self,
        data: st.DataObject,
        amount: int,
        currency: str,
        description: str | None,
        metadata: dict[str, str],
        keyed: bool,
    ) -> None:
        customer_id = self.customer_ids(data)
        # Prefer the customer's own currency most of the time, so that balances grow.
        own = self.model.customers.get(customer_id)
        if own is not None and own.currency is not None and data.draw(st.booleans(), label="own currency"):
            currency = own.currency
        command = AdjustBalance(
            customer_id=customer_id,
            occurred_at=self.tick(),
            transaction_id=self.next_id("cbtxn"),
            amount=amount,
            currency=currency,
            description=description,
            metadata=metadata,
        )
        params = {"amount": amount, "currency": currency, "description": description, "metadata": metadata}
        self.perform(command, "POST", f"/v1/customers/{customer_id}/balance_transactions", params, keyed)

    @rule(
        data=st.data(),
        description=st.just(UNSET) | st.none() | st.sampled_from(["refund", "changed"]),
        metadata=st.just(UNSET) | metadata_patches,
        keyed=st.booleans(),
    )
    def update_transaction(
        self,
        data: st.DataObject,
        description: str | UnsetType | None,
        metadata: dict[str, str | None] | UnsetType | None,
        keyed: bool,
    ) -> None:
        customer_id = self.customer_ids(data)
        customer = self.model.customers.get(customer_id)
        own = [entry.txn for entry in customer.entries] if customer is not None else []
        if own and data.draw(st.integers(min_value=0, max_value=9), label="own transaction") < 8:
            txn = data.draw(st.sampled_from(own), label="transaction")
        else:
            every = sorted(entry.txn for other in self.model.customers.values() for entry in other.entries)
            txn = data.draw(st.sampled_from([*every, "cbtxn_missing"]), label="transaction")
        command = UpdateBalanceTransaction(
            customer_id=customer_id,
            occurred_at=self.tick(),
            transaction_id=txn,
            description=description,
            metadata=metadata,
        )
        params = {
            name: value
            for name, value in (("description", description), ("metadata", metadata))
            if value is not UNSET
        }
        path = f"/v1/customers/{customer_id}/balance_transactions/{txn}"
        self.perform(command, "POST", path, params, keyed)

    @precondition(lambda self: self.keys)
    @rule(data=st.data())
    def retry_same_key_same_params(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.keys)), label="key")
        self.execute_checked(self.keys[key], key)

    @precondition(lambda self: self.recorded)
    @rule(data=st.data(), how=st.sampled_from(["value", "extra", "nested", "endpoint"]))
    def retry_same_key_changed_params(self, data: st.DataObject, how: str) -> None:
        key = data.draw(st.sampled_from(sorted(self.recorded)), label="key")
        use = self.keys[key]
        params = dict(use.params)
        scalars = sorted(name for name, value in params.items() if not isinstance(value, dict))
        nested = sorted(name for name, value in params.items() if isinstance(value, dict) and value)
        differing: list[str] = []
        if how == "endpoint":
            changed_use = KeyUse(use.command, use.method, use.path + "/other", params)
        else:
            if how == "value" and scalars:
                name = data.draw(st.sampled_from(scalars), label="param")
                params[name] = changed(params[name])
                differing = [name]
            elif how == "nested" and nested:
                name = data.draw(st.sampled_from(nested), label="param")
                inner = dict(params[name])
                sub = data.draw(st.sampled_from(sorted(inner)), label="sub-param")
                inner[sub] = changed(inner[sub])
                params[name] = inner
                differing = [f"{name}[{sub}]"]
            else:
                params["extra"] = "added"
                differing = ["extra"]
            changed_use = KeyUse(use.command, use.method, use.path, params)
        self.execute_checked(changed_use, key, differing)

    # -- invariants

    @invariant()
    def store_matches_model(self) -> None:
        if self.started:
            self.run(self.check_store())

    async def read_log(self) -> list[RecordedEvent]:
        """The gap-safe global log, read in small pages to exercise the cursors."""
        log: list[RecordedEvent] = []
        cursor = GlobalCursor()
        while True:
            page = await self.driver.store.read_all(cursor, limit=7)
            log.extend(page)
            if len(page) < 7:
                return log
            cursor = GlobalCursor(page[-1].tx_id, page[-1].position)

    async def check_store(self) -> None:
        store = self.driver.store
        count = await self.driver.count_events()
        assert count == self.model.events
        # Every event exactly once, in (tx_id, position) order. On a shared PostgreSQL server another
        # session's open transaction may hold the gap-safe horizon back for a moment (a stall, never a
        # skip): wait for it rather than fail.
        for _ in range(400):
            log = await self.read_log()
            if len(log) >= count:
                break
            await asyncio.sleep(0.025)
        assert len(log) == count
        assert len({event.event_id for event in log}) == len(log)
        keys = [(event.tx_id, event.position) for event in log]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        assert {event.stream_id for event in log} == {
            customer.id for customer in self.model.customers.values() if customer.version
        }
        for customer in self.model.customers.values():
            stream = await store.load_stream(customer.id)
            assert [event.event_id for event in stream] == [
                event.event_id for event in log if event.stream_id == customer.id
            ]
            self.check_stream(customer, stream)

    def check_stream(self, customer: ModelCustomer, stream: list[RecordedEvent]) -> None:
        # versions contiguous from 1, and the hash chain recomputes from the genesis hash
        assert [event.stream_version for event in stream] == list(range(1, len(stream) + 1))
        assert len(stream) == customer.version
        head = GENESIS_HASH
        for event in stream:
            head = event_hash(head, event)
            assert head == event.hash, f"hash chain broken at {event.stream_id} v{event.stream_version}"
        # the ledger: balance = sum of amounts = last ending balance, and the ending_balance chain
        state = INITIAL_STATE
        entries: list[BalanceAdjusted] = []
        running: dict[str, int] = {}  # per currency
        first_currency: str | None = None  # the first one set: at creation, by an update or an entry
        for recorded in stream:
            domain_event = recorded.event
            state = evolve(state, domain_event)
            if isinstance(domain_event, CustomerCreated):
                first_currency = domain_event.currency
            if isinstance(domain_event, BalanceAdjusted):
                previous = running.get(domain_event.currency, 0)
                assert domain_event.ending_balance == previous + domain_event.amount
                running[domain_event.currency] = domain_event.ending_balance
                entries.append(domain_event)
                first_currency = first_currency or domain_event.currency
            if isinstance(domain_event, CustomerUpdated) and domain_event.changes.currency is not UNSET:
                assert domain_event.previous.currency is None, "currency changed after it was set"
                first_currency = first_currency or domain_event.changes.currency
        for code, ending in running.items():
            assert sum(entry.amount for entry in entries if entry.currency == code) == ending
        assert ledgers(state) == {**({first_currency: 0} if first_currency else {}), **running}
        assert state.currency == first_currency
        assert state.balance == (running.get(first_currency, 0) if first_currency else 0)
        # the currency never changes once the store has shown one
        if state.currency is not None:
            assert self.currency_seen.setdefault(customer.id, state.currency) == state.currency
        else:
            assert customer.id not in self.currency_seen
        # and the store agrees with the model
        assert state.deleted == customer.deleted
        assert state.currency == customer.currency
        assert state.balance == customer.balance
        assert ledgers(state) == customer.ledgers()
        assert state.profile.email == customer.email
        assert state.profile.metadata == customer.metadata
        assert [(e.transaction_id, e.amount, e.currency, e.type) for e in entries] == [
            (m.txn, m.amount, m.currency, m.kind) for m in customer.entries
        ]
        for model_entry in customer.entries:
            txn_state = BalanceTransactionState(transaction_id=model_entry.txn)
            for recorded in stream:
                txn_state = evolve_transaction(txn_state, recorded.event)
            assert txn_state.found
            assert (txn_state.description, txn_state.metadata) == (
                model_entry.description,
                model_entry.metadata,
            )


LedgerMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLedgerMachineInMemory = LedgerMachine.TestCase
