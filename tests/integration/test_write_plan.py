"""The command path's write statement reaches the rows it changes through their indexes, whatever the
table sizes: a sequential scan of `customers` per AdjustBalance made every command cost O(customers) in
PostgreSQL CPU (found under `make bench` with 10,000 customers). Checked with the service's own session
settings (a generic plan, as pooled connections use) through PostgreSQL's scan counters."""

from __future__ import annotations

import asyncio

import asyncpg

from ledgerd.domain.customer import AdjustBalance, CreateCustomer, ProfilePatch, UpdateCustomer
from ledgerd.domain.values import Profile
from ledgerd.service.app import connection_settings
from ledgerd.service.commands.handle import execute
from ledgerd.service.commands.requests import RequestContext
from ledgerd.service.config import Config
from ledgerd.service.store.postgres import PostgresEventStore

ACCOUNT = "acct_plan"
T0 = 1_700_000_000_000_000
CUSTOMERS = 50
FILLER = 20_000  # rows copied into the projection tables so that a sequential scan would cost


def context(n: int) -> RequestContext:
    return RequestContext(account=ACCOUNT, livemode=False, occurred_at_us=T0 + n, request_id=f"req_p{n:06d}")


async def table_counters(conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    rows = await conn.fetch(
        "SELECT relname, seq_scan, n_tup_upd FROM pg_stat_user_tables"
        " WHERE relname IN ('customers', 'external_id_claims', 'balance_transactions')"
    )
    return {row["relname"]: (row["seq_scan"], row["n_tup_upd"]) for row in rows}


async def test_adjustments_and_external_id_changes_scan_no_table(db_url: str) -> None:
    settings = connection_settings(Config(database_url=db_url))
    assert settings["plan_cache_mode"] == "force_generic_plan"
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1, server_settings=settings)
    observer = await asyncpg.connect(db_url)
    try:
        store = PostgresEventStore(pool)
        for n in range(CUSTOMERS):
            command = CreateCustomer(
                customer_id=f"cus_p{n:05d}",
                occurred_at=T0,
                account=ACCOUNT,
                livemode=False,
                profile=Profile(invoice_prefix="PLN", external_id=f"ext-{n}"),
                currency="usd",
            )
            await execute(store, command, context(n))
        seed = AdjustBalance(
            customer_id="cus_p00000",
            occurred_at=T0 + 999,
            transaction_id="cbtxn_seed",
            amount=1,
            currency="usd",
        )
        await execute(store, seed, context(999))
        await observer.execute(
            f"""
            INSERT INTO customers
            SELECT (jsonb_populate_record(NULL::customers, to_jsonb(c) || jsonb_build_object(
                'id', 'cus_filler' || g, 'external_id', NULL))).*
            FROM customers c, generate_series(1, {FILLER}) AS g WHERE c.id = 'cus_p00000';
            INSERT INTO balance_transactions
            SELECT (jsonb_populate_record(NULL::balance_transactions, to_jsonb(t) || jsonb_build_object(
                'id', 'cbtxn_filler' || g))).*
            FROM balance_transactions t, generate_series(1, {FILLER}) AS g WHERE t.id = 'cbtxn_seed';
            ANALYZE customers; ANALYZE external_id_claims; ANALYZE balance_transactions
            """
        )
        async with pool.acquire() as conn:  # what this backend counted so far is flushed now
            await conn.execute("SELECT pg_stat_force_next_flush()")
        await asyncio.sleep(0.2)
        before = await table_counters(observer)

        for n in range(20):
            customer = f"cus_p{n * 2:05d}"
            adjust = AdjustBalance(
                customer_id=customer,
                occurred_at=T0 + 1000 + n,
                transaction_id=f"cbtxn_p{n:05d}",
                amount=100,
                currency="usd",
            )
            await execute(store, adjust, context(1000 + n))
            rename = UpdateCustomer(
                customer_id=customer, occurred_at=T0 + 2000 + n, patch=ProfilePatch(external_id=f"new-{n}")
            )
            await execute(store, rename, context(2000 + n))
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_stat_force_next_flush()")

        after = before
        for _ in range(50):  # the counters move once the backend has flushed: 40 customer updates
            after = await table_counters(observer)
            if after["customers"][1] - before["customers"][1] >= 40:
                break
            await asyncio.sleep(0.1)
        assert after["customers"][1] - before["customers"][1] >= 40, (before, after)
        scans = {table: after[table][0] - before[table][0] for table in ("customers", "balance_transactions")}
        assert scans == {"customers": 0, "balance_transactions": 0}
    finally:
        await observer.close()
        await pool.close()
