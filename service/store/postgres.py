"""The PostgreSQL event store (asyncpg).

Append = one transaction: the stream's optimistic version check is the first write (so the writing
transaction's id is assigned after everything it read), then all events of the command in one
INSERT ... SELECT FROM unnest, then the inline projections, then (optionally) the idempotency record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec

from ledgerd.projections import Deferred, apply_all
from ledgerd.projections.sql import Rows
from ledgerd.service.store.base import (
    GENESIS_HASH,
    DuplicateKey,
    EventMetadata,
    GlobalCursor,
    IdempotencyRecord,
    PendingEvent,
    RecordedEvent,
    StreamHead,
    StreamHeader,
    WrongExpectedVersion,
    chain_links,
)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

EVENT_COLUMNS = """position, tx_id, stream_id, stream_version, event_id, event_type, schema_version,
    data::text AS data, metadata::text AS metadata, recorded_at, hash"""

SQL_LOAD = f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version"
SQL_LOAD_TO_VERSION = f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version <= $2 ORDER BY stream_version"
SQL_LOAD_TO_TIME = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND recorded_at <= $2 ORDER BY stream_version"
)
# One statement, so the horizon and the rows come from the same snapshot.
SQL_READ_ALL = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE (tx_id, position) > ($1, $2)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
ORDER BY tx_id, position
LIMIT $3
"""
# Appending is one statement: the stream's version check (create, or advance from the expected
# version) is a data-modifying CTE, and the events are inserted only if it took effect; no row back
# means the stream moved (WrongExpectedVersion). The check is still the transaction's first write, so
# its transaction id is assigned after everything it read.
INSERT_EVENTS = """
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data, metadata,
                    recorded_at, hash, canonical)
SELECT $1, u.version, u.event_id, u.event_type, u.schema_version, u.data::jsonb, $7::jsonb, $8, u.hash,
       u.canonical
FROM unnest($2::bigint[], $3::text[], $4::text[], $5::int[], $6::text[], $9::bytea[], $10::bytea[])
     AS u(version, event_id, event_type, schema_version, data, hash, canonical)
WHERE EXISTS (SELECT FROM head)
RETURNING position, tx_id, stream_version
"""
SQL_APPEND_NEW_STREAM = (
    """
WITH head AS (
    INSERT INTO streams (stream_id, stream_type, account, livemode, version, head_hash, snapshot)
    VALUES ($1, $11, $12, $13, $14, $15, $16::jsonb)
    ON CONFLICT (stream_id) DO NOTHING
    RETURNING 1
)"""
    + INSERT_EVENTS
)
SQL_APPEND_TO_STREAM = (
    """
WITH head AS (
    UPDATE streams SET version = $12, head_hash = $13, snapshot = $14::jsonb, updated_at = now()
    WHERE stream_id = $1 AND version = $11
    RETURNING 1
)"""
    + INSERT_EVENTS
)
SQL_LOCK_AND_READ_HEAD = "SELECT version, head_hash, snapshot::text FROM ledger_lock_and_read_stream($1, $2)"
SQL_FIND_IDEMPOTENCY = """
SELECT account, livemode, key, method, path, params_hash, params::text AS params, status, response, request_id
FROM idempotency_keys WHERE account = $1 AND livemode = $2 AND key = $3
"""
SQL_LOCK_AND_FIND_IDEMPOTENCY = """
SELECT account, livemode, key, method, path, params_hash, params::text AS params, status, response, request_id
FROM ledger_lock_and_find_idempotency($1, $2, $3, $4)
"""
SQL_BEGIN_COMMAND = """
SELECT record_found, $2::text AS account, $3::boolean AS livemode, $4::text AS key, method, path,
       params_hash, params, status, response, request_id, stream_locked, version, head_hash, snapshot
FROM ledger_begin_command($1, $2, $3, $4, $5, $6)
"""
SQL_BEGIN_BATCH = """
SELECT kind, account, livemode, key, method, path, params_hash, params, status, response, request_id,
       stream_id, version, head_hash, snapshot
FROM ledger_begin_batch($1, $2, $3, $4, $5)
"""
SQL_SAVE_IDEMPOTENCY_MANY = """
INSERT INTO idempotency_keys (account, livemode, key, method, path, params_hash, params, status, response,
                              request_id)
SELECT * FROM unnest($1::text[], $2::bool[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::jsonb[],
                     $8::int[], $9::bytea[], $10::text[])
"""
SQL_SAVE_IDEMPOTENCY = """
INSERT INTO idempotency_keys (account, livemode, key, method, path, params_hash, params, status, response,
                              request_id)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)
"""
SQL_FIND_EXTERNAL_ID = """
SELECT id FROM customers WHERE account = $1 AND livemode = $2 AND external_id = $3 AND NOT deleted
"""


SQL_ROW = {
    "customers": "SELECT * FROM customers WHERE id = $1",
    "balance_transactions": "SELECT * FROM balance_transactions WHERE id = $1",
}


def to_timestamp(microseconds: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=microseconds)


def to_microseconds(moment: dt.datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def row_to_event(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        position=row["position"],
        tx_id=row["tx_id"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        schema_version=row["schema_version"],
        data=msgspec.json.decode(row["data"]),
        metadata=msgspec.json.decode(row["metadata"]),
        recorded_at_us=to_microseconds(row["recorded_at"]),
        hash=bytes(row["hash"]),
    )


def head_of(row: asyncpg.Record | None) -> StreamHead | None:
    if row is None:
        return None
    snapshot = row["snapshot"]
    return StreamHead(
        version=row["version"],
        head_hash=bytes(row["head_hash"]),
        snapshot=snapshot.encode() if snapshot is not None else None,
    )


def record_of(row: asyncpg.Record | None) -> IdempotencyRecord | None:
    if row is None:
        return None
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


IdempotencyScope = tuple[str, bool, str]  # account, livemode, key


@dataclass
class BatchState:
    """What the commands of one group-commit transaction share: the idempotency records and stream
    heads read (under lock) when it began, updated as each command appends or records, and the
    idempotency records to insert, in one statement, before it commits."""

    records: dict[IdempotencyScope, IdempotencyRecord | None] = field(default_factory=dict)
    heads: dict[str, StreamHead | None] = field(default_factory=dict)
    unsaved: list[IdempotencyRecord] = field(default_factory=list)
    deferred: Deferred = field(default_factory=Deferred)  # projection rows inserted at the end

    async def begin(
        self,
        conn: asyncpg.Connection,
        lock_keys: list[str],
        scopes: list[IdempotencyScope],
        streams: list[str],
    ) -> None:
        """Lock every key (one global order), then read the records and heads: one round trip."""
        rows = await conn.fetch(
            SQL_BEGIN_BATCH,
            lock_keys,
            [scope[0] for scope in scopes],
            [scope[1] for scope in scopes],
            [scope[2] for scope in scopes],
            streams,
        )
        self.records = dict.fromkeys(scopes)
        self.heads = dict.fromkeys(streams)
        for row in rows:
            if row["kind"] == "stream":
                self.heads[row["stream_id"]] = head_of(row)
            else:
                self.records[(row["account"], row["livemode"], row["key"])] = record_of(row)

    async def finish(self, conn: asyncpg.Connection) -> None:
        """The writes the commands of the batch left for the end: new balance transactions, event feed
        rows, idempotency records."""
        await self.deferred.insert(conn)
        await self.save_records(conn)

    async def save_records(self, conn: asyncpg.Connection) -> None:
        if not self.unsaved:
            return
        columns = [
            [getattr(record, name) for record in self.unsaved]
            for name in ("account", "livemode", "key", "method", "path", "params_hash")
        ]
        columns.append([msgspec.json.encode(record.params).decode() for record in self.unsaved])
        columns.extend(
            [getattr(record, name) for record in self.unsaved]
            for name in ("status", "response", "request_id")
        )
        await conn.execute(SQL_SAVE_IDEMPOTENCY_MANY, *columns)
        self.unsaved = []


class PostgresSession:
    def __init__(self, conn: asyncpg.Connection, batch: BatchState | None = None) -> None:
        self.conn = conn
        self.batch = batch  # set when the session is one command of a group-commit transaction
        self.rows: Rows = {}  # what the inline projections wrote for the last append
        self.writes = 0  # writing statements attempted (service/group_commit.py needs to know)
        # Stream heads read under the stream's lock in this transaction (None = no stream yet), kept
        # current by append; shared by every command of a group-commit transaction.
        self.heads: dict[str, StreamHead | None] = batch.heads if batch is not None else {}

    async def lock(self, key: str) -> None:
        # Advisory locks take no transaction id, so the first real write still fixes the xid.
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)

    async def load(self, stream_id: str) -> list[RecordedEvent]:
        return [row_to_event(row) for row in await self.conn.fetch(SQL_LOAD, stream_id)]

    async def lock_and_read_head(self, lock_key: str, stream_id: str) -> StreamHead | None:
        if stream_id not in self.heads:
            self.heads[stream_id] = head_of(
                await self.conn.fetchrow(SQL_LOCK_AND_READ_HEAD, lock_key, stream_id)
            )
        return self.heads[stream_id]

    async def append(
        self,
        header: StreamHeader,
        expected_version: int,
        events: Sequence[PendingEvent],
        metadata: EventMetadata,
        recorded_at_us: int,
        *,
        head_hash: bytes | None = None,
        snapshot: bytes | None = None,
    ) -> list[RecordedEvent]:
        if head_hash is None:
            head_hash = await self._head_hash(header.stream_id, expected_version)
        links = chain_links(header, expected_version, head_hash, events, metadata, recorded_at_us)
        new_version, new_head = links[-1].version, links[-1].hash
        snapshot_json = snapshot.decode() if snapshot is not None else None
        head: tuple[Any, ...]
        if expected_version == 0:
            sql = SQL_APPEND_NEW_STREAM
            head = (header.stream_type, header.account, header.livemode, new_version, new_head, snapshot_json)
        else:
            sql = SQL_APPEND_TO_STREAM
            head = (expected_version, new_version, new_head, snapshot_json)
        self.writes += 1
        rows = await self.conn.fetch(
            sql,
            header.stream_id,
            [link.version for link in links],
            [link.event.event_id for link in links],
            [link.event.event_type for link in links],
            [link.event.schema_version for link in links],
            [link.event.data_json.decode() for link in links],
            msgspec.json.encode(metadata).decode(),
            to_timestamp(recorded_at_us),
            [link.hash for link in links],
            [link.canonical for link in links],
            *head,
        )
        if not rows:
            raise WrongExpectedVersion(header.stream_id, expected_version)
        # The next command on this stream in the transaction (a group commit) starts from here.
        self.heads[header.stream_id] = StreamHead(version=new_version, head_hash=new_head, snapshot=snapshot)
        placed = {row["stream_version"]: (row["position"], row["tx_id"]) for row in rows}
        metadata_doc = msgspec.to_builtins(metadata)
        recorded = [
            RecordedEvent(
                position=placed[version][0],
                tx_id=placed[version][1],
                stream_id=header.stream_id,
                stream_version=version,
                event_id=item.event_id,
                event_type=item.event_type,
                schema_version=item.schema_version,
                data=item.data,
                metadata=metadata_doc,
                recorded_at_us=recorded_at_us,
                hash=digest,
            )
            for item, version, digest, _ in links
        ]
        try:
            self.rows = await apply_all(self.conn, recorded, self.batch.deferred if self.batch else None)
        except asyncpg.UniqueViolationError as error:
            raise DuplicateKey(str(error)) from error
        return recorded

    async def _head_hash(self, stream_id: str, expected_version: int) -> bytes:
        if expected_version == 0:
            return GENESIS_HASH
        head = await self.conn.fetchval(
            "SELECT hash FROM events WHERE stream_id = $1 AND stream_version = $2",
            stream_id,
            expected_version,
        )
        if head is None:
            raise WrongExpectedVersion(stream_id, expected_version)
        return bytes(head)

    async def find_idempotency(self, account: str, livemode: bool, key: str) -> IdempotencyRecord | None:
        return record_of(await self.conn.fetchrow(SQL_FIND_IDEMPOTENCY, account, livemode, key))

    async def lock_and_find_idempotency(
        self,
        lock_key: str,
        account: str,
        livemode: bool,
        key: str,
        *,
        then_stream: tuple[str, str] | None = None,
    ) -> IdempotencyRecord | None:
        if self.batch is not None and (account, livemode, key) in self.batch.records:
            return self.batch.records[(account, livemode, key)]  # locked when the batch began
        if then_stream is None:
            row = await self.conn.fetchrow(SQL_LOCK_AND_FIND_IDEMPOTENCY, lock_key, account, livemode, key)
            return record_of(row)
        row = await self.conn.fetchrow(SQL_BEGIN_COMMAND, lock_key, account, livemode, key, *then_stream)
        if row["stream_locked"]:
            self.heads[then_stream[1]] = head_of(row) if row["version"] is not None else None
        return record_of(row) if row["record_found"] else None

    async def row(self, table: str, key: str) -> Any:
        """A projection row this session just wrote, else the stored one (tables: customers,
        balance_transactions)."""
        cached = self.rows.get((table, key))
        if cached is not None:
            return cached
        return await self.conn.fetchrow(SQL_ROW[table], key)

    async def save_idempotency(self, record: IdempotencyRecord) -> None:
        scope = (record.account, record.livemode, record.key)
        if self.batch is not None and scope in self.batch.records:
            if self.batch.records[scope] is not None:
                raise DuplicateKey(f"idempotency key {record.key!r} recorded twice in one batch")
            self.writes += 1
            self.batch.records[scope] = record  # a later command with this key replays it
            self.batch.unsaved.append(record)
            return
        try:
            await self._insert_idempotency(record)
        except asyncpg.UniqueViolationError as error:
            raise DuplicateKey(str(error)) from error

    async def _insert_idempotency(self, record: IdempotencyRecord) -> None:
        self.writes += 1
        await self.conn.execute(
            SQL_SAVE_IDEMPOTENCY,
            record.account,
            record.livemode,
            record.key,
            record.method,
            record.path,
            record.params_hash,
            msgspec.json.encode(record.params).decode(),
            record.status,
            record.response,
            record.request_id,
        )

    async def find_customer_by_external_id(
        self, account: str, livemode: bool, external_id: str
    ) -> str | None:
        result: str | None = await self.conn.fetchval(SQL_FIND_EXTERNAL_ID, account, livemode, external_id)
        return result


class PostgresEventStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def session(self) -> AsyncIterator[PostgresSession]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield PostgresSession(conn)

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

    async def iterate_all(self, batch: int = 1000) -> AsyncIterator[RecordedEvent]:
        cursor = GlobalCursor()
        while True:
            events = await self.read_all(cursor, batch)
            for event in events:
                yield event
            if len(events) < batch:
                return
            cursor = GlobalCursor(events[-1].tx_id, events[-1].position)
