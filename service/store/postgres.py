"""The PostgreSQL event store (asyncpg): a command is two statements (service/store/postgres.sql).

`read` fetches, in one round trip and without taking a lock, everything a batch of commands decides
on: stream heads with their snapshots, idempotency records, external_id claims (with the claimed
customer's head), the events of a ledger entry. `write` then sends, in one statement that is its own
transaction, everything the batch decided: the version check of every stream, the events with their
chain hashes and canonical bytes, the projection rows as the commands left them, the idempotency
records and the claims. Either all of it commits, or none: a stream that moved meanwhile is a
WrongExpectedVersion, a key taken meanwhile a DuplicateKey, and the commands are decided again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import cache
from importlib import resources
from typing import Any

import asyncpg
import msgspec

from ledgerd.domain.log import RecordedEvent
from ledgerd.projections import customers
from ledgerd.projections.sql import load_queries
from ledgerd.service.store.base import (
    Appended,
    DuplicateKey,
    GlobalCursor,
    IdempotencyRecord,
    ReadRequest,
    Reads,
    StreamHead,
    Write,
    WrongExpectedVersion,
)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
VERSION_CONFLICT = "LD409"  # raised by ledger_expect_streams (migrations/0011)

EVENT_COLUMNS = """position, tx_id, stream_id, stream_version, event_id, event_type, schema_version,
    data::text AS data, metadata::text AS metadata, recorded_at, hash"""

SQL_LOAD = f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version"
SQL_LOAD_TO_VERSION = f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version <= $2 ORDER BY stream_version"
SQL_LOAD_TO_TIME = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND recorded_at <= $2 ORDER BY stream_version"
)
SQL_LOCK = """
SELECT pg_advisory_xact_lock(id)
FROM (SELECT DISTINCT hashtextextended(key, 0) AS id FROM unnest($1::text[]) AS key ORDER BY 1) AS keys
"""
# One statement, so the horizon and the rows come from the same snapshot.
SQL_READ_ALL = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE (tx_id, position) > ($1, $2)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
ORDER BY tx_id, position
LIMIT $3
"""


@cache
def statements() -> dict[str, str]:
    text = resources.files("ledgerd.service.store").joinpath("postgres.sql").read_text(encoding="utf-8")
    queries = load_queries(text)
    assignments = ", ".join(f"{column} = r.{column}" for column in customers.MUTABLE_COLUMNS)
    queries["write"] = queries["write"].replace("{customer_assignments}", assignments)
    return queries


def to_timestamp(microseconds: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=microseconds)


def to_microseconds(moment: dt.datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def utc_text(microseconds: int) -> str:
    """An instant as the audit documents write it: `2026-11-01T00:00:00.000000Z`."""
    return to_timestamp(microseconds).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_to_event(row: Any, version_column: str = "stream_version") -> RecordedEvent:
    return RecordedEvent(
        position=row["position"],
        tx_id=row["tx_id"],
        stream_id=row["stream_id"],
        stream_version=row[version_column],
        event_id=row["event_id"],
        event_type=row["event_type"],
        schema_version=row["schema_version"],
        data=msgspec.json.decode(row["data"]),
        metadata=msgspec.json.decode(row["metadata"]),
        recorded_at_us=to_microseconds(row["recorded_at"]),
        hash=bytes(row["hash"]),
    )


def head_of(row: Any) -> StreamHead | None:
    if row["version"] is None:
        return None
    snapshot = row["snapshot"]
    recorded_at = row["recorded_at"]
    return StreamHead(
        version=row["version"],
        head_hash=bytes(row["head_hash"]),
        snapshot=snapshot.encode() if snapshot is not None else None,
        recorded_at_us=to_microseconds(recorded_at) if recorded_at is not None else None,
    )


def record_of(row: Any) -> IdempotencyRecord:
    return IdempotencyRecord(
        account=row["account"],
        livemode=row["livemode"],
        key=row["key"],
        method=row["method"],
        path=row["path"],
        params_hash=bytes(row["params_hash"]),
        params=msgspec.json.decode(row["params"]),
        status=row["status"],
        response=bytes(row["response"]),
        request_id=row["request_id"],
    )


def transaction_event(row: Any) -> RecordedEvent:
    """An event of a ledger entry, from the read statement (its union names the version `version`)."""
    return row_to_event(row, "version")


_encode = msgspec.json.encode


def json_array(rows: Sequence[Any]) -> str:
    return _encode(rows).decode()


def transposed(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as `width` column arrays (for unnest)."""
    return [[row[i] for row in rows] for i in range(width)]


def stream_entries(writes: Sequence[Write]) -> list[list[Any]]:
    """One entry per stream of the batch: the first write's expected version, the last one's head,
    snapshot and time (a stream only confirmed keeps its version as its head)."""
    streams: dict[str, list[Any]] = {}
    for write in writes:
        if write.header is None:
            continue
        header = write.header
        entry = streams.setdefault(
            header.stream_id,
            [header.stream_id, header.stream_type, header.account, header.livemode, write.expected_version, write.expected_version, None, None, None],
        )
        if write.links:
            entry[5:] = [
                write.new_version,
                write.links[-1].hash,
                write.snapshot.decode() if write.snapshot is not None else None,
                to_timestamp(write.recorded_at_us),
            ]
    return list(streams.values())


def write_arguments(writes: Sequence[Write]) -> list[Any]:
    """The write statement's parameters for a batch (postgres.sql, `write`)."""
    streams = stream_entries(writes)
    events: list[tuple[Any, ...]] = []
    created: dict[str, dict[str, dict[str, Any]]] = {"customers": {}, "transactions": {}}
    changed: dict[str, dict[str, dict[str, Any]]] = {"customers": {}, "transactions": {}}
    feed: list[dict[str, Any]] = []
    records: list[tuple[Any, ...]] = []
    released: list[tuple[Any, ...]] = []
    claimed: list[tuple[Any, ...]] = []
    for write in writes:
        stream_id = write.header.stream_id if write.header is not None else ""
        metadata = _encode(write.metadata).decode()
        recorded_at = to_timestamp(write.recorded_at_us)
        for link in write.links:
            event = link.event
            events.append(
                (stream_id, link.version, event.event_id, event.event_type, event.schema_version,
                 event.data_json.decode(), metadata, recorded_at, link.hash, link.canonical)
            )
        # A row created and changed again in the batch is inserted once, as the batch left it.
        if write.customer is not None:
            new = write.customer_created or stream_id in created["customers"]
            (created if new else changed)["customers"][stream_id] = write.customer
        for row, is_new in write.transactions:
            new = is_new or row["id"] in created["transactions"]
            (created if new else changed)["transactions"][row["id"]] = row
        feed.extend(write.feed)
        if (record := write.record) is not None:
            records.append(
                (record.account, record.livemode, record.key, record.method, record.path, record.params_hash,
                 _encode(record.params).decode(), record.status, record.response, record.request_id)
            )
        if write.release is not None:
            released.append((*write.release, stream_id))
        if write.claim is not None:
            claimed.append((*write.claim, stream_id))
    wanted = sum(1 for entry in streams if entry[4] > 0 or entry[5] > 0)
    return [
        *transposed([tuple(entry) for entry in streams], 9),
        *transposed(events, 10),
        json_array(list(created["customers"].values())),
        json_array(list(changed["customers"].values())),
        json_array(list(created["transactions"].values())),
        json_array(list(changed["transactions"].values())),
        json_array(feed),
        *transposed(records, 10),
        *transposed(released, 4),
        *transposed(claimed, 4),
        wanted,
    ]


def conflict(writes: Sequence[Write]) -> WrongExpectedVersion:
    """The conflict of a batch, named by its first stream (the statement does not say which moved)."""
    first = next((write for write in writes if write.header is not None), None)
    if first is None or first.header is None:
        return WrongExpectedVersion("", 0)
    return WrongExpectedVersion(first.header.stream_id, first.expected_version)


class PostgresConnection:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def read(self, request: ReadRequest) -> Reads:
        rows = await self.conn.fetch(
            statements()["read"],
            list(request.streams),
            [scope[0] for scope in request.records],
            [scope[1] for scope in request.records],
            [scope[2] for scope in request.records],
            [claim[0] for claim in request.claims],
            [claim[1] for claim in request.claims],
            [claim[2] for claim in request.claims],
            [key[0] for key in request.transactions],
            [key[1] for key in request.transactions],
        )
        reads = Reads(
            heads=dict.fromkeys(request.streams),
            records=dict.fromkeys(request.records),
            claims=dict.fromkeys(request.claims),
            transaction_events={key: [] for key in request.transactions},
        )
        for row in rows:
            kind = row["kind"]
            if kind == "stream":
                reads.heads[row["stream_id"]] = head_of(row)
            elif kind == "idempotency":
                reads.records[(row["account"], row["livemode"], row["key"])] = record_of(row)
            elif kind == "claim":
                reads.claims[(row["account"], row["livemode"], row["key"])] = row["stream_id"]
                reads.heads[row["stream_id"]] = head_of(row)
            elif kind == "clock":
                reads.clock_us = to_microseconds(row["recorded_at"])
            else:
                reads.transaction_events[(row["stream_id"], row["key"])].append(transaction_event(row))
        for events in reads.transaction_events.values():
            events.sort(key=lambda event: event.stream_version)
        return reads

    async def load(self, stream_id: str) -> list[RecordedEvent]:
        return [row_to_event(row) for row in await self.conn.fetch(SQL_LOAD, stream_id)]

    @asynccontextmanager
    async def serialized(self, keys: Sequence[str]) -> AsyncIterator[None]:
        async with self.conn.transaction():
            await self.conn.execute(SQL_LOCK, list(keys))  # one global order: no deadlock between holders
            yield

    async def write(self, writes: Sequence[Write]) -> Appended:
        try:
            row = await self.conn.fetchrow(statements()["write"], *write_arguments(writes))
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name == "events_pkey":  # a stream version taken: the stream moved
                raise conflict(writes) from error
            raise DuplicateKey(str(error)) from error
        except asyncpg.PostgresError as error:
            if error.sqlstate == VERSION_CONFLICT:
                raise conflict(writes) from error
            raise
        positions = {
            (stream_id, version): position
            for stream_id, version, position in zip(row["stream_ids"], row["versions"], row["positions"], strict=True)
        }
        return Appended(positions=positions, tx_id=row["tx_id"])


class PostgresEventStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[PostgresConnection]:
        async with self.pool.acquire() as conn:
            yield PostgresConnection(conn)

    async def load_stream(
        self, stream_id: str, *, up_to_version: int | None = None, up_to_time_us: int | None = None
    ) -> list[RecordedEvent]:
        async with self.pool.acquire() as conn:
            if up_to_version is not None:
                rows = await conn.fetch(SQL_LOAD_TO_VERSION, stream_id, up_to_version)
            elif up_to_time_us is not None:
                rows = await conn.fetch(SQL_LOAD_TO_TIME, stream_id, to_timestamp(up_to_time_us))
            else:
                rows = await conn.fetch(SQL_LOAD, stream_id)
        return [row_to_event(row) for row in rows]

    async def read_all(self, after: GlobalCursor = GlobalCursor(), limit: int = 1000) -> list[RecordedEvent]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(SQL_READ_ALL, after.tx_id, after.position, limit)
        return [row_to_event(row) for row in rows]
