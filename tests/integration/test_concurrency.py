"""Concurrency at the core, on real PostgreSQL through the command handler: no lost update on a hot
customer, one customer per external_id under racing upserts, one append per idempotency key."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from ledgerd.domain.customer import (
    AdjustBalance,
    CreateCustomer,
    ProfilePatch,
    UpdateCustomer,
    UpsertCustomer,
)
from ledgerd.domain.values import Profile
from ledgerd.projections.sql import Rows
from ledgerd.service.commands.errors import IdempotencyConflict
from ledgerd.service.commands.handle import execute
from ledgerd.service.commands.idempotency import IdempotencyRequest
from ledgerd.service.commands.requests import RequestContext
from ledgerd.service.commands.runner import SoloRunner
from ledgerd.service.store.postgres import PostgresEventStore

ACCOUNT = "acct_concurrency"
T0 = 1_700_000_000_000_000
CONTEXT = RequestContext(account=ACCOUNT, livemode=False, occurred_at_us=T0, request_id="req_c")


@pytest_asyncio.fixture(loop_scope="session")
async def big_pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_url, min_size=4, max_size=20)
    try:
        yield pool
    finally:
        await pool.close()


def render(rows: Rows) -> dict[str, object]:
    [(table, customer_id)] = [key for key in rows if key[0] == "customers"]
    return {"customer": customer_id, "version": rows[(table, customer_id)]["version"]}


async def create_customer(store: PostgresEventStore, customer_id: str, currency: str | None = "usd") -> None:
    command = CreateCustomer(
        customer_id=customer_id,
        occurred_at=T0,
        account=ACCOUNT,
        livemode=False,
        profile=Profile(invoice_prefix="CONC"),
        currency=currency,
    )
    await execute(store, command, CONTEXT)


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 4, 16])
async def test_64_concurrent_adjustments_on_one_customer(big_pool: asyncpg.Pool, processes: int) -> None:
    """One process queues a hot customer's commands in memory; several processes (one runner each)
    race for the stream and the losers decide again: either way, 0 lost updates, 0 errors."""
    store = PostgresEventStore(big_pool)
    runners = [SoloRunner(store) for _ in range(processes)]
    await create_customer(store, "cus_hot")
    rng = random.Random(64)
    amounts = [rng.choice([-1, 1]) * rng.randint(1, 1_000_000) for _ in range(64)]
    commands = [
        AdjustBalance(
            customer_id="cus_hot",
            occurred_at=T0,
            transaction_id=f"cbtxn_{i:02d}",
            amount=amount,
            currency="usd",
        )
        for i, amount in enumerate(amounts)
    ]
    outcomes = await asyncio.gather(
        *(execute(store, command, CONTEXT, runner=runners[i % processes]) for i, command in enumerate(commands))
    )
    # every command succeeded once, with its own ledger entry
    assert all(len(outcome.events) == 1 and not outcome.replayed for outcome in outcomes)
    for outcome, command in zip(outcomes, commands, strict=True):
        assert outcome.events[0].data["transaction_id"] == command.transaction_id
        assert outcome.state.balance == outcome.events[0].data["ending_balance"]
    stream = await store.load_stream("cus_hot")
    assert [event.stream_version for event in stream] == list(range(1, 66))
    entries = [event.data for event in stream[1:]]
    assert sorted(entry["transaction_id"] for entry in entries) == sorted(c.transaction_id for c in commands)
    running = 0
    for entry in entries:
        assert entry["ending_balance"] == running + entry["amount"]
        running = entry["ending_balance"]
    assert running == sum(amounts)
    row = await big_pool.fetchrow("SELECT balance, version FROM customers WHERE id = 'cus_hot'")
    assert (row["balance"], row["version"]) == (sum(amounts), 65)
    ledger = await big_pool.fetch(
        "SELECT amount, ending_balance, version FROM balance_transactions WHERE customer_id = 'cus_hot' ORDER BY version"
    )
    assert [entry["version"] for entry in ledger] == list(range(2, 66))
    assert [(entry["amount"], entry["ending_balance"]) for entry in ledger] == [
        (entry["amount"], entry["ending_balance"]) for entry in entries
    ]


async def test_16_concurrent_upserts_with_one_external_id_make_one_customer(big_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(big_pool)

    def upsert(i: int) -> UpsertCustomer:
        create = CreateCustomer(
            customer_id=f"cus_upsert_{i:02d}",
            occurred_at=T0,
            account=ACCOUNT,
            livemode=False,
            profile=Profile(invoice_prefix="UPS", external_id="ext-shared", name="first"),
        )
        update = UpdateCustomer(customer_id="", occurred_at=T0, patch=ProfilePatch(name="seen again"))
        return UpsertCustomer(create=create, update=update)

    outcomes = await asyncio.gather(*(execute(store, upsert(i), CONTEXT) for i in range(16)))
    ids = {outcome.customer_id for outcome in outcomes}
    assert len(ids) == 1
    (winner,) = ids
    assert await big_pool.fetchval("SELECT count(*) FROM streams") == 1
    rows = await big_pool.fetch("SELECT id, name FROM customers WHERE external_id = 'ext-shared'")
    assert [(row["id"], row["name"]) for row in rows] == [(winner, "seen again")]
    assert await big_pool.fetchval("SELECT count(*) FROM customers") == 1
    types = [
        row["event_type"] for row in await big_pool.fetch("SELECT event_type FROM events ORDER BY position")
    ]
    assert types == ["CustomerCreated", "CustomerUpdated"]  # later upserts change nothing
    assert (
        sum(1 for outcome in outcomes if outcome.events and outcome.events[0].event_type == "CustomerCreated")
        == 1
    )


async def test_one_idempotency_key_used_16_times_concurrently_appends_once(big_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(big_pool)
    await create_customer(store, "cus_idem")
    command = AdjustBalance(
        customer_id="cus_idem", occurred_at=T0, transaction_id="cbtxn_once", amount=250, currency="usd"
    )
    request = IdempotencyRequest(
        "key-shared", "POST", "/v1/customers/cus_idem/balance_transactions", {"amount": 250}
    )
    outcomes = await asyncio.gather(
        *(execute(store, command, CONTEXT, idempotency=request, render=render) for _ in range(16))
    )
    originals = [outcome for outcome in outcomes if not outcome.replayed]
    assert len(originals) == 1
    assert all(outcome.events == [] for outcome in outcomes if outcome.replayed)
    assert {(outcome.status, outcome.response) for outcome in outcomes} == {(200, originals[0].response)}
    assert await big_pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'cus_idem'") == 2
    assert await big_pool.fetchval("SELECT balance FROM customers WHERE id = 'cus_idem'") == 250
    assert await big_pool.fetchval("SELECT count(*) FROM idempotency_keys") == 1


async def test_one_key_with_different_parameters_concurrently(big_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(big_pool)
    await create_customer(store, "cus_idem")

    async def attempt(amount: int) -> str:
        command = AdjustBalance(
            customer_id="cus_idem",
            occurred_at=T0,
            transaction_id=f"cbtxn_{amount}",
            amount=amount,
            currency="usd",
        )
        request = IdempotencyRequest(
            "key-racing", "POST", "/v1/customers/cus_idem/balance_transactions", {"amount": amount}
        )
        try:
            await execute(store, command, CONTEXT, idempotency=request, render=render)
        except IdempotencyConflict as conflict:
            assert conflict.differences == ["amount"]
            return "conflict"
        return "done"

    results = await asyncio.gather(*(attempt(amount) for amount in range(1, 9)))
    assert sorted(results) == ["conflict"] * 7 + ["done"]
    assert await big_pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'BalanceAdjusted'") == 1


@pytest.mark.slow
@pytest.mark.parametrize("customers", [8])
async def test_concurrent_commands_on_many_customers(big_pool: asyncpg.Pool, customers: int) -> None:
    """Creates and adjustments racing across customers: no deadlock, no error, every ledger adds up."""
    store = PostgresEventStore(big_pool)
    rng = random.Random(8)
    ids = [f"cus_many_{i}" for i in range(customers)]
    await asyncio.gather(*(create_customer(store, cid, currency=None) for cid in ids))
    plan = [(rng.choice(ids), rng.randint(1, 999)) for _ in range(96)]
    await asyncio.gather(
        *(
            execute(
                store,
                AdjustBalance(
                    customer_id=cid,
                    occurred_at=T0,
                    transaction_id=f"cbtxn_m{i}",
                    amount=amount,
                    currency="eur",
                ),
                CONTEXT,
            )
            for i, (cid, amount) in enumerate(plan)
        )
    )
    for cid in ids:
        expected = sum(amount for target, amount in plan if target == cid)
        row = await big_pool.fetchrow("SELECT balance, currency FROM customers WHERE id = $1", cid)
        assert row["balance"] == expected
        assert row["currency"] == ("eur" if expected else None)
