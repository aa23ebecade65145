"""The stream snapshot is a cache of fold(events): it must always equal the fold, and a snapshot that
is stale, of another schema or unreadable must be ignored, never trusted."""

from __future__ import annotations

import contextlib
import random

import asyncpg

from ledgerd.domain.customer import (
    INITIAL_STATE,
    AdjustBalance,
    CreateCustomer,
    DeleteCustomer,
    ProfilePatch,
    UpdateCustomer,
    evolve,
)
from ledgerd.domain.errors import DomainError
from ledgerd.domain.values import Profile
from ledgerd.service.commands.handle import execute
from ledgerd.service.commands.requests import RequestContext
from ledgerd.service.commands.snapshots import decode_snapshot
from ledgerd.service.store.postgres import PostgresEventStore

ACCOUNT = "acct_snap"
T0 = 1_700_000_000_000_000
CONTEXT = RequestContext(account=ACCOUNT, livemode=False, occurred_at_us=T0)


async def fold_from_log(store: PostgresEventStore, stream_id: str) -> object:
    state = INITIAL_STATE
    for recorded in await store.load_stream(stream_id):
        state = evolve(state, recorded.event)
    return state


async def snapshots(pool: asyncpg.Pool) -> dict[str, tuple[int, bytes | None]]:
    rows = await pool.fetch("SELECT stream_id, version, snapshot::text AS snapshot FROM streams")
    return {row["stream_id"]: (row["version"], row["snapshot"] and row["snapshot"].encode()) for row in rows}


async def test_snapshot_equals_the_fold_after_random_commands(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    rng = random.Random(7)
    ids = [f"cus_snap{i}" for i in range(4)]
    for customer_id in ids:
        await execute(
            store,
            CreateCustomer(
                customer_id=customer_id,
                occurred_at=T0,
                account=ACCOUNT,
                livemode=False,
                profile=Profile(invoice_prefix="SNAP"),
            ),
            CONTEXT,
        )
    for step in range(120):
        customer_id = rng.choice(ids)
        choice = rng.random()
        if choice < 0.6:
            command: object = AdjustBalance(
                customer_id=customer_id,
                occurred_at=T0 + step,
                transaction_id=f"cbtxn_s{step}",
                amount=rng.randint(-500, 500) or 1,
                currency=rng.choice(["usd", "usd", "eur"]),
            )
        elif choice < 0.95:
            command = UpdateCustomer(
                customer_id=customer_id,
                occurred_at=T0 + step,
                patch=ProfilePatch(email=f"e{step}@x.io", metadata={f"k{step % 3}": rng.choice(["v", None])}),
            )
        else:
            command = DeleteCustomer(customer_id=customer_id, occurred_at=T0 + step)
        with contextlib.suppress(DomainError):  # rejections are part of a random history
            await execute(store, command, CONTEXT)  # type: ignore[arg-type]
    for stream_id, (version, raw) in (await snapshots(pool)).items():
        assert decode_snapshot(raw, version) == await fold_from_log(store, stream_id)


async def test_unusable_snapshots_are_ignored(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    create = CreateCustomer(
        customer_id="cus_snapbad",
        occurred_at=T0,
        account=ACCOUNT,
        livemode=False,
        profile=Profile(invoice_prefix="SNAP"),
        currency="usd",
    )
    await execute(store, create, CONTEXT)
    adjust = AdjustBalance(
        customer_id="cus_snapbad", occurred_at=T0, transaction_id="cbtxn_b1", amount=100, currency="usd"
    )
    await execute(store, adjust, CONTEXT)
    for poison in (
        '{"schema": 99, "state": {}}',
        '"garbage"',
        '{"schema": 1, "state": {"version": 1}}',
        None,
    ):
        await pool.execute("UPDATE streams SET snapshot = $1::jsonb WHERE stream_id = 'cus_snapbad'", poison)
        # A stale snapshot claiming balance 0 at version 1 must not be used: the fold says 100 at version 2.
        outcome = await execute(
            store,
            AdjustBalance(
                customer_id="cus_snapbad",
                occurred_at=T0,
                transaction_id=f"cbtxn_p{id(poison)}",
                amount=1,
                currency="usd",
            ),
            CONTEXT,
        )
        assert outcome.state == await fold_from_log(store, "cus_snapbad")
    balance = await pool.fetchval("SELECT balance FROM customers WHERE id = 'cus_snapbad'")
    assert balance == 104
