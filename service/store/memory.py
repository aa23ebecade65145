"""An in-memory event store with the same contract as the PostgreSQL one, for fast tests.

`write` checks every stream version, idempotency key and external_id claim of the batch before it
changes anything, so a batch is written whole or not at all, as the PostgreSQL statement is. It keeps
the projection rows the commands wrote, keyed like the tables.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ledgerd.domain.log import RecordedEvent
from ledgerd.service.store.base import (
    Appended,
    ClaimKey,
    DuplicateKey,
    GlobalCursor,
    IdempotencyRecord,
    IdempotencyScope,
    ReadRequest,
    Reads,
    StreamHead,
    Write,
    WrongExpectedVersion,
)


@dataclass
class MemoryState:
    events: list[RecordedEvent] = field(default_factory=list)
    streams: dict[str, list[RecordedEvent]] = field(default_factory=dict)
    snapshots: dict[str, bytes | None] = field(default_factory=dict)
    idempotency: dict[IdempotencyScope, IdempotencyRecord] = field(default_factory=dict)
    claims: dict[ClaimKey, str] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    balance_transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    stripe_events: list[dict[str, Any]] = field(default_factory=list)
    next_position: int = 1
    next_tx: int = 1


class MemoryConnection:
    def __init__(self, state: MemoryState, locks: dict[str, asyncio.Lock]) -> None:
        self.state = state
        self.locks = locks

    def head(self, stream_id: str) -> StreamHead | None:
        events = self.state.streams.get(stream_id)
        if not events:
            return None
        return StreamHead(
            version=len(events),
            head_hash=events[-1].hash,
            snapshot=self.state.snapshots.get(stream_id),
            recorded_at_us=events[-1].recorded_at_us,
        )

    async def read(self, request: ReadRequest) -> Reads:
        state = self.state
        reads = Reads(
            heads={stream: self.head(stream) for stream in request.streams},
            records={scope: state.idempotency.get(scope) for scope in request.records},
            claims={claim: state.claims.get(claim) for claim in request.claims},
        )
        for holder in reads.claims.values():
            if holder is not None:
                reads.heads[holder] = self.head(holder)
        for stream_id, transaction_id in request.transactions:
            reads.transaction_events[(stream_id, transaction_id)] = [
                event
                for event in state.streams.get(stream_id, [])
                if event.data.get("transaction_id") == transaction_id
            ]
        return reads

    async def load(self, stream_id: str) -> list[RecordedEvent]:
        return list(self.state.streams.get(stream_id, []))

    @asynccontextmanager
    async def serialized(self, keys: Sequence[str]) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as held:
            for key in sorted(set(keys)):
                await held.enter_async_context(self.locks.setdefault(key, asyncio.Lock()))
            yield

    async def write(self, writes: Sequence[Write]) -> Appended:
        state = self.state
        versions: dict[str, int] = {}
        claims = dict(state.claims)
        records: set[IdempotencyScope] = set()
        for write in writes:  # check everything first: all or nothing
            if write.header is not None:
                stream_id = write.header.stream_id
                current = versions.get(stream_id, len(state.streams.get(stream_id, [])))
                if current != write.expected_version:
                    raise WrongExpectedVersion(stream_id, write.expected_version)
                versions[stream_id] = write.new_version
            if write.record is not None:
                scope = (write.record.account, write.record.livemode, write.record.key)
                if scope in state.idempotency or scope in records:
                    raise DuplicateKey(f"idempotency key {write.record.key!r} already recorded")
                records.add(scope)
            holder = write.header.stream_id if write.header is not None else ""
            if write.release is not None and claims.get(write.release) == holder:
                del claims[write.release]
            if write.claim is not None:
                if write.claim in claims:
                    raise DuplicateKey(f"external_id {write.claim[2]!r} already claimed")
                claims[write.claim] = holder
        tx_id = state.next_tx
        state.next_tx += 1
        positions: dict[tuple[str, int], int] = {}
        for write in writes:
            if write.header is not None and write.links:
                stream = state.streams.setdefault(write.header.stream_id, [])
                metadata = msgspec.to_builtins(write.metadata)
                for link in write.links:
                    event = RecordedEvent(
                        position=state.next_position,
                        tx_id=tx_id,
                        stream_id=write.header.stream_id,
                        stream_version=link.version,
                        event_id=link.event.event_id,
                        event_type=link.event.event_type,
                        schema_version=link.event.schema_version,
                        data=link.event.data,
                        metadata=metadata,
                        recorded_at_us=write.recorded_at_us,
                        hash=link.hash,
                    )
                    positions[(event.stream_id, event.stream_version)] = event.position
                    state.next_position += 1
                    stream.append(event)
                    state.events.append(event)
                state.snapshots[write.header.stream_id] = write.snapshot
            if write.record is not None:
                record = write.record
                state.idempotency[(record.account, record.livemode, record.key)] = record
            self.project(write, positions)
        state.claims = claims
        return Appended(positions=positions, tx_id=tx_id if positions else None)

    def project(self, write: Write, positions: dict[tuple[str, int], int]) -> None:
        state = self.state
        if write.customer is not None:
            row = dict(write.customer)
            previous = state.customers.get(row["id"])
            row["position"] = positions.get((row["id"], 1)) if previous is None else previous["position"]
            state.customers[row["id"]] = row
        for transaction, _ in write.transactions:
            row = dict(transaction)
            previous = state.balance_transactions.get(row["id"])
            if previous is None:
                row["position"] = positions.get((row["customer_id"], row["version"]))
            else:
                row = {**previous, "description": row["description"], "metadata": row["metadata"]}
            state.balance_transactions[row["id"]] = row
        for feed_row in write.feed:
            row = {key: value for key, value in feed_row.items() if key != "stream_version"}
            row["position"] = positions.get((feed_row["customer_id"], feed_row["stream_version"]))
            state.stripe_events.append(row)


class MemoryEventStore:
    def __init__(self) -> None:
        self.state = MemoryState()
        self.locks: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[MemoryConnection]:
        yield MemoryConnection(self.state, self.locks)

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
