"""Appending raw events through a store's real write, optionally in a transaction a test holds open:
for tests about the log itself (gap safety, the store contract, rebuild under a slow writer), which
need no projection rows."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from ledgerd.domain.log import (
    GENESIS_HASH,
    EventMetadata,
    PendingEvent,
    RecordedEvent,
    StreamHeader,
    chain_links,
)
from ledgerd.service.store.base import (
    Appended,
    ClaimKey,
    IdempotencyRecord,
    ReadRequest,
    StoreConnection,
    Write,
)
from ledgerd.service.store.postgres import PostgresConnection


async def raw_write(
    connection: StoreConnection,
    header: StreamHeader,
    expected_version: int,
    events: Sequence[PendingEvent],
    metadata: EventMetadata,
    recorded_at_us: int,
    *,
    record: IdempotencyRecord | None = None,
    claim: ClaimKey | None = None,
    release: ClaimKey | None = None,
) -> tuple[Write, list[RecordedEvent]]:
    """A Write of these events after the stream's current head, and the events as it will record them."""
    head = (await connection.read(ReadRequest(streams=(header.stream_id,)))).heads[header.stream_id]
    previous = head.head_hash if head is not None else GENESIS_HASH
    links = chain_links(header, expected_version, previous, events, metadata, recorded_at_us)
    write = Write(
        header, expected_version, metadata, recorded_at_us, links=links, record=record, claim=claim, release=release
    )
    document = msgspec.to_builtins(metadata)
    recorded = [
        RecordedEvent(
            position=0,
            tx_id=0,
            stream_id=header.stream_id,
            stream_version=link.version,
            event_id=link.event.event_id,
            event_type=link.event.event_type,
            schema_version=link.event.schema_version,
            data=link.event.data,
            metadata=document,
            recorded_at_us=recorded_at_us,
            hash=link.hash,
        )
        for link in links
    ]
    return write, recorded


def placed(recorded: list[RecordedEvent], appended: Appended) -> list[RecordedEvent]:
    return [
        msgspec.structs.replace(
            event, position=appended.positions[(event.stream_id, event.stream_version)], tx_id=appended.tx_id or 0
        )
        for event in recorded
    ]


async def append_to(
    connection: StoreConnection,
    header: StreamHeader,
    expected_version: int,
    events: Sequence[PendingEvent],
    metadata: EventMetadata,
    recorded_at_us: int,
    **extras: object,
) -> list[RecordedEvent]:
    write, recorded = await raw_write(
        connection, header, expected_version, events, metadata, recorded_at_us, **extras  # type: ignore[arg-type]
    )
    return placed(recorded, await connection.write([write]))


async def append(
    conn: asyncpg.Connection,
    header: StreamHeader,
    expected_version: int,
    events: Sequence[PendingEvent],
    metadata: EventMetadata,
    recorded_at_us: int,
) -> list[RecordedEvent]:
    """On a raw asyncpg connection (which may be inside a transaction the test holds open)."""
    return await append_to(PostgresConnection(conn), header, expected_version, events, metadata, recorded_at_us)


async def wait_for_horizon(pool: Any, timeout_s: float = 60.0) -> None:
    """Wait until every committed event is below the gap-safe horizon (the oldest transaction still
    running anywhere on the cluster). Exports and digests stop at that horizon by design; on a server
    shared with other test processes an unrelated open transaction can hold it back for a while."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        below = await pool.fetchval(
            "SELECT coalesce(max(tx_id), 0) < pg_snapshot_xmin(pg_current_snapshot())::text::bigint FROM events"
        )
        if below:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the gap-safe horizon did not pass the last event in time")
        await asyncio.sleep(0.05)
