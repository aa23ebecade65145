"""Appending raw events through the real write statement, in a transaction a test holds open: for
tests about the log itself (gap safety, rebuild under a slow writer), which need no projection rows."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from ledgerd.service.store.base import (
    GENESIS_HASH,
    EventMetadata,
    PendingEvent,
    RecordedEvent,
    StreamHeader,
    Write,
    chain_links,
)
from ledgerd.service.store.postgres import PostgresConnection


async def append(
    conn: asyncpg.Connection,
    header: StreamHeader,
    expected_version: int,
    events: Sequence[PendingEvent],
    metadata: EventMetadata,
    recorded_at_us: int,
) -> list[RecordedEvent]:
    head = GENESIS_HASH
    if expected_version:
        head = bytes(await conn.fetchval("SELECT head_hash FROM streams WHERE stream_id = $1", header.stream_id))
    links = chain_links(header, expected_version, head, events, metadata, recorded_at_us)
    write = Write(header, expected_version, metadata, recorded_at_us, links=links)
    appended = await PostgresConnection(conn).write([write])
    document = msgspec.to_builtins(metadata)
    return [
        RecordedEvent(
            position=appended.positions[(header.stream_id, link.version)],
            tx_id=appended.tx_id or 0,
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
