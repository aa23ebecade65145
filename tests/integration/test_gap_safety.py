"""Gap-safe global reading (event-store.md §3.4): a reader that follows `read_all` with a cursor never
skips an event that commits after a later-numbered one, and sees every event exactly once in a stable
order."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from ledgerd.domain.customer import BalanceAdjusted, CustomerCreated
from ledgerd.domain.log import EventMetadata, RecordedEvent, StreamHeader, prepare
from ledgerd.domain.values import Profile
from ledgerd.service.store.base import GlobalCursor
from ledgerd.service.store.postgres import PostgresEventStore
from tests.support.appending import append

ACCOUNT = "acct_gaps"
T0 = 1_700_000_000_000_000
META = EventMetadata(account=ACCOUNT, livemode=False)


def header(stream_id: str) -> StreamHeader:
    return StreamHeader(stream_id=stream_id, stream_type="customer", account=ACCOUNT, livemode=False)


def created(stream_id: str) -> list:  # type: ignore[type-arg]
    event = CustomerCreated(
        customer_id=stream_id,
        account=ACCOUNT,
        livemode=False,
        created=0,
        profile=Profile(invoice_prefix="GAP"),
    )
    return [prepare(event, f"evt_{stream_id}")]


def adjusted(stream_id: str, version: int) -> list:  # type: ignore[type-arg]
    event = BalanceAdjusted(
        customer_id=stream_id,
        transaction_id=f"cbtxn_{stream_id}_{version}",
        amount=1,
        currency="usd",
        type="adjustment",
        ending_balance=version,
        created=0,
    )
    return [prepare(event, f"evt_{stream_id}_{version}")]


async def read_from(store: PostgresEventStore, cursor: GlobalCursor) -> list[RecordedEvent]:
    events: list[RecordedEvent] = []
    while True:
        page = await store.read_all(cursor, limit=100)
        events += page
        if len(page) < 100:
            return events
        cursor = GlobalCursor(page[-1].tx_id, page[-1].position)


async def read_until(store: PostgresEventStore, cursor: GlobalCursor, count: int) -> list[RecordedEvent]:
    """Follow the log from `cursor` until `count` events arrived (other sessions on a shared server may
    hold the horizon back for a moment: a stall is allowed, a skip is not)."""
    events: list[RecordedEvent] = []
    for _ in range(400):
        page = await read_from(store, cursor)
        events += page
        if page:
            cursor = GlobalCursor(page[-1].tx_id, page[-1].position)
        if len(events) >= count:
            break
        await asyncio.sleep(0.025)
    return events


def cursor_after(events: list[RecordedEvent], default: GlobalCursor) -> GlobalCursor:
    return GlobalCursor(events[-1].tx_id, events[-1].position) if events else default


async def test_open_older_transaction_holds_back_a_newer_commit(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    async with store.connection() as session:
        await append(session.conn, header("cus_0"), 0, created("cus_0"), META, T0)
    seen = await read_until(store, GlobalCursor(), 1)
    assert [event.stream_id for event in seen] == ["cus_0"]
    cursor = cursor_after(seen, GlobalCursor())

    async with pool.acquire() as conn1:
        t1 = conn1.transaction()
        await t1.start()
        first = await append(
            conn1, header("cus_1"), 0, created("cus_1"), META, T0
        )  # T1, open
        async with store.connection() as session:  # T2 appends and commits
            second = await append(session.conn, header("cus_2"), 0, created("cus_2"), META, T0)
        assert first[0].tx_id < second[0].tx_id
        # T2 has committed, but T1 (older) is still open: T2's event must be held back, or the reader's
        # cursor would pass T1's slot and lose T1's event for good.
        for _ in range(3):
            early = await read_from(store, cursor)
            assert early == [], "read past an open, older transaction"
            await asyncio.sleep(0.01)
        seen += early
        cursor = cursor_after(seen, cursor)
        await t1.commit()

    seen += await read_until(store, cursor, 2)
    assert [event.stream_id for event in seen] == ["cus_0", "cus_1", "cus_2"]  # each exactly once, T1 first
    # the order is stable: full reads from zero give the same sequence, every time
    assert await read_until(store, GlobalCursor(), 3) == seen
    assert await read_until(store, GlobalCursor(), 3) == seen


async def test_the_writing_transaction_is_ordered_by_its_first_write(pool: asyncpg.Pool) -> None:
    """A transaction that began earlier but writes later is ordered after a transaction that wrote in
    between: the order key is fixed by the first write, so readers are not held back by idle readers."""
    store = PostgresEventStore(pool)
    async with pool.acquire() as conn1:
        t1 = conn1.transaction()
        await t1.start()
        await conn1.fetch("SELECT * FROM streams")  # T1 reads: no transaction id yet
        async with store.connection() as session:
            await append(session.conn, header("cus_2"), 0, created("cus_2"), META, T0)
        # T1 holds no xid: T2's event is readable right away
        assert [event.stream_id for event in await read_until(store, GlobalCursor(), 1)] == ["cus_2"]
        await append(conn1, header("cus_1"), 0, created("cus_1"), META, T0)
        await t1.commit()
    log = await read_until(store, GlobalCursor(), 2)
    assert [event.stream_id for event in log] == ["cus_2", "cus_1"]


@pytest.mark.slow
async def test_a_tailing_reader_sees_every_event_once_under_concurrent_writers(pool: asyncpg.Pool) -> None:
    """Writers whose transactions commit out of insert order (each waits a random moment after its
    insert), and a reader that tails the log by cursor the whole time."""
    store = PostgresEventStore(pool)
    rng = random.Random(11)
    writers, appends = 6, 12
    done = asyncio.Event()
    tailed: list[RecordedEvent] = []

    async def writer(n: int) -> None:
        stream_id = f"cus_w{n}"
        for version in range(appends):
            async with store.connection() as session, session.conn.transaction():
                events = created(stream_id) if version == 0 else adjusted(stream_id, version)
                await append(session.conn, header(stream_id), version, events, META, T0)
                await asyncio.sleep(
                    rng.uniform(0, 0.01)
                )  # commit late: positions and xids commit out of order

    async def reader() -> None:
        cursor = GlobalCursor()
        while True:
            finished = done.is_set()
            page = await read_from(store, cursor)
            tailed.extend(page)
            cursor = cursor_after(tailed, cursor)
            if finished:
                return
            await asyncio.sleep(0.001)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(writers)))
    total = writers * appends
    done.set()
    await reading
    tailed += await read_until(store, cursor_after(tailed, GlobalCursor()), total - len(tailed))
    full = await read_until(store, GlobalCursor(), total)
    assert len(full) == total
    assert [event.event_id for event in tailed] == [event.event_id for event in full]
    assert len({event.event_id for event in tailed}) == total
    for n in range(writers):  # and per stream, in version order
        versions = [event.stream_version for event in tailed if event.stream_id == f"cus_w{n}"]
        assert versions == list(range(1, appends + 1))
