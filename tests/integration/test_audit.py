"""`service.audit` on a real PostgreSQL: verify on clean logs, digests (gap-safe, extendable), export and
offline verification of exports, import, point-in-time reads and history, and the CLI commands."""

from __future__ import annotations

import asyncio
import io
import os
import random
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
import pytest_asyncio

from ledgerd.domain.customer import (
    AdjustBalance,
    AnyCommand,
    CreateCustomer,
    DeleteCustomer,
    ProfilePatch,
    UpdateBalanceTransaction,
    UpdateCustomer,
)
from ledgerd.domain.errors import DomainError
from ledgerd.domain.values import Address, Profile
from ledgerd.projections import PROJECTION_TABLES
from ledgerd.projections.objects import render_balance_transaction, render_customer
from ledgerd.service.audit import (
    SQL_HORIZON,
    Digest,
    ExportLine,
    ImportError_,
    check_chains,
    check_digest,
    export_jsonl,
    import_jsonl,
    take_digest,
    verify,
    verify_export,
)
from ledgerd.service.commands.handle import execute
from ledgerd.service.commands.idempotency import IdempotencyRequest
from ledgerd.service.commands.requests import Outcome, RequestContext
from ledgerd.service.pointintime import (
    balance_at,
    balance_transactions_as_of,
    customer_as_of,
    customer_history,
    parse_instant,
)
from ledgerd.service.rebuild import rebuild
from ledgerd.service.store.postgres import PostgresEventStore
from tests.support.appending import wait_for_horizon
from tests.support.databases import create_database, drop_database, with_database

ACCOUNT = "acct_audit"
T0 = 1_790_000_000_000_000  # 2026-09-21T12:53:20Z, in microseconds
REPO = Path(__file__).resolve().parents[2]


# --- histories -----------------------------------------------------------------------------------------


@dataclass
class History:
    customers: list[str] = field(default_factory=list)
    transactions: dict[str, list[str]] = field(default_factory=dict)
    clock_us: int = T0
    steps: int = 0
    events: int = 0


async def run_command(
    store: PostgresEventStore,
    command: AnyCommand,
    at_us: int,
    *,
    account: str = ACCOUNT,
    idempotency_key: str | None = None,
    request_id: str | None = None,
) -> Outcome | None:
    context = RequestContext(
        account=account,
        livemode=False,
        occurred_at_us=at_us,
        request_id=request_id or f"req_{secrets.token_hex(6)}",
    )
    idempotency = IdempotencyRequest(idempotency_key, "POST", "/test", {}) if idempotency_key else None
    try:
        return await execute(store, command, context, idempotency=idempotency)
    except DomainError:
        return None


async def make_history(
    store: PostgresEventStore, seed: int, commands: int = 60, history: History | None = None
) -> History:
    """A varied history through the real handler, with a clock that moves forward by 0 to 3 s (often
    by less than a second) between commands: creates (with and without an initial balance),
    adjustments (a few in a second currency: its own ledger), profile and balance updates, transaction
    updates, deletes; some commands carry an idempotency key."""
    rng = random.Random(seed)
    history = history or History()
    for _ in range(commands):
        history.steps += 1
        step = history.steps
        history.clock_us += rng.choice([0, 1, 250_000, 999_999, 1_000_000, 3_000_000])
        roll = rng.random()
        command: AnyCommand
        if not history.customers or roll < 0.15:
            cid = f"cus_{seed}_{step}"
            balance = rng.choice([0, 0, 700, -150])
            command = CreateCustomer(
                customer_id=cid,
                occurred_at=history.clock_us,
                account=ACCOUNT,
                livemode=False,
                profile=Profile(
                    invoice_prefix=f"A{seed % 1000:03d}{step:04d}",
                    email=f"{cid}@example.com",
                    name=rng.choice([None, "Ada", "Grace"]),
                    address=rng.choice([None, Address(city="Paris", country="FR")]),
                    metadata={"n": str(step)},
                ),
                balance=balance,
                currency="usd" if balance or rng.random() < 0.5 else None,
                initial_transaction_id=f"cbtxn_{seed}_{step}",
            )
            history.customers.append(cid)
        else:
            cid = rng.choice(history.customers)
            if roll < 0.6:
                command = AdjustBalance(
                    customer_id=cid,
                    occurred_at=history.clock_us,
                    transaction_id=f"cbtxn_{seed}_{step}",
                    amount=rng.choice([1, -1]) * rng.randint(1, 5_000),
                    currency=rng.choice(["usd"] * 9 + ["eur"]),
                    description=rng.choice([None, "credit"]),
                    metadata=rng.choice([{}, {"k": "v"}]),
                )
            elif roll < 0.78:
                command = UpdateCustomer(
                    customer_id=cid,
                    occurred_at=history.clock_us,
                    patch=ProfilePatch(
                        name=rng.choice(["New", None]), metadata=rng.choice([{"k": "v"}, None])
                    ),
                    balance=rng.choice([1_234, -99]) if rng.random() < 0.3 else ProfilePatch().email,
                    currency="usd" if rng.random() < 0.4 else ProfilePatch().email,
                    adjustment_transaction_id=f"cbtxn_{seed}_{step}",
                )
            elif roll < 0.93 and history.transactions.get(cid):
                command = UpdateBalanceTransaction(
                    customer_id=cid,
                    occurred_at=history.clock_us,
                    transaction_id=rng.choice(history.transactions[cid]),
                    description=rng.choice(["changed", None]),
                    metadata=rng.choice([{"x": "y"}, None]),
                )
            else:
                command = DeleteCustomer(customer_id=cid, occurred_at=history.clock_us)
        key = f"idem_{seed}_{step}" if rng.random() < 0.3 else None
        outcome = await run_command(store, command, history.clock_us, idempotency_key=key)
        if outcome is None:
            continue
        history.events += len(outcome.events)
        for event in outcome.events:
            if event.event_type == "BalanceAdjusted":
                history.transactions.setdefault(event.stream_id, []).append(event.data["transaction_id"])
    return history


async def dump(pool: asyncpg.Pool) -> dict[str, list[str]]:
    return {
        table: [row["r"] for row in await pool.fetch(f"SELECT t::text AS r FROM {table} t ORDER BY 1")]
        for table in PROJECTION_TABLES
    }


@pytest_asyncio.fixture(loop_scope="session")
async def other_db_url(
    admin_conn: asyncpg.Connection, database_url: str, template_db: str
) -> AsyncIterator[str]:
    """A second fresh, migrated, empty store (an import target)."""
    name = f"ledger_t_{secrets.token_hex(6)}"
    await create_database(admin_conn, name, template_db)
    try:
        yield with_database(database_url, name)
    finally:
        await drop_database(admin_conn, name)


@pytest_asyncio.fixture(loop_scope="session")
async def other_pool(other_db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(other_db_url, min_size=1, max_size=6)
    try:
        yield pool
    finally:
        await pool.close()


async def settle(pool: asyncpg.Pool, patience_s: float = 60.0) -> None:
    """Wait until every committed event is below the gap-safe horizon. Digests and exports stop at the
    oldest transaction running anywhere on the server; on a shared server, another session's
    transaction may briefly hold it back."""
    target = await pool.fetchval("SELECT coalesce(max(tx_id), 0) FROM events")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience_s
    while await pool.fetchval(SQL_HORIZON) <= target:
        assert loop.time() < deadline, "a transaction elsewhere on the server holds the horizon back"
        await asyncio.sleep(0.05)


async def export_bytes(pool: asyncpg.Pool, **options: Any) -> tuple[bytes, Any]:
    await settle(pool)
    out = io.BytesIO()
    async with pool.acquire() as conn:
        summary = await export_jsonl(conn, out, **options)
    return out.getvalue(), summary


# --- verify --------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_verify_passes_on_a_clean_log(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    history = await make_history(store, seed=1, commands=80)
    report = await verify(pool)
    assert report.ok, report.summary()
    assert [check.name for check in report.checks] == ["chains", "streams", "invariants", "drift"]
    total = await pool.fetchval("SELECT count(*) FROM events")
    assert report.check("chains").stats["events"] == total == history.events
    assert report.check("chains").stats["streams"] == len(history.customers)
    assert report.check("drift").stats["events"] == total
    assert report.to_dict()["first_problem"] is None
    assert "verify: OK" in report.summary()


async def test_verify_on_an_empty_store(pool: asyncpg.Pool) -> None:
    report = await verify(pool)
    assert report.ok, report.summary()
    digest = await pool_digest(pool)
    assert (digest.events, digest.streams, digest.cursor) == (0, 0, {"tx_id": 0, "position": 0})
    assert digest.hash == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256(b"")


@pytest.mark.slow
async def test_parallel_chain_check_equals_the_single_reader(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    await make_history(store, seed=2, commands=60)
    results = []
    for workers in (1, 3):
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            results.append(await check_chains(conn, workers=workers, batch=4))
    single, parallel = results
    assert parallel.stats["workers"] == 3
    assert single.ok and parallel.ok
    assert single.stats["events"] == parallel.stats["events"]
    assert single.stats["streams"] == parallel.stats["streams"]


# --- digests -------------------------------------------------------------------------------------------


async def pool_digest(pool: asyncpg.Pool, *, wait: bool = True) -> Digest:
    if wait:
        await settle(pool)
    async with pool.acquire() as conn:
        return await take_digest(conn, batch=7)


async def pool_check_digest(pool: asyncpg.Pool, digest: Digest) -> Any:
    async with pool.acquire() as conn:
        return await check_digest(conn, digest, batch=5)


@pytest.mark.slow
async def test_digest_round_trip_and_later_appends(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    history = await make_history(store, seed=3, commands=50)
    first = await pool_digest(pool)
    assert first.events == history.events == await pool.fetchval("SELECT count(*) FROM events")
    assert first.streams == len(history.customers)
    assert 1 <= len(first.checkpoints) <= 32
    last = await pool.fetchrow(
        "SELECT tx_id, position, stream_id, stream_version, event_id FROM events ORDER BY tx_id DESC, position DESC LIMIT 1"
    )
    assert first.cursor == {"tx_id": last["tx_id"], "position": last["position"]}
    assert first.last_event == {k: last[k] for k in ("stream_id", "stream_version", "event_id")}
    reloaded = Digest.from_json(first.to_json())
    assert reloaded == first
    assert (await pool_check_digest(pool, reloaded)).ok
    # the log grows: the old digest still holds, and the new one covers more
    await make_history(store, seed=4, commands=30, history=history)
    second = await pool_digest(pool)
    assert second.events == history.events > first.events
    assert (await pool_check_digest(pool, first)).ok
    assert (await pool_check_digest(pool, second)).ok
    report = await verify(pool, digest=first)
    assert report.ok and report.check("digest").stats["events"] == first.events


@pytest.mark.slow
async def test_digest_stops_below_a_running_writer(pool: asyncpg.Pool) -> None:
    """A transaction that holds an xid holds the digest back: nothing can later commit behind it."""
    store = PostgresEventStore(pool)
    history = await make_history(store, seed=5, commands=10)
    before = history.events
    await wait_for_horizon(pool)  # no unrelated older transaction on a shared server holds it back
    async with pool.acquire() as writer:
        transaction = writer.transaction()
        await transaction.start()
        await writer.fetchval("SELECT pg_current_xact_id()")  # an open writer, older than what follows
        await make_history(store, seed=6, commands=10, history=history)
        assert history.events > before
        held = await pool_digest(pool, wait=False)
        assert held.events == before  # the later commits sit behind the open writer
        await transaction.rollback()
    released = await pool_digest(pool)
    assert released.events == history.events
    assert (await pool_check_digest(pool, held)).ok


def test_digest_documents_are_checked() -> None:
    with pytest.raises(ValueError):
        Digest.from_json(b'{"format": "something-else/1", "cursor": {"tx_id": 1, "position": 1}}')
    with pytest.raises(ValueError):
        Digest.from_json(b'{"format": "ledger-digest/1"}')


# --- export, offline verification, import --------------------------------------------------------------


@pytest.mark.slow
async def test_export_lines_carry_everything_to_verify_offline(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    history = await make_history(store, seed=7, commands=60)
    data, summary = await export_bytes(pool)
    lines = [msgspec.json.decode(line) for line in data.splitlines()]
    assert summary.events == len(lines) == history.events
    assert set(lines[0]) == {
        "position",
        "tx_id",
        "stream_id",
        "stream_version",
        "event_id",
        "event_type",
        "schema_version",
        "recorded_at_us",
        "data",
        "metadata",
        "hash",
    }
    order = [(line["tx_id"], line["position"]) for line in lines]
    assert order == sorted(order) and len(set(order)) == len(order)
    # the server renders part of each line: the bytes are exactly msgspec's encoding of an ExportLine,
    # and the documents are the stored ones (from the canonical bytes, or the columns without them)
    for raw in data.splitlines():
        assert msgspec.json.encode(msgspec.json.decode(raw, type=ExportLine)) == raw
    documents = {
        row["event_id"]: (msgspec.json.decode(row["data"]), msgspec.json.decode(row["metadata"]))
        for row in await pool.fetch("SELECT event_id, data::text, metadata::text FROM events")
    }
    assert {line["event_id"]: (line["data"], line["metadata"]) for line in lines} == documents
    stored = {
        row["event_id"]: bytes(row["hash"]).hex()
        for row in await pool.fetch("SELECT event_id, hash FROM events")
    }
    assert {line["event_id"]: line["hash"] for line in lines} == stored
    # the same bytes whatever the batch size (keyset batches, constant memory)
    small, _ = await export_bytes(pool, batch=3)
    assert small == data
    # offline: every link recomputes; the export's hash of hashes is the digest's
    digest = await pool_digest(pool)
    assert summary.hash == digest.hash and summary.cursor == digest.cursor
    check = verify_export(data.splitlines(), digest=digest)
    assert check.ok, check.problems
    assert (check.events, check.streams, check.anchored) == (history.events, len(history.customers), 0)
    # events appended before migration 0006 (no canonical bytes) export the same documents
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        await conn.execute("UPDATE events SET canonical = NULL WHERE stream_version % 2 = 0")
        await conn.execute("ALTER TABLE events ENABLE TRIGGER USER")
    mixed, _ = await export_bytes(pool)
    assert [msgspec.json.decode(line) for line in mixed.splitlines()] == lines


@pytest.mark.slow
async def test_export_filters(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    history = await make_history(store, seed=8, commands=60)
    customer = history.customers[0]
    data, _ = await export_bytes(pool, customer_id=customer)
    lines = [msgspec.json.decode(line) for line in data.splitlines()]
    assert {line["stream_id"] for line in lines} == {customer}
    assert [line["stream_version"] for line in lines] == list(range(1, len(lines) + 1))
    middle = T0 + (history.clock_us - T0) // 2
    since, summary = await export_bytes(pool, since_us=middle)
    recent = [msgspec.json.decode(line) for line in since.splitlines()]
    expected = await pool.fetchval(
        "SELECT count(*) FROM events WHERE recorded_at >= to_timestamp($1 / 1e6)", middle
    )
    assert len(recent) == expected == summary.events and 0 < expected < history.events
    assert all(line["recorded_at_us"] >= middle for line in recent)
    check = verify_export(since.splitlines())  # partial: streams are anchored at their first line
    assert check.ok, check.problems
    assert check.anchored > 0


async def test_offline_verification_names_edited_lines(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    await make_history(store, seed=9, commands=40)
    data, _ = await export_bytes(pool)
    digest = await pool_digest(pool)
    lines = data.splitlines()
    target = next(
        index
        for index, line in enumerate(lines)
        if b'"BalanceAdjusted"' in line and msgspec.json.decode(line)["stream_version"] > 1
    )
    doc = msgspec.json.decode(lines[target])
    doc["data"]["amount"] += 1
    edited = [*lines[:target], msgspec.json.encode(doc), *lines[target + 1 :]]
    check = verify_export(edited, digest=digest)
    assert not check.ok
    assert [(p.kind, p.event_id) for p in check.problems] == [("broken_link", doc["event_id"])]
    assert check.digest is not None and check.digest.ok  # the hashes themselves were not touched
    # a removed line: a version gap in its stream, and the digest no longer matches
    dropped = [*lines[:target], *lines[target + 1 :]]
    check = verify_export(dropped, digest=digest)
    assert not check.ok
    assert check.digest is not None and not check.digest.ok
    gap = next(problem for problem in check.problems if problem.kind == "version_gap")
    assert gap.stream_id == doc["stream_id"]


@pytest.mark.slow
async def test_import_into_an_empty_store_verifies_and_rebuilds_identically(
    pool: asyncpg.Pool, other_pool: asyncpg.Pool
) -> None:
    store = PostgresEventStore(pool)
    await make_history(store, seed=10, commands=80)
    data, _ = await export_bytes(pool)
    imported = await import_jsonl(other_pool, data.splitlines())
    assert imported.events == await pool.fetchval("SELECT count(*) FROM events")
    report = await verify(other_pool)
    assert report.ok, report.summary()
    source = await dump(pool)
    assert await dump(other_pool) == source  # projected inline during the import
    await rebuild(other_pool)
    assert await dump(other_pool) == source
    # the import's export is the same log (only tx ids are new, their order kept)
    again, _ = await export_bytes(other_pool)
    strip = [
        {k: v for k, v in msgspec.json.decode(line).items() if k != "tx_id"} for line in again.splitlines()
    ]
    assert strip == [
        {k: v for k, v in msgspec.json.decode(line).items() if k != "tx_id"} for line in data.splitlines()
    ]
    # new appends continue after the imported positions
    await make_history(PostgresEventStore(other_pool), seed=11, commands=5)
    assert (await verify(other_pool)).ok
    with pytest.raises(ImportError_):
        await import_jsonl(other_pool, data.splitlines())


# --- point in time and history -------------------------------------------------------------------------


async def scripted_customer(store: PostgresEventStore, cid: str, start_us: int) -> dict[str, int]:
    """Known commands at known times (seconds apart); returns the instants."""
    at = {
        name: start_us + index * 10_000_000
        for index, name in enumerate(["create", "credit", "rename", "debit", "describe", "delete"])
    }
    profile = Profile(invoice_prefix="PIT00001", email="pit@example.com", name="Before", metadata={"a": "1"})
    create = CreateCustomer(
        customer_id=cid,
        occurred_at=at["create"],
        account=ACCOUNT,
        livemode=False,
        profile=profile,
        currency="usd",
    )
    assert await run_command(
        store, create, at["create"], request_id="req_create", idempotency_key="key_create"
    )
    credit = AdjustBalance(
        customer_id=cid, occurred_at=at["credit"], transaction_id="cbtxn_pit_1", amount=500, currency="usd"
    )
    assert await run_command(store, credit, at["credit"])
    rename = UpdateCustomer(customer_id=cid, occurred_at=at["rename"], patch=ProfilePatch(name="After"))
    assert await run_command(store, rename, at["rename"], request_id="req_rename")
    debit = AdjustBalance(
        customer_id=cid,
        occurred_at=at["debit"],
        transaction_id="cbtxn_pit_2",
        amount=-200,
        currency="usd",
        description="fee",
    )
    assert await run_command(store, debit, at["debit"])
    describe = UpdateBalanceTransaction(
        customer_id=cid,
        occurred_at=at["describe"],
        transaction_id="cbtxn_pit_1",
        description="welcome credit",
    )
    assert await run_command(store, describe, at["describe"])
    return at


async def test_customer_and_transactions_as_of(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    cid = "cus_pit"
    at = await scripted_customer(store, cid, T0 + 123_456)
    seconds = {name: value // 1_000_000 for name, value in at.items()}
    live = render_customer(await pool.fetchrow("SELECT * FROM customers WHERE id = $1", cid))
    live_txns = [
        render_balance_transaction(row)
        for row in await pool.fetch(
            "SELECT * FROM balance_transactions WHERE customer_id = $1 ORDER BY position DESC", cid
        )
    ]
    async with pool.acquire() as conn:
        assert await customer_as_of(conn, ACCOUNT, False, cid, seconds["create"] - 1) is None
        created = await customer_as_of(conn, ACCOUNT, False, cid, seconds["create"])
        assert created is not None and (created["balance"], created["name"]) == (0, "Before")
        assert set(created) == set(live)
        credited = await customer_as_of(conn, ACCOUNT, False, cid, seconds["credit"])
        assert credited is not None and (credited["balance"], credited["name"]) == (500, "Before")
        renamed = await customer_as_of(conn, ACCOUNT, False, cid, seconds["rename"] + 5)
        assert renamed is not None and (renamed["balance"], renamed["name"]) == (500, "After")
        now = await customer_as_of(conn, ACCOUNT, False, cid, seconds["describe"] + 1000)
        assert now == live  # the fold from the log renders exactly what the projection serves
        assert await customer_as_of(conn, "acct_other", False, cid, seconds["describe"]) is None
        assert await customer_as_of(conn, ACCOUNT, True, cid, seconds["describe"]) is None
        assert await balance_transactions_as_of(conn, ACCOUNT, False, cid, seconds["create"] - 1) == []
        assert await balance_transactions_as_of(conn, ACCOUNT, False, cid, seconds["create"]) == []
        [first] = await balance_transactions_as_of(conn, ACCOUNT, False, cid, seconds["credit"])
        assert (first["id"], first["ending_balance"], first["description"]) == ("cbtxn_pit_1", 500, None)
        before_describe = await balance_transactions_as_of(conn, ACCOUNT, False, cid, seconds["debit"])
        assert [(t["id"], t["ending_balance"]) for t in before_describe] == [
            ("cbtxn_pit_2", 300),
            ("cbtxn_pit_1", 500),
        ]
        assert before_describe[1]["description"] is None
        after = await balance_transactions_as_of(conn, ACCOUNT, False, cid, seconds["describe"])
        assert after == live_txns and after[1]["description"] == "welcome credit"
        assert await balance_transactions_as_of(conn, "acct_other", False, cid, seconds["describe"]) == []
    # deleted later: the stub from then on, the full object before
    delete = DeleteCustomer(customer_id=cid, occurred_at=at["delete"])
    assert await run_command(store, delete, at["delete"])
    async with pool.acquire() as conn:
        assert await customer_as_of(conn, ACCOUNT, False, cid, seconds["delete"]) == {
            "id": cid,
            "object": "customer",
            "deleted": True,
        }
        assert await customer_as_of(conn, ACCOUNT, False, cid, seconds["describe"]) == live


async def test_customer_history(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    cid = "cus_hist"
    at = await scripted_customer(store, cid, T0)
    async with pool.acquire() as conn:
        history = await customer_history(conn, ACCOUNT, False, cid)
        assert await customer_history(conn, "acct_other", False, cid) == []
        assert await customer_history(conn, ACCOUNT, False, "cus_nobody") == []
    assert [(h["version"], h["type"]) for h in history] == [
        (1, "CustomerCreated"),
        (2, "BalanceAdjusted"),
        (3, "CustomerUpdated"),
        (4, "BalanceAdjusted"),
        (5, "BalanceTransactionUpdated"),
    ]
    created, credit, rename, debit, describe = history
    assert created["request_id"] == "req_create" and created["idempotency_key"] == "key_create"
    assert created["recorded_at_us"] == at["create"] and created["recorded_at"] == at["create"] // 1_000_000
    assert created["changes"]["email"] == {"before": None, "after": "pit@example.com"}
    assert created["changes"]["currency"] == {"before": None, "after": "usd"}
    assert "id" not in created["changes"] and "object" not in created["changes"]
    assert credit["changes"]["balance"] == {"before": 0, "after": 500}
    assert credit["balance_transaction"] == "cbtxn_pit_1"
    assert credit["changes"]["balance_transaction"]["after"]["amount"] == 500
    assert rename["changes"] == {"name": {"before": "Before", "after": "After"}}
    assert rename["request_id"] == "req_rename" and rename["idempotency_key"] is None
    assert debit["changes"]["balance"] == {"before": 500, "after": 300}
    assert describe["balance_transaction"] == "cbtxn_pit_1"
    assert describe["changes"] == {"description": {"before": None, "after": "welcome credit"}}
    hashes = {
        row["event_id"]: bytes(row["hash"]).hex()
        for row in await pool.fetch("SELECT event_id, hash FROM events")
    }
    assert all(hashes[h["event_id"]] == h["hash"] for h in history)


@pytest.mark.slow
async def test_balance_at_microseconds(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    cid = "cus_bal"
    at = await scripted_customer(store, cid, T0 + 500_000)
    async with pool.acquire() as conn:
        assert not (await balance_at(conn, cid, at["create"] - 1)).exists
        assert (await balance_at(conn, cid, at["credit"] - 1)).balance == 0
        exact = await balance_at(conn, cid, at["credit"])
        assert (exact.exists, exact.balance, exact.currency, exact.entries) == (True, 500, "usd", 1)
        assert (await balance_at(conn, cid, at["debit"])).balance == 300
        assert (await balance_at(conn, "cus_nobody", at["debit"])).exists is False


def test_parse_instant() -> None:
    assert parse_instant("2026-11-01T00:00:00Z") == 1_793_491_200_000_000
    assert parse_instant("2026-11-01T01:00:00+01:00") == 1_793_491_200_000_000
    assert parse_instant("2026-11-01T00:00:00.25") == 1_793_491_200_250_000
    assert parse_instant("1793491200") == 1_793_491_200_000_000
    with pytest.raises(ValueError):
        parse_instant("yesterday")


# --- the CLI -------------------------------------------------------------------------------------------


async def cli(db_url: str, *args: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ledgerd.service.cli",
        *args,
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": db_url},
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out, err


@pytest.mark.slow
async def test_cli_verify_digest_export_import_balance_at(
    pool: asyncpg.Pool, db_url: str, other_db_url: str, tmp_path: Path
) -> None:
    store = PostgresEventStore(pool)
    await make_history(store, seed=12, commands=40)
    code, out, err = await cli(db_url, "verify", "--json")
    assert code == 0, err.decode()
    report = msgspec.json.decode(out)
    assert report["ok"] is True and {c["name"] for c in report["checks"]} >= {"chains", "invariants", "drift"}

    await settle(pool)
    digest_file = tmp_path / "digest.json"
    code, _, err = await cli(db_url, "digest", "--output", str(digest_file))
    assert code == 0, err.decode()
    code, out, _ = await cli(db_url, "verify", "--digest", str(digest_file))
    assert code == 0 and b"verify: OK" in out

    await settle(pool)
    code, exported, err = await cli(db_url, "export")
    assert code == 0 and b"exported" in err
    export_file = tmp_path / "log.jsonl"
    export_file.write_bytes(exported)
    code, out, _ = await cli(
        db_url, "verify", "--export", str(export_file), "--digest", str(digest_file), "--json"
    )
    assert code == 0 and msgspec.json.decode(out)["ok"] is True

    cid = "cus_cli"
    at = await scripted_customer(store, cid, T0 + 40_000_000_000)
    when = (at["debit"] // 1_000_000) - 1
    code, out, err = await cli(db_url, "balance-at", cid, "--at", str(when))
    assert code == 0 and out.strip() == b"500", err
    code, out, _ = await cli(db_url, "balance-at", cid, "--at", "2000-01-01T00:00:00Z")
    assert code == 1
    code, out, _ = await cli(db_url, "balance-at", cid, "--at", "2100-01-01T00:00:00Z", "--json")
    assert code == 0 and msgspec.json.decode(out)["balance"] == 300

    # tampering makes verify exit 1 and name it
    await pool.execute("UPDATE customers SET balance = balance + 7 WHERE id = $1", cid)
    code, out, _ = await cli(db_url, "verify", "--json")
    assert code == 1
    first = msgspec.json.decode(out)["first_problem"]
    assert first["check"] == "invariants" and first["key"] == cid

    # the (earlier) export imported into another store
    code, _, err = await cli(other_db_url, "import", str(export_file))
    assert code == 0, err.decode()
    code, out, err = await cli(other_db_url, "verify", "--digest", str(digest_file))
    assert code == 1  # the same log, but other tx ids: a digest names positions of its own database
    code, out, err = await cli(other_db_url, "verify")
    assert code == 0, out.decode() + err.decode()
