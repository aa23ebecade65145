"""`service.rebuild`: a replay from zero into fresh tables gives exactly the inline projections; rebuild
repairs corrupted rows, keeps the schema (index and constraint names), and loses no concurrent write."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import pytest
from msgspec import UNSET

from ledgerd.domain.customer import (
    AdjustBalance,
    AnyCommand,
    BalanceAdjusted,
    CreateCustomer,
    DeleteCustomer,
    ProfilePatch,
    UpdateBalanceTransaction,
    UpdateCustomer,
)
from ledgerd.domain.errors import DomainError
from ledgerd.domain.log import EventMetadata, StreamHeader, prepare
from ledgerd.domain.values import Address, Profile
from ledgerd.projections import PROJECTION_TABLES
from ledgerd.service.audit import check_drift
from ledgerd.service.commands.handle import execute
from ledgerd.service.commands.requests import RequestContext
from ledgerd.service.rebuild import REBUILD_LOCK_ID, RebuildError, rebuild
from ledgerd.service.store.postgres import PostgresEventStore
from tests.support.appending import append

ACCOUNT = "acct_rebuild"
T0 = 1_700_000_000_000_000


def context(step: int, account: str = ACCOUNT) -> RequestContext:
    return RequestContext(
        account=account, livemode=False, occurred_at_us=T0 + step * 1_000_000, request_id=f"req_{step}"
    )


async def dump(pool: asyncpg.Pool) -> dict[str, list[str]]:
    """Every projection row as text, in a stable order."""
    return {
        table: [row["r"] for row in await pool.fetch(f"SELECT t::text AS r FROM {table} t ORDER BY 1")]
        for table in PROJECTION_TABLES
    }


async def schema_snapshot(pool: asyncpg.Pool) -> dict[str, Any]:
    tables = list(PROJECTION_TABLES)
    return {
        "columns": [
            tuple(row)
            for row in await pool.fetch(
                """SELECT table_name, ordinal_position, column_name, data_type, is_nullable, column_default
                   FROM information_schema.columns WHERE table_schema = 'public' AND table_name = any($1)
                   ORDER BY 1, 2""",
                tables,
            )
        ],
        "indexes": [
            tuple(row)
            for row in await pool.fetch(
                """SELECT tablename, indexname, indexdef FROM pg_indexes
                   WHERE schemaname = 'public' AND tablename = any($1) ORDER BY 1, 2""",
                tables,
            )
        ],
        "constraints": [
            tuple(row)
            for row in await pool.fetch(
                """SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid) FROM pg_constraint
                   WHERE conrelid::regclass::text = any($1) ORDER BY 1, 2""",
                tables,
            )
        ],
        "schemas": [row[0] for row in await pool.fetch("SELECT nspname FROM pg_namespace ORDER BY 1")],
    }


METADATA_PATCHES: list[dict[str, str | None] | None] = [{"k": "v"}, {"n": None}, None]
TXN_METADATA_PATCHES: list[dict[str, str | None] | None] = [{"x": "y"}, None]


async def random_history(store: PostgresEventStore, commands: int, seed: int) -> None:
    """A varied history through the real handler: creates (with and without balance, currency,
    external ids), updates (profile, metadata, balance), adjustments, transaction updates, deletes."""
    rng = random.Random(seed)
    customers: list[str] = []
    txns: dict[str, list[str]] = {}
    for step in range(commands):
        roll = rng.random()
        command: AnyCommand
        if not customers or roll < 0.2:
            cid = f"cus_{seed}_{step}"
            balance = rng.choice([0, 0, 500, -250])
            command = CreateCustomer(
                customer_id=cid,
                occurred_at=T0,
                account=ACCOUNT,
                livemode=False,
                profile=Profile(
                    invoice_prefix=f"P{step:05d}",
                    email=f"{cid}@example.com",
                    name=rng.choice([None, "Ada", "Grace"]),
                    address=rng.choice([None, Address(city="Paris", country="FR")]),
                    metadata={"n": str(step)},
                    external_id=rng.choice([None, f"ext-{seed}-{step}"]),
                ),
                balance=balance,
                currency=rng.choice(["usd", None]) if balance == 0 else "usd",
                initial_transaction_id=f"cbtxn_{seed}_{step}",
            )
            customers.append(cid)
        else:
            cid = rng.choice(customers)
            if roll < 0.55:
                command = AdjustBalance(
                    customer_id=cid,
                    occurred_at=T0,
                    transaction_id=f"cbtxn_{seed}_{step}",
                    amount=rng.choice([1, -1]) * rng.randint(1, 10_000),
                    currency=rng.choice(["usd", "usd", "usd", "eur"]),
                    description=rng.choice([None, "fee"]),
                    metadata=rng.choice([{}, {"k": "v"}]),
                )
            elif roll < 0.75:
                command = UpdateCustomer(
                    customer_id=cid,
                    occurred_at=T0,
                    patch=ProfilePatch(
                        name=rng.choice(["New", None]),
                        metadata=rng.choice(METADATA_PATCHES),
                    ),
                    balance=rng.choice([12_345, -7]) if rng.random() < 0.3 else UNSET,
                    currency="usd" if rng.random() < 0.3 else UNSET,
                    adjustment_transaction_id=f"cbtxn_{seed}_{step}",
                )
            elif roll < 0.9 and txns.get(cid):
                command = UpdateBalanceTransaction(
                    customer_id=cid,
                    occurred_at=T0,
                    transaction_id=rng.choice(txns[cid]),
                    description=rng.choice(["changed", None]),
                    metadata=rng.choice(TXN_METADATA_PATCHES),
                )
            else:
                command = DeleteCustomer(customer_id=cid, occurred_at=T0)
        try:
            outcome = await execute(store, command, context(step))
        except DomainError:
            continue
        for event in outcome.events:
            if event.event_type == "BalanceAdjusted":
                txns.setdefault(cid, []).append(event.data["transaction_id"])


@pytest.mark.slow
async def test_rebuild_gives_identical_tables_and_schema(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    await random_history(store, 150, seed=1)
    before, schema_before = await dump(pool), await schema_snapshot(pool)
    assert all(before[table] for table in PROJECTION_TABLES), "the history must fill every projection"
    assert (await check_drift(pool)).problems == []
    done: list[int] = []
    report = await rebuild(pool, progress=done.append, batch_size=16)
    total = await pool.fetchval("SELECT count(*) FROM events")
    assert report.events == total and done[-1] == total
    assert done == sorted(done) and len(done) > 3
    assert await dump(pool) == before
    assert await schema_snapshot(pool) == schema_before
    # the rebuilt tables are the live ones: new commands keep working and stay consistent
    await random_history(store, 30, seed=2)
    assert (await check_drift(pool)).problems == []
    # a second rebuild (default batch size) changes nothing
    after_more = await dump(pool)
    await rebuild(pool)
    assert await dump(pool) == after_more


@pytest.mark.slow
async def test_rebuild_of_an_empty_log(pool: asyncpg.Pool) -> None:
    schema_before = await schema_snapshot(pool)
    report = await rebuild(pool)
    assert report.events == 0
    assert await dump(pool) == {table: [] for table in PROJECTION_TABLES}
    assert await schema_snapshot(pool) == schema_before
    assert (await check_drift(pool)).problems == []


@pytest.mark.slow
async def test_drift_finds_and_rebuild_repairs_corruption(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    await random_history(store, 80, seed=3)
    good = await dump(pool)
    victim = await pool.fetchval("SELECT id FROM customers ORDER BY id LIMIT 1")
    lost_txn = await pool.fetchval("SELECT id FROM balance_transactions ORDER BY id LIMIT 1")
    await pool.execute(
        "UPDATE customers SET balance = balance + 1, email = 'x@evil.test' WHERE id = $1", victim
    )
    await pool.execute("DELETE FROM balance_transactions WHERE id = $1", lost_txn)
    await pool.execute(
        """INSERT INTO customers (id, account, livemode, position, version, created, invoice_prefix,
               invoice_settings, next_invoice_sequence, preferred_locales, tax_exempt, metadata, balance)
           VALUES ('cus_forged', $1, false, 0, 1, 0, 'X', '{}', 1, '[]', 'none', '{}', 10)""",
        ACCOUNT,
    )
    await pool.execute("UPDATE stripe_events SET type = 'customer.deleted' WHERE seq = 0 AND position = 1")
    drift = await check_drift(pool)
    text = "\n".join(problem.message for problem in drift.problems)
    assert len(drift.problems) == 4, text
    kinds = sorted(problem.kind for problem in drift.problems)
    assert kinds == ["row_drift", "row_drift", "row_missing", "row_not_in_log"], text
    assert victim in text and lost_txn in text and "cus_forged" in text and "stripe_events" in text
    await rebuild(pool)
    assert await dump(pool) == good
    assert (await check_drift(pool)).problems == []


async def wait_for_lock_wait(pool: asyncpg.Pool, table: str, mode: str) -> None:
    for _ in range(2000):
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_locks WHERE relation = $1::regclass AND mode = $2 AND NOT granted",
            table,
            mode,
        )
        if waiting:
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"nobody waited for {mode} on {table}")


@pytest.mark.slow
async def test_writes_during_rebuild_are_not_lost(pool: asyncpg.Pool) -> None:
    """50 adjustments run while the rebuild replays and swaps, and one slow command transaction stays
    open across the bulk phase (it holds the gap-safe horizon back, so the writes behind it reach the
    new tables only through the catch-up inside the swap). Nothing may be lost."""
    store = PostgresEventStore(pool)
    await random_history(store, 120, seed=4)
    customers = [f"cus_hot_{i}" for i in range(5)]
    for i, cid in enumerate([*customers, "cus_slow"]):
        create = CreateCustomer(
            customer_id=cid,
            occurred_at=T0,
            account=ACCOUNT,
            livemode=False,
            profile=Profile(invoice_prefix="HOT"),
            currency="usd",
        )
        await execute(store, create, context(10_000 + i))
    rng = random.Random(5)
    plan = [(rng.choice(customers), rng.randint(-500, 1000) or 1) for _ in range(50)]
    rebuilding = True
    done = during = 0
    half_done = asyncio.Event()

    async def writer(jobs: list[tuple[int, tuple[str, int]]]) -> None:
        nonlocal done, during
        for index, (cid, amount) in jobs:
            command = AdjustBalance(
                customer_id=cid,
                occurred_at=T0,
                transaction_id=f"cbtxn_hot_{index}",
                amount=amount,
                currency="usd",
            )
            await execute(store, command, context(20_000 + index))
            done += 1
            during += rebuilding
            if done == 25:
                half_done.set()
            await asyncio.sleep(rng.uniform(0, 0.003))

    async with pool.acquire() as slow:
        slow_transaction = slow.transaction()
        await slow_transaction.start()
        adjusted = BalanceAdjusted(
            customer_id="cus_slow",
            transaction_id="cbtxn_slow",
            amount=777,
            currency="usd",
            type="adjustment",
            ending_balance=777,
            created=T0 // 1_000_000,
        )
        header = StreamHeader(stream_id="cus_slow", stream_type="customer", account=ACCOUNT, livemode=False)
        await append(
            slow, header, 1, [prepare(adjusted, "evt_slow")], EventMetadata(account=ACCOUNT, livemode=False), T0
        )
        rebuild_task = asyncio.create_task(rebuild(pool, batch_size=10))
        jobs = list(enumerate(plan))
        writers = [asyncio.create_task(writer(jobs[i::5])) for i in range(5)]
        await half_done.wait()
        await wait_for_lock_wait(pool, "streams", "ShareLock")  # the swap waits for the slow transaction
        await slow_transaction.commit()
        report = await rebuild_task
        rebuilding = False
        await asyncio.gather(*writers)
    assert during > 0, "no write overlapped the rebuild: the test proves nothing"
    assert report.swap_events >= 1, "nothing was caught up inside the swap: the test proves nothing"
    assert await pool.fetchval("SELECT balance FROM customers WHERE id = 'cus_slow'") == 777
    for cid in customers:
        expected = sum(amount for target, amount in plan if target == cid)
        assert await pool.fetchval("SELECT balance FROM customers WHERE id = $1", cid) == expected
        entries = await pool.fetch(
            "SELECT amount, ending_balance FROM balance_transactions WHERE customer_id = $1 ORDER BY version",
            cid,
        )
        assert len(entries) == sum(1 for target, _ in plan if target == cid)
        running = 0
        for entry in entries:
            running += entry["amount"]
            assert entry["ending_balance"] == running
    hot_rows = await pool.fetchval("SELECT count(*) FROM balance_transactions WHERE id LIKE 'cbtxn_hot_%'")
    assert hot_rows == len(plan)
    assert (await check_drift(pool)).problems == []


async def test_swap_backs_off_instead_of_deadlocking(pool: asyncpg.Pool) -> None:
    """A command that read a projection table before appending (the upsert's external_id lookup) must not
    deadlock with the swap: the swap times out its lock, lets the command commit, and tries again."""
    store = PostgresEventStore(pool)
    await random_history(store, 20, seed=6)
    cid = await pool.fetchval("SELECT id FROM customers WHERE NOT deleted ORDER BY id LIMIT 1")
    async with pool.acquire() as reader:
        transaction = reader.transaction()
        await transaction.start()
        await reader.fetchval("SELECT count(*) FROM customers")  # holds ACCESS SHARE on customers
        task = asyncio.create_task(rebuild(pool))
        # wait until the swap holds SHARE on streams and waits for customers
        await wait_for_lock_wait(pool, "customers", "AccessExclusiveLock")
        # Now append in the reader's transaction, as the upsert would: it must succeed, not deadlock.
        await reader.execute("SET LOCAL lock_timeout = '5s'")
        await reader.execute("UPDATE streams SET updated_at = now() WHERE stream_id = $1", cid)
        await transaction.commit()
        report = await task
    assert report.swap_attempts >= 2
    assert (await check_drift(pool)).problems == []


async def test_triggers_and_grants_survive_and_leftovers_are_cleaned(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    await random_history(store, 20, seed=7)
    await pool.execute(
        """CREATE FUNCTION touch_customers() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
           CREATE TRIGGER customers_touch BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION touch_customers();
           GRANT SELECT ON customers TO PUBLIC;
           CREATE SCHEMA ledger_rebuild; CREATE TABLE ledger_rebuild.junk (x int);"""
    )
    schema_before = await schema_snapshot(pool)
    await rebuild(pool)
    assert await schema_snapshot(pool) == {
        **schema_before,
        "schemas": [s for s in schema_before["schemas"] if s != "ledger_rebuild"],
    }
    triggers = await pool.fetch(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'customers'::regclass AND NOT tgisinternal"
    )
    assert [row["tgname"] for row in triggers] == ["customers_touch"]
    assert await pool.fetchval("SELECT has_table_privilege('public', 'customers', 'SELECT')")
    assert (await check_drift(pool)).problems == []


async def test_one_rebuild_at_a_time(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", REBUILD_LOCK_ID)
        try:
            with pytest.raises(RebuildError):
                await rebuild(pool)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", REBUILD_LOCK_ID)


async def test_bulk_replay_with_a_single_connection_and_without_canonical_bytes(
    pool: asyncpg.Pool, db_url: str
) -> None:
    """The bulk replay reads and copies on one connection when the pool has only one, and reads the
    documents from the columns for events appended before migration 0006 (no canonical bytes)."""
    store = PostgresEventStore(pool)
    await random_history(store, 120, seed=5)
    before, schema_before = await dump(pool), await schema_snapshot(pool)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        await conn.execute("UPDATE events SET canonical = NULL WHERE position % 3 = 0")
        await conn.execute("ALTER TABLE events ENABLE TRIGGER USER")
    single = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
    try:
        assert (await check_drift(single)).problems == []
        report = await rebuild(single, batch_size=7)
    finally:
        await single.close()
    assert report.events == await pool.fetchval("SELECT count(*) FROM events")
    assert await dump(pool) == before
    assert await schema_snapshot(pool) == schema_before
