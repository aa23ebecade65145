"""The projections read typed, upcast events: with a throwaway v2 upcaster registered for one event type,
a log whose older events are stored in the v1 shape imports, verifies, rebuilds and answers `as_of`
exactly like the same history stored in the current shape.

The throwaway history: BalanceAdjusted v1 called its `description` "memo"; v2 (the current shape)
renamed it. The v1 documents are what an older release would have written (hashed as stored: the chain
covers the bytes on disk, never the upcast document)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import msgspec
import pytest

from ledgerd.domain.customer import AdjustBalance, CreateCustomer, UpdateBalanceTransaction
from ledgerd.domain.log import GENESIS_HASH, canonical_bytes, chain_hash
from ledgerd.domain.upcasting import REGISTRY, to_event
from ledgerd.domain.values import Profile
from ledgerd.projections import PROJECTION_TABLES
from ledgerd.service import audit, pointintime
from ledgerd.service.commands.handle import execute
from ledgerd.service.commands.requests import RequestContext
from ledgerd.service.rebuild import rebuild
from ledgerd.service.store.postgres import PostgresEventStore
from tests.support.appending import wait_for_horizon

ACCOUNT = "acct_upcast"
T0 = 1_700_000_000_000_000


def memo_v1_to_v2(document: Any) -> dict[str, Any]:
    upgraded = {key: value for key, value in document.items() if key != "memo"}
    upgraded["description"] = document.get("memo")
    return upgraded


@contextmanager
def v2_registered() -> Iterator[None]:
    """BalanceAdjusted is at v2 while the test runs, with the v1 -> v2 upcaster; restored afterwards."""
    saved = dict(REGISTRY.current)
    REGISTRY.current["BalanceAdjusted"] = 2
    REGISTRY.add("BalanceAdjusted", 1, memo_v1_to_v2)
    try:
        yield
    finally:
        REGISTRY.current.clear()
        REGISTRY.current.update(saved)
        del REGISTRY._upcasters[("BalanceAdjusted", 1)]


async def write_history(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    customer = CreateCustomer(
        customer_id="cus_up",
        occurred_at=T0,
        account=ACCOUNT,
        livemode=False,
        profile=Profile(invoice_prefix="UPC", email="up@example.com"),
        balance=700,
        currency="usd",
        initial_transaction_id="cbtxn_up0",
    )
    await execute(store, customer, RequestContext(ACCOUNT, False, T0, "req_0"))
    for n in range(1, 4):
        adjust = AdjustBalance(
            customer_id="cus_up",
            occurred_at=T0 + n * 2_000_000,
            transaction_id=f"cbtxn_up{n}",
            amount=-100 * n,
            currency="usd",
            description=f"credit {n}",
        )
        await execute(store, adjust, RequestContext(ACCOUNT, False, T0 + n * 2_000_000, f"req_{n}"))
    update = UpdateBalanceTransaction(
        customer_id="cus_up", occurred_at=T0 + 9_000_000, transaction_id="cbtxn_up2", description="corrected"
    )
    await execute(store, update, RequestContext(ACCOUNT, False, T0 + 9_000_000, "req_9"))


def as_v1(lines: list[bytes]) -> list[bytes]:
    """The export rewritten as an older release would have stored it: BalanceAdjusted documents in the
    v1 shape, every hash in the chain recomputed over the bytes as stored."""
    heads: dict[str, bytes] = {}
    out = []
    for raw in lines:
        line = msgspec.json.decode(raw)
        if line["event_type"] == "BalanceAdjusted":
            data = {key: value for key, value in line["data"].items() if key != "description"}
            data["memo"] = line["data"]["description"]
            line["data"] = data
        canonical = canonical_bytes(
            stream_id=line["stream_id"],
            stream_version=line["stream_version"],
            event_id=line["event_id"],
            event_type=line["event_type"],
            schema_version=line["schema_version"],
            recorded_at_us=line["recorded_at_us"],
            data=line["data"],
            metadata=line["metadata"],
        )
        digest = chain_hash(heads.get(line["stream_id"], GENESIS_HASH), canonical)
        heads[line["stream_id"]] = digest
        line["hash"] = digest.hex()
        out.append(msgspec.json.encode(line))
    return out


async def projections(pool: asyncpg.Pool) -> dict[str, list[str]]:
    found = {}
    for table in PROJECTION_TABLES:
        rows = await pool.fetch(f"SELECT to_jsonb(t) - 'position' AS row FROM {table} t ORDER BY 1")
        found[table] = [row["row"] for row in rows]
    return found


INSTANTS = (T0 // 1_000_000 + 3, T0 // 1_000_000 + 5, T0 // 1_000_000 + 9)


async def answers_as_of(conn: asyncpg.Connection) -> list[Any]:
    found = []
    for at in INSTANTS:
        found.append(await pointintime.customer_as_of(conn, ACCOUNT, False, "cus_up", at))
        found.append(await pointintime.balance_transactions_as_of(conn, ACCOUNT, False, "cus_up", at))
    return found


@pytest.mark.slow
async def test_a_v1_history_replays_like_the_current_one(pool: asyncpg.Pool, empty_db_url: str) -> None:
    await write_history(pool)  # in the current shape (before the throwaway v2 exists)
    expected = await projections(pool)
    async with pool.acquire() as conn:
        expected_as_of = await answers_as_of(conn)
    out = io.BytesIO()
    await wait_for_horizon(pool)
    async with pool.acquire() as conn:
        await audit.export_jsonl(conn, out)
    lines = as_v1(out.getvalue().splitlines())
    assert any(b'"memo":"credit 2"' in line for line in lines)  # really the old shape on disk

    from ledgerd.service.migrate import apply_migrations

    other = await asyncpg.create_pool(empty_db_url, min_size=1, max_size=4)
    try:
        async with other.acquire() as conn:
            await apply_migrations(conn)
        with v2_registered():
            await audit.import_jsonl(other, lines)  # projected through the upcaster as it loads
            assert await projections(other) == expected
            report = await audit.verify(other)
            assert report.ok, report.problems()
            await rebuild(other)
            assert await projections(other) == expected
            async with other.acquire() as conn:
                assert await answers_as_of(conn) == expected_as_of
                last = await pointintime.balance_transactions_as_of(conn, ACCOUNT, False, "cus_up", INSTANTS[-1])
        assert [row["description"] for row in last] == ["credit 3", "corrected", "credit 1", None]
    finally:
        await other.close()


async def test_without_the_upcaster_the_v1_history_loses_its_memo(pool: asyncpg.Pool) -> None:
    """The control: the same v1 documents read as the current shape lose their memo (so the test above
    really goes through the upcaster)."""
    await write_history(pool)
    out = io.BytesIO()
    await wait_for_horizon(pool)
    async with pool.acquire() as conn:
        await audit.export_jsonl(conn, out)
    lines = as_v1(out.getvalue().splitlines())
    document = msgspec.json.decode(next(line for line in lines if b'"memo":"credit 1"' in line))
    plain = to_event(document["event_type"], document["schema_version"], document["data"])
    assert getattr(plain, "description", None) is None  # read as the current shape, the memo is lost
    with v2_registered():
        upcast = to_event(document["event_type"], document["schema_version"], document["data"])
    assert getattr(upcast, "description", None) == "credit 1"
