"""An in-memory event store with the same contract as the PostgreSQL one, for fast tests.

Sessions are serialized by one lock and stage their writes; a session that raises leaves no trace.
It keeps the same external_id index the PostgreSQL customer projection enforces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import msgspec

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

ExternalKey = tuple[str, bool, str]


class MemoryState(msgspec.Struct):
    events: list[RecordedEvent] = []
    streams: dict[str, list[RecordedEvent]] = {}
    headers: dict[str, StreamHeader] = {}
    idempotency: dict[tuple[str, bool, str], IdempotencyRecord] = {}
    external_ids: dict[ExternalKey, str] = {}
    snapshots: dict[str, bytes] = {}
    next_position: int = 1
    next_tx: int = 1


class MemorySession:
    def __init__(self, committed: MemoryState, tx_id: int) -> None:
        self.committed = committed
        self.tx_id = tx_id
        self.new_events: list[RecordedEvent] = []
        self.new_idempotency: dict[tuple[str, bool, str], IdempotencyRecord] = {}
        self.external_ids = dict(committed.external_ids)
        self.new_headers: dict[str, StreamHeader] = {}
        self.new_snapshots: dict[str, bytes] = {}
        self.next_position = committed.next_position

    async def lock(self, key: str) -> None:
        return None  # sessions are already serialized

    async def load(self, stream_id: str) -> list[RecordedEvent]:
        staged = [event for event in self.new_events if event.stream_id == stream_id]
        return [*self.committed.streams.get(stream_id, []), *staged]

    async def lock_and_read_head(self, lock_key: str, stream_id: str) -> StreamHead | None:
        current = await self.load(stream_id)
        if not current:
            return None
        snapshot = self.new_snapshots.get(stream_id, self.committed.snapshots.get(stream_id))
        return StreamHead(version=len(current), head_hash=current[-1].hash, snapshot=snapshot or None)

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
        current = await self.load(header.stream_id)
        if len(current) != expected_version:
            raise WrongExpectedVersion(header.stream_id, expected_version)
        head = current[-1].hash if current else GENESIS_HASH
        metadata_doc = msgspec.to_builtins(metadata)
        recorded = []
        for item, version, digest, _ in chain_links(
            header, expected_version, head, events, metadata, recorded_at_us
        ):
            recorded.append(
                RecordedEvent(
                    position=self.next_position,
                    tx_id=self.tx_id,
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
            )
            self.next_position += 1
        self._index_external_ids(header, recorded)
        self.new_events.extend(recorded)
        self.new_headers.setdefault(header.stream_id, header)
        self.new_snapshots[header.stream_id] = snapshot or b""  # b"": no snapshot for this version
        return recorded

    def _index_external_ids(self, header: StreamHeader, recorded: list[RecordedEvent]) -> None:
        for event in recorded:
            data = event.data
            old = [key for key, owner in self.external_ids.items() if owner == header.stream_id]
            if data["event_type"] == "CustomerDeleted":
                for key in old:
                    del self.external_ids[key]
                continue
            if data["event_type"] == "CustomerCreated":
                external_id = data["profile"].get("external_id")
            elif data["event_type"] == "CustomerUpdated" and "external_id" in data["changes"]:
                external_id = data["changes"]["external_id"]
                for key in old:
                    del self.external_ids[key]
            else:
                continue
            if external_id is not None:
                key = (header.account, header.livemode, external_id)
                if key in self.external_ids:
                    raise DuplicateKey(f"external_id {external_id!r} already in use")
                self.external_ids[key] = header.stream_id

    async def find_idempotency(self, account: str, livemode: bool, key: str) -> IdempotencyRecord | None:
        scope = (account, livemode, key)
        return self.new_idempotency.get(scope) or self.committed.idempotency.get(scope)

    async def lock_and_find_idempotency(
        self,
        lock_key: str,
        account: str,
        livemode: bool,
        key: str,
        *,
        then_stream: tuple[str, str] | None = None,  # sessions are serialized: nothing to prefetch
    ) -> IdempotencyRecord | None:
        return await self.find_idempotency(account, livemode, key)

    async def save_idempotency(self, record: IdempotencyRecord) -> None:
        scope = (record.account, record.livemode, record.key)
        if scope in self.committed.idempotency or scope in self.new_idempotency:
            raise DuplicateKey(f"idempotency key {record.key!r} already recorded")
        self.new_idempotency[scope] = record

    async def find_customer_by_external_id(
        self, account: str, livemode: bool, external_id: str
    ) -> str | None:
        return self.external_ids.get((account, livemode, external_id))

    def commit(self) -> None:
        state = self.committed
        for event in self.new_events:
            state.streams.setdefault(event.stream_id, []).append(event)
            state.events.append(event)
        state.idempotency.update(self.new_idempotency)
        state.snapshots.update(self.new_snapshots)
        for stream_id, header in self.new_headers.items():
            state.headers.setdefault(stream_id, header)
        state.external_ids = self.external_ids
        state.next_position = self.next_position


class MemoryEventStore:
    def __init__(self) -> None:
        self.state = MemoryState()
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[MemorySession]:
        async with self._lock:
            session = MemorySession(self.state, self.state.next_tx)
            self.state.next_tx += 1
            yield session
            session.commit()

    async def load_stream(
        self, stream_id: str, *, up_to_version: int | None = None, up_to_time_us: int | None = None
    ) -> list[RecordedEvent]:
        events = self.state.streams.get(stream_id, [])
        if up_to_version is not None:
            return [event for event in events if event.stream_version <= up_to_version]
        if up_to_time_us is not None:
            return [event for event in events if event.recorded_at_us <= up_to_time_us]
        return list(events)

    async def read_all(self, after: GlobalCursor = GlobalCursor(), limit: int = 1000) -> list[RecordedEvent]:
        ordered = sorted(self.state.events, key=lambda event: (event.tx_id, event.position))
        start = (after.tx_id, after.position)
        return [event for event in ordered if (event.tx_id, event.position) > start][:limit]

    async def iterate_all(self, batch: int = 1000) -> AsyncIterator[RecordedEvent]:
        for event in await self.read_all(GlobalCursor(), len(self.state.events)):
            yield event
