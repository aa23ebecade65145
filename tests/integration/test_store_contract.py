"""One contract for every event store: the PostgreSQL store and the in-memory one must behave alike."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from ledgerd.domain.customer import AnyEvent, BalanceAdjusted, CustomerCreated, CustomerDeleted
from ledgerd.domain.log import (
    GENESIS_HASH,
    EventMetadata,
    PendingEvent,
    RecordedEvent,
    StreamHeader,
    event_hash,
    prepare,
)
from ledgerd.domain.values import Profile
from ledgerd.service.store.base import (
    DuplicateKey,
    EventStore,
    GlobalCursor,
    IdempotencyRecord,
    ReadRequest,
    Write,
    WrongExpectedVersion,
)
from ledgerd.service.store.memory import MemoryEventStore
from ledgerd.service.store.postgres import PostgresEventStore
from tests.support.appending import append_to, placed, raw_write

ACCOUNT = "acct_contract"
T0 = 1_700_000_000_123_456
META = EventMetadata(account=ACCOUNT, livemode=False, request_id="req_1", idempotency_key="key_1")
_ids = iter(range(1, 10**9))


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> EventStore:
    if request.param == "memory":
        return MemoryEventStore()
    pool: asyncpg.Pool = request.getfixturevalue("pool")
    return PostgresEventStore(pool)


def header(stream_id: str, livemode: bool = False) -> StreamHeader:
    return StreamHeader(stream_id=stream_id, stream_type="customer", account=ACCOUNT, livemode=livemode)


def pending(event: AnyEvent) -> PendingEvent:
    return prepare(event, f"evt_{next(_ids):08d}")


def created(
    stream_id: str, external_id: str | None = None, name: str | None = None, livemode: bool = False
) -> PendingEvent:
    profile = Profile(invoice_prefix="CONTRACT", name=name, external_id=external_id, metadata={"k": "v"})
    return pending(
        CustomerCreated(
            customer_id=stream_id, account=ACCOUNT, livemode=livemode, created=T0 // 10**6, profile=profile
        )
    )


def adjusted(stream_id: str, amount: int, ending: int, description: str | None = None) -> PendingEvent:
    return pending(
        BalanceAdjusted(
            customer_id=stream_id,
            transaction_id=f"cbtxn_{next(_ids):08d}",
            amount=amount,
            currency="usd",
            type="adjustment",
            ending_balance=ending,
            description=description,
            created=T0 // 10**6,
        )
    )


async def append(
    store: EventStore,
    stream_id: str,
    expected: int,
    events: Sequence[PendingEvent],
    at: int = T0,
    livemode: bool = False,
) -> list[RecordedEvent]:
    async with store.connection() as connection:
        return await append_to(connection, header(stream_id, livemode), expected, events, META, at)


async def new_customer(store: EventStore, stream_id: str, adjustments: int = 0) -> list[RecordedEvent]:
    recorded = await append(store, stream_id, 0, [created(stream_id)])
    for n in range(1, adjustments + 1):
        recorded += await append(store, stream_id, n, [adjusted(stream_id, 10, 10 * n)])
    return recorded


async def read_everything(store: EventStore, expected: int, limit: int = 1000) -> list[RecordedEvent]:
    """The whole gap-safe log through the cursors. Another session's open transaction anywhere on the
    server may hold the horizon back for a moment: wait for it (a stall is allowed, a skip is not)."""
    for _ in range(400):
        log: list[RecordedEvent] = []
        cursor = GlobalCursor()
        while True:
            page = await store.read_all(cursor, limit)
            log += page
            if len(page) < limit:
                break
            cursor = GlobalCursor(page[-1].tx_id, page[-1].position)
        if len(log) >= expected:
            return log
        await asyncio.sleep(0.025)
    return log


def independent_hash(previous: bytes, event: RecordedEvent) -> bytes:
    """The chain as documented in service/store/base.py, recomputed with the standard library only."""
    canonical = json.dumps(
        [
            event.stream_id,
            event.stream_version,
            event.event_id,
            event.event_type,
            event.schema_version,
            event.recorded_at_us,
            event.data,
            event.metadata,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    return hashlib.sha256(previous + canonical).digest()


# --- appends and optimistic concurrency ---------------------------------------------------------------


async def test_append_to_a_new_stream(store: EventStore) -> None:
    recorded = await append(store, "cus_a", 0, [created("cus_a"), adjusted("cus_a", 500, 500)])
    assert [event.stream_version for event in recorded] == [1, 2]
    assert [event.event_type for event in recorded] == ["CustomerCreated", "BalanceAdjusted"]
    assert len({event.tx_id for event in recorded}) == 1
    assert recorded[0].position < recorded[1].position
    assert recorded[0].metadata == {
        "account": ACCOUNT,
        "livemode": False,
        "request_id": "req_1",
        "idempotency_key": "key_1",
        "api_key_id": None,
    }
    assert recorded[0].recorded_at_us == T0
    loaded = await store.load_stream("cus_a")
    assert loaded == recorded
    assert loaded[1].event == BalanceAdjusted(
        **{k: v for k, v in loaded[1].data.items() if k != "event_type"}
    )


async def test_append_at_the_expected_version(store: EventStore) -> None:
    await append(store, "cus_a", 0, [created("cus_a")])
    more = await append(store, "cus_a", 1, [adjusted("cus_a", 1, 1), adjusted("cus_a", 2, 3)])
    assert [event.stream_version for event in more] == [2, 3]
    assert [event.stream_version for event in await store.load_stream("cus_a")] == [1, 2, 3]


async def test_stale_expected_version_raises_and_appends_nothing(store: EventStore) -> None:
    await new_customer(store, "cus_a", adjustments=1)  # at version 2
    before = await store.load_stream("cus_a")
    log_before = await read_everything(store, 2)
    for stale in (0, 1, 3, 7):
        with pytest.raises(WrongExpectedVersion) as caught:
            await append(store, "cus_a", stale, [adjusted("cus_a", 5, 5)])
        assert caught.value.stream_id == "cus_a" and caught.value.expected == stale
        assert await store.load_stream("cus_a") == before
        assert await read_everything(store, 2) == log_before
    # the stream still accepts the right version
    assert [
        event.stream_version for event in await append(store, "cus_a", 2, [adjusted("cus_a", 5, 25)])
    ] == [3]


async def test_concurrent_appends_at_one_version_one_wins(store: EventStore) -> None:
    await new_customer(store, "cus_a")

    async def attempt(amount: int) -> str:
        try:
            await append(store, "cus_a", 1, [adjusted("cus_a", amount, amount)])
        except WrongExpectedVersion:
            return "lost"
        return "won"

    results = await asyncio.gather(*(attempt(n) for n in range(1, 7)))
    assert sorted(results) == ["lost"] * 5 + ["won"]
    stream = await store.load_stream("cus_a")
    assert [event.stream_version for event in stream] == [1, 2]


async def test_two_creates_of_one_stream_one_wins(store: EventStore) -> None:
    async def attempt() -> bool:
        try:
            await append(store, "cus_a", 0, [created("cus_a")])
        except WrongExpectedVersion:
            return False
        return True

    assert sorted(await asyncio.gather(*(attempt() for _ in range(4)))) == [False, False, False, True]
    assert len(await store.load_stream("cus_a")) == 1


async def test_versions_are_contiguous(store: EventStore) -> None:
    await new_customer(store, "cus_a", adjustments=5)
    await new_customer(store, "cus_b", adjustments=2)
    for stream_id, length in (("cus_a", 6), ("cus_b", 3)):
        assert [event.stream_version for event in await store.load_stream(stream_id)] == list(
            range(1, length + 1)
        )


# --- loading ------------------------------------------------------------------------------------------


async def test_load_whole_up_to_version_and_up_to_time(store: EventStore) -> None:
    await append(store, "cus_a", 0, [created("cus_a")], at=T0)
    await append(store, "cus_a", 1, [adjusted("cus_a", 1, 1)], at=T0 + 1)
    await append(store, "cus_a", 2, [adjusted("cus_a", 2, 3), adjusted("cus_a", 3, 6)], at=T0 + 2_000_000)
    whole = await store.load_stream("cus_a")
    assert [event.stream_version for event in whole] == [1, 2, 3, 4]
    assert await store.load_stream("cus_a", up_to_version=2) == whole[:2]
    assert await store.load_stream("cus_a", up_to_version=0) == []
    assert await store.load_stream("cus_a", up_to_version=99) == whole
    assert await store.load_stream("cus_a", up_to_time_us=T0 - 1) == []
    assert await store.load_stream("cus_a", up_to_time_us=T0) == whole[:1]
    assert await store.load_stream("cus_a", up_to_time_us=T0 + 1) == whole[:2]
    assert await store.load_stream("cus_a", up_to_time_us=T0 + 1_999_999) == whole[:2]
    assert await store.load_stream("cus_a", up_to_time_us=T0 + 2_000_000) == whole
    assert await store.load_stream("cus_missing") == []


# --- the global log -----------------------------------------------------------------------------------


async def test_read_all_order_and_cursors(store: EventStore) -> None:
    await new_customer(store, "cus_a", adjustments=2)
    await append(store, "cus_b", 0, [created("cus_b"), adjusted("cus_b", 7, 7)])
    await append(store, "cus_a", 3, [adjusted("cus_a", 1, 21)])
    await new_customer(store, "cus_c", adjustments=1)
    total = 8
    log = await read_everything(store, total)
    assert len(log) == total
    assert len({event.event_id for event in log}) == total
    keys = [(event.tx_id, event.position) for event in log]
    assert keys == sorted(set(keys))
    # one append = one transaction: its events are adjacent in the global order
    assert [event.stream_id for event in log] == ["cus_a"] * 3 + ["cus_b"] * 2 + ["cus_a"] + ["cus_c"] * 2
    # every page size walks the same sequence through its cursors
    for limit in (1, 2, 3, 7, 8, 9):
        assert await read_everything(store, total, limit=limit) == log
    # after the last event: nothing; from the middle: the rest
    assert await store.read_all(GlobalCursor(log[-1].tx_id, log[-1].position)) == []
    assert await store.read_all(GlobalCursor(log[3].tx_id, log[3].position)) == log[4:]
    assert await store.read_all(limit=4) == log[:4]
    # and each stream's events in the log are exactly its stream
    for stream_id in ("cus_a", "cus_b", "cus_c"):
        assert [event for event in log if event.stream_id == stream_id] == await store.load_stream(stream_id)


# --- the hash chain -----------------------------------------------------------------------------------


async def test_hash_chain_recomputes_from_genesis(store: EventStore) -> None:
    tricky = 'quote " backslash \\ newline \n tab \t ctrl \x01 é 漢字 😀 \u2028'
    await append(store, "cus_a", 0, [created("cus_a", name=tricky)])
    await append(store, "cus_a", 1, [adjusted("cus_a", 5, 5, description=tricky), adjusted("cus_a", -7, -2)])
    await new_customer(store, "cus_b", adjustments=2)
    for stream_id in ("cus_a", "cus_b"):
        stream = await store.load_stream(stream_id)
        head = independent = GENESIS_HASH
        for event in stream:
            head = event_hash(head, event)
            independent = independent_hash(independent, event)
            assert head == independent == event.hash
    assert (await store.load_stream("cus_a"))[0].data["profile"]["name"] == tricky


async def test_hash_chain_detects_tampering(store: EventStore) -> None:
    stream = await new_customer(store, "cus_a", adjustments=2)
    middle = stream[1]
    forged_data = dict(middle.data, amount=middle.data["amount"] + 1)
    forged = RecordedEvent(
        **{**{f: getattr(middle, f) for f in RecordedEvent.__struct_fields__}, "data": forged_data}
    )
    assert event_hash(stream[0].hash, middle) == middle.hash
    assert event_hash(stream[0].hash, forged) != middle.hash
    assert event_hash(GENESIS_HASH, middle) != middle.hash  # the chain binds the predecessor


# --- a write is atomic ---------------------------------------------------------------------------------


async def test_a_write_that_fails_leaves_no_trace(store: EventStore) -> None:
    """A batch whose last write is stale writes nothing of the others: events, stream, record, claim."""
    await new_customer(store, "cus_a", adjustments=1)  # at version 2
    async with store.connection() as connection:
        fresh, _ = await raw_write(
            connection,
            header("cus_new"),
            0,
            [created("cus_new", external_id="ext-new")],
            META,
            T0,
            record=record("key_boom"),
            claim=(ACCOUNT, False, "ext-new"),
        )
        stale, _ = await raw_write(connection, header("cus_a"), 1, [adjusted("cus_a", 5, 5)], META, T0)
        with pytest.raises(WrongExpectedVersion):
            await connection.write([fresh, stale])
        reads = await connection.read(
            ReadRequest(
                streams=("cus_new", "cus_a"), records=((ACCOUNT, False, "key_boom"),), claims=((ACCOUNT, False, "ext-new"),)
            )
        )
    assert reads.heads["cus_new"] is None
    assert reads.heads["cus_a"] is not None and reads.heads["cus_a"].version == 2
    assert reads.records == {(ACCOUNT, False, "key_boom"): None}
    assert reads.claims == {(ACCOUNT, False, "ext-new"): None}
    assert await store.load_stream("cus_new") == []
    assert len(await read_everything(store, 2)) == 2
    # the stream can still be created from scratch, and the versions resume where they were
    assert [event.stream_version for event in await append(store, "cus_new", 0, [created("cus_new")])] == [1]
    assert [event.stream_version for event in await append(store, "cus_a", 2, [adjusted("cus_a", 5, 15)])] == [3]


async def test_a_batch_of_writes_commits_together_in_order(store: EventStore) -> None:
    await new_customer(store, "cus_a")
    async with store.connection() as connection:
        first, one = await raw_write(connection, header("cus_b"), 0, [created("cus_b")], META, T0)
        second, two = await raw_write(connection, header("cus_a"), 1, [adjusted("cus_a", 5, 5)], META, T0)
        appended = await connection.write([first, second])
    events = placed(one, appended) + placed(two, appended)
    assert len({event.tx_id for event in events}) == 1
    assert [event.position for event in events] == sorted(event.position for event in events)
    assert await store.load_stream("cus_b") == events[:1]


# --- reads ---------------------------------------------------------------------------------------------


async def test_read_returns_heads_with_snapshot_and_time(store: EventStore) -> None:
    recorded = await new_customer(store, "cus_a", adjustments=1)
    async with store.connection() as connection:
        reads = await connection.read(ReadRequest(streams=("cus_a", "cus_none")))
    head = reads.heads["cus_a"]
    assert head is not None
    assert (head.version, head.head_hash, head.recorded_at_us) == (2, recorded[-1].hash, T0)
    assert reads.heads["cus_none"] is None


async def test_read_returns_one_ledger_entrys_events(store: EventStore) -> None:
    recorded = await new_customer(store, "cus_a", adjustments=3)
    transaction_id = recorded[2].data["transaction_id"]
    async with store.connection() as connection:
        reads = await connection.read(ReadRequest(transactions=(("cus_a", transaction_id), ("cus_a", "cbtxn_none"))))
    assert reads.transaction_events[("cus_a", transaction_id)] == [recorded[2]]
    assert reads.transaction_events[("cus_a", "cbtxn_none")] == []


# --- idempotency records ------------------------------------------------------------------------------


def record(key: str, account: str = ACCOUNT, livemode: bool = False, **changes: Any) -> IdempotencyRecord:
    values: dict[str, Any] = {
        "account": account,
        "livemode": livemode,
        "key": key,
        "method": "POST",
        "path": "/v1/customers",
        "params_hash": hashlib.sha256(key.encode()).digest(),
        "params": {"email": "a@example.com", "metadata": {"k": "v"}, "balance": 5, "x": None},
        "status": 200,
        "response": b'{"id":"cus_a"}',
        "request_id": "req_9",
        **changes,
    }
    return IdempotencyRecord(**values)


async def save(store: EventStore, *records: IdempotencyRecord) -> None:
    async with store.connection() as connection:
        await connection.write(
            [Write(None, 0, META, T0, record=saved) for saved in records]
        )


async def find(store: EventStore, account: str, livemode: bool, key: str) -> IdempotencyRecord | None:
    async with store.connection() as connection:
        reads = await connection.read(ReadRequest(records=((account, livemode, key),)))
    return reads.records[(account, livemode, key)]


async def test_idempotency_records_save_find_and_scope(store: EventStore) -> None:
    saved = record("key_1")
    assert await find(store, ACCOUNT, False, "key_1") is None
    await save(store, saved)
    assert await find(store, ACCOUNT, False, "key_1") == saved
    assert await find(store, ACCOUNT, True, "key_1") is None
    assert await find(store, "acct_other", False, "key_1") is None
    assert await find(store, ACCOUNT, False, "key_2") is None
    # the same key in another account or mode is another record
    await save(store, record("key_1", livemode=True, status=400), record("key_1", account="acct_other", response=b"other"))
    found = await find(store, ACCOUNT, True, "key_1")
    assert found is not None and found.status == 400
    other = await find(store, "acct_other", False, "key_1")
    assert other is not None and other.response == b"other"


async def test_duplicate_idempotency_key_raises(store: EventStore) -> None:
    await save(store, record("key_1"))
    with pytest.raises(DuplicateKey):
        await save(store, record("key_1", status=500))
    with pytest.raises(DuplicateKey):
        await save(store, record("key_2"), record("key_2"))
    kept = await find(store, ACCOUNT, False, "key_1")
    assert kept is not None and kept.status == 200
    assert await find(store, ACCOUNT, False, "key_2") is None


# --- external_id claims -------------------------------------------------------------------------------


async def holder(store: EventStore, livemode: bool, external_id: str) -> str | None:
    async with store.connection() as connection:
        reads = await connection.read(ReadRequest(claims=((ACCOUNT, livemode, external_id),)))
    return reads.claims[(ACCOUNT, livemode, external_id)]


async def test_an_external_id_claim_is_unique_per_account_and_mode(store: EventStore) -> None:
    claim = (ACCOUNT, False, "ext-1")
    async with store.connection() as connection:
        await append_to(connection, header("cus_a"), 0, [created("cus_a", external_id="ext-1")], META, T0, claim=claim)
    assert await holder(store, False, "ext-1") == "cus_a"
    assert await holder(store, True, "ext-1") is None
    async with store.connection() as connection:
        # the claimed customer's head is read with the claim
        reads = await connection.read(ReadRequest(claims=(claim,)))
        assert reads.heads["cus_a"] is not None and reads.heads["cus_a"].version == 1
        with pytest.raises(DuplicateKey):
            await append_to(connection, header("cus_b"), 0, [created("cus_b", external_id="ext-1")], META, T0, claim=claim)
    assert await store.load_stream("cus_b") == []
    # another mode may use it; once released it is free again
    async with store.connection() as connection:
        await append_to(
            connection,
            header("cus_c", livemode=True),
            0,
            [created("cus_c", external_id="ext-1", livemode=True)],
            META,
            T0,
            claim=(ACCOUNT, True, "ext-1"),
        )
        deleted = [pending(CustomerDeleted(customer_id="cus_a", deleted_at=0))]
        await append_to(connection, header("cus_a"), 1, deleted, META, T0, release=claim)
    assert await holder(store, False, "ext-1") is None
    async with store.connection() as connection:
        await append_to(connection, header("cus_b"), 0, [created("cus_b", external_id="ext-1")], META, T0, claim=claim)
    assert await holder(store, False, "ext-1") == "cus_b"


# --- serialized decisions -----------------------------------------------------------------------------


async def test_serialized_connections_take_turns(store: EventStore) -> None:
    counter = 0

    async def increment() -> None:
        nonlocal counter
        async with store.connection() as connection, connection.serialized(["stream:cus_x"]):
            value = counter
            await asyncio.sleep(0.005)
            counter = value + 1

    await asyncio.gather(*(increment() for _ in range(8)))
    assert counter == 8
