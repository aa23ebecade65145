"""Properties of the audit functions over random histories driven through the real command handler,
with a clock the test controls:

* the balance as of any instant (folded from the log) equals the ending_balance of the last ledger entry
  at or before that instant (0 before the first), and the customer as of now is what the API serves;
* an export re-imported into an empty store verifies, and rebuilds projections identical to the
  source's, row for row.
"""

from __future__ import annotations

import io
import itertools
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerd.domain.customer import (
    AdjustBalance,
    AnyCommand,
    CreateCustomer,
    DeleteCustomer,
    ProfilePatch,
    UpdateBalanceTransaction,
    UpdateCustomer,
)
from ledgerd.domain.values import Profile
from ledgerd.projections.objects import render_customer
from ledgerd.service.audit import export_jsonl, import_jsonl, verify
from ledgerd.service.pointintime import balance_at, customer_as_of, end_of_second
from ledgerd.service.rebuild import rebuild
from ledgerd.service.store.postgres import PostgresEventStore
from tests.integration.test_audit import ACCOUNT, T0, dump, run_command, settle
from tests.support.databases import create_database, drop_database, with_database

EXAMPLES = itertools.count()

# (kind, customer slot, amount, clock step in microseconds)
STEPS = st.sampled_from([0, 1, 300_000, 999_999, 1_000_000, 2_500_000, 60_000_000])
COMMANDS = st.lists(
    st.tuples(
        st.sampled_from(
            ["create", "adjust", "adjust", "adjust", "set_balance", "rename", "describe", "delete"]
        ),
        st.integers(0, 3),
        st.integers(-5_000, 5_000),
        STEPS,
    ),
    min_size=1,
    max_size=25,
)


async def play(store: PostgresEventStore, prefix: str, script: list[tuple[str, int, int, int]]) -> list[str]:
    """Run the script; returns the ids of the customers it created."""
    clock = T0
    created: list[str] = []
    transactions: dict[str, list[str]] = {}
    for index, (kind, slot, amount, step) in enumerate(script):
        clock += step
        cid = f"cus_{prefix}_{slot}"
        command: AnyCommand
        if kind == "create" or cid not in created:
            command = CreateCustomer(
                customer_id=cid,
                occurred_at=clock,
                account=ACCOUNT,
                livemode=False,
                profile=Profile(invoice_prefix=f"P{prefix[:6].upper()}{slot}", name="Ada"),
                balance=amount if slot % 2 else 0,
                currency="usd",
                initial_transaction_id=f"cbtxn_{prefix}_{index}",
            )
        elif kind == "adjust":
            command = AdjustBalance(
                customer_id=cid,
                occurred_at=clock,
                transaction_id=f"cbtxn_{prefix}_{index}",
                amount=amount,
                currency="usd",
            )
        elif kind == "set_balance":
            command = UpdateCustomer(
                customer_id=cid,
                occurred_at=clock,
                balance=amount,
                adjustment_transaction_id=f"cbtxn_{prefix}_{index}",
            )
        elif kind == "rename":
            command = UpdateCustomer(
                customer_id=cid, occurred_at=clock, patch=ProfilePatch(name=f"N{amount}")
            )
        elif kind == "describe" and transactions.get(cid):
            command = UpdateBalanceTransaction(
                customer_id=cid,
                occurred_at=clock,
                transaction_id=transactions[cid][amount % len(transactions[cid])],
                description=f"d{amount}",
            )
        else:
            command = DeleteCustomer(customer_id=cid, occurred_at=clock)
        outcome = await run_command(store, command, clock)
        if outcome is None:
            continue
        if kind == "create" or cid not in created:
            created.append(cid)
        for event in outcome.events:
            if event.event_type == "BalanceAdjusted":
                transactions.setdefault(cid, []).append(event.data["transaction_id"])
    return created


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=COMMANDS)
async def test_balance_as_of_any_instant_is_the_last_entry_at_or_before_it(
    pool: asyncpg.Pool, script: list[tuple[str, int, int, int]]
) -> None:
    prefix = f"p{next(EXAMPLES)}{secrets.token_hex(2)}"
    customers = await play(PostgresEventStore(pool), prefix, script)
    async with pool.acquire() as conn:
        for cid in customers:
            entries = await conn.fetch(
                "SELECT created, ending_balance FROM balance_transactions WHERE customer_id = $1 ORDER BY version",
                cid,
            )
            live = await conn.fetchrow("SELECT * FROM customers WHERE id = $1", cid)
            born = live["created"]
            instants = {born - 1, born} | {e["created"] + d for e in entries for d in (-1, 0, 1)}
            for instant in sorted(instants):
                expected = [e["ending_balance"] for e in entries if e["created"] <= instant]
                at = await balance_at(conn, cid, end_of_second(instant))
                customer = await customer_as_of(conn, ACCOUNT, False, cid, instant)
                if instant < born:
                    assert customer is None and not at.exists and not expected
                    continue
                assert at.exists
                assert at.balance == (expected[-1] if expected else 0), (cid, instant)
                if customer is not None and not customer.get("deleted"):
                    assert customer["balance"] == at.balance
            if not live["deleted"]:
                now = await customer_as_of(conn, ACCOUNT, False, cid, 4_000_000_000)
                assert now == render_customer(live)


@pytest_asyncio.fixture(loop_scope="session")
async def fresh_stores(
    admin_conn: asyncpg.Connection, database_url: str, template_db: str
) -> AsyncIterator[Any]:
    """A factory of fresh, empty, migrated stores (dropped at the end of the test)."""
    made: list[tuple[str, asyncpg.Pool]] = []

    async def make() -> asyncpg.Pool:
        name = f"ledger_t_{secrets.token_hex(6)}"
        await create_database(admin_conn, name, template_db)
        pool = await asyncpg.create_pool(with_database(database_url, name), min_size=1, max_size=6)
        made.append((name, pool))
        return pool

    try:
        yield make
    finally:
        for name, pool in made:
            await pool.close()
            await drop_database(admin_conn, name)


@pytest.mark.slow
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=COMMANDS)
async def test_an_export_reimported_verifies_and_rebuilds_identically(
    pool: asyncpg.Pool, fresh_stores: Any, script: list[tuple[str, int, int, int]]
) -> None:
    """The source accumulates every example's history; each example exports all of it."""
    await play(PostgresEventStore(pool), f"x{next(EXAMPLES)}{secrets.token_hex(2)}", script)
    await settle(pool)
    out = io.BytesIO()
    async with pool.acquire() as conn:
        summary = await export_jsonl(conn, out)
    target = await fresh_stores()
    imported = await import_jsonl(target, out.getvalue().splitlines())
    assert imported.events == summary.events == await pool.fetchval("SELECT count(*) FROM events")
    report = await verify(target)
    assert report.ok, report.summary()
    source = await dump(pool)
    await rebuild(target)
    assert await dump(target) == source
