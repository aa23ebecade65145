"""The ledger state machine of tests/unit/test_state_machine.py, on the real PostgreSQL store.

Each example runs on a fresh database cloned from the migrated template. After every step the same
invariants as in memory are checked against PostgreSQL; at the end of each example the projections are
checked against the model, then the whole log is replayed from zero into fresh tables
(service.rebuild) and the result must equal the inline projections row for row, byte for byte."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from ledgerd.projections import PROJECTION_TABLES
from ledgerd.service.audit import check_drift
from ledgerd.service.rebuild import rebuild
from ledgerd.service.store.base import EventStore
from ledgerd.service.store.postgres import PostgresEventStore
from tests.unit.test_state_machine import LedgerMachine


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def with_database(url: str, database: str) -> str:
    return urlsplit(url)._replace(path="/" + database).geturl()


async def dump(pool: asyncpg.Pool) -> dict[str, list[str]]:
    return {
        table: [row["r"] for row in await pool.fetch(f"SELECT t::text AS r FROM {table} t ORDER BY id")]
        for table in PROJECTION_TABLES
    }


class PostgresDriver:
    store: EventStore  # set by start()

    def __init__(self, server_url: str, template: str) -> None:
        self.server_url = server_url
        self.template = template
        self.database = f"ledger_sm_{secrets.token_hex(6)}"
        self.pool: asyncpg.Pool | None = None

    async def admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def start(self) -> None:
        await self.admin(
            f"CREATE DATABASE {quote_ident(self.database)} TEMPLATE {quote_ident(self.template)}"
        )
        self.pool = await asyncpg.create_pool(
            with_database(self.server_url, self.database), min_size=1, max_size=3
        )
        self.store = PostgresEventStore(self.pool)

    async def count_events(self) -> int:
        assert self.pool is not None
        count: int = await self.pool.fetchval("SELECT count(*) FROM events")
        return count

    async def finish(self, model: Any) -> None:
        assert self.pool is not None
        pool = self.pool
        # the inline projections agree with the model
        for customer in model.customers.values():
            row = await pool.fetchrow(
                "SELECT balance, currency, deleted, version, email, metadata::text FROM customers WHERE id = $1",
                customer.id,
            )
            assert row is not None
            assert (row["balance"], row["currency"], row["deleted"], row["version"], row["email"]) == (
                customer.balance,
                customer.currency,
                customer.deleted,
                customer.version,
                customer.email,
            )
            entries = await pool.fetch(
                """SELECT id, amount, currency, type, ending_balance, description, metadata::text
                   FROM balance_transactions WHERE customer_id = $1 ORDER BY version""",
                customer.id,
            )
            ledgers: dict[str, int] = {}  # one ledger per currency
            for entry, expected in zip(entries, customer.entries, strict=True):
                running = ledgers[expected.currency] = ledgers.get(expected.currency, 0) + expected.amount
                assert (entry["id"], entry["amount"], entry["currency"], entry["type"]) == (
                    expected.txn,
                    expected.amount,
                    expected.currency,
                    expected.kind,
                )
                assert entry["ending_balance"] == running
                assert entry["description"] == expected.description
        total = sum(1 for customer in model.customers.values() if customer.version)
        assert await pool.fetchval("SELECT count(*) FROM customers") == total
        # a replay from zero equals the inline projections, row for row
        assert (await check_drift(pool)).problems == []
        inline = await dump(pool)
        report = await rebuild(pool)
        assert report.events == model.events
        assert await dump(pool) == inline

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        await self.admin(f"DROP DATABASE IF EXISTS {quote_ident(self.database)} WITH (FORCE)")


@pytest.mark.slow
def test_ledger_state_machine_on_postgres(database_url: str, template_db: str) -> None:
    class PostgresLedgerMachine(LedgerMachine):
        @staticmethod
        def driver_factory() -> PostgresDriver:
            return PostgresDriver(database_url, template_db)

    run_state_machine_as_test(
        PostgresLedgerMachine,
        settings=settings(
            max_examples=15,
            stateful_step_count=20,
            deadline=None,
            # A failing example is replayed and reported, not shrunk: every shrink step would cost a
            # fresh database. The in-memory machine (same rules) shrinks quickly.
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
