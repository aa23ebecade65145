"""The one command path, `execute_batch`, and the solo runner.

A batch (one command, or several under group commit) costs two round trips whatever its size: one
`read` of everything its commands decide on, then, after each has been planned on what the previous
ones left (plan.py), one `write` that commits them all. A write that finds a stream moved or a key taken
by a concurrent writer fails whole; the commands are then decided again, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Protocol

import msgspec

from ledgerd.domain.errors import DomainError
from ledgerd.service.commands.errors import ConflictRetriesExhausted, IdempotencyConflict
from ledgerd.service.commands.plan import Overlay, Planned, plan
from ledgerd.service.commands.requests import CommandRequest, Outcome
from ledgerd.service.store.base import (
    DuplicateKey,
    EventStore,
    ReadRequest,
    StoreConnection,
    WrongExpectedVersion,
)

MAX_ATTEMPTS = 8
RETRYABLE = (WrongExpectedVersion, DuplicateKey)

Result = Outcome | DomainError | IdempotencyConflict


class Runner(Protocol):
    async def run(self, request: CommandRequest) -> Outcome:
        """Run the command to completion (committed); raise what it raised."""


def merged(requests: Sequence[CommandRequest]) -> ReadRequest:
    parts = [request.read_request() for request in requests]
    return ReadRequest(
        streams=tuple(dict.fromkeys(s for part in parts for s in part.streams)),
        records=tuple(dict.fromkeys(r for part in parts for r in part.records)),
        claims=tuple(dict.fromkeys(c for part in parts for c in part.claims)),
        transactions=tuple(dict.fromkeys(t for part in parts for t in part.transactions)),
    )


async def execute_batch(connection: StoreConnection, requests: Sequence[CommandRequest]) -> list[Result]:
    """Read, plan each command in order, write: the results in request order. Raises
    WrongExpectedVersion / DuplicateKey when the write lost a race (nothing of the batch was written)."""
    overlay = Overlay(await connection.read(merged(requests)))
    planned: list[Planned | DomainError | IdempotencyConflict] = []
    for request in requests:
        try:
            planned.append(await plan(request, overlay, connection.load))
        except (DomainError, IdempotencyConflict) as error:
            planned.append(error)
    writes = [item.write for item in planned if isinstance(item, Planned) and item.write is not None]
    if writes:
        appended = await connection.write(writes)
        for item in planned:
            if isinstance(item, Planned):
                item.outcome.events = [
                    msgspec.structs.replace(
                        event,
                        position=appended.positions[(event.stream_id, event.stream_version)],
                        tx_id=appended.tx_id or 0,
                    )
                    for event in item.outcome.events
                ]
    return [item.outcome if isinstance(item, Planned) else item for item in planned]


def backoff(attempt: int) -> float:
    return random.uniform(0, 0.002 * (2**attempt))


async def run_alone(store: EventStore, request: CommandRequest) -> Outcome:
    """One command in batches of its own until it commits (or is rejected). The first attempt is
    optimistic (two round trips, no lock); after a lost race the command decides again holding its
    stream's lock, which optimistic writers respect (their write fails while it is held), so a
    contended stream serializes its writers, in the order they queue for the lock, instead of
    starving the unlucky ones."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            async with store.connection() as connection:
                if attempt == 0:
                    [result] = await execute_batch(connection, [request])
                else:
                    async with connection.serialized(request.lock_keys()):
                        [result] = await execute_batch(connection, [request])
        except RETRYABLE:
            await asyncio.sleep(backoff(attempt))
            continue
        if isinstance(result, Exception):
            raise result
        return result
    raise ConflictRetriesExhausted(f"gave up after {MAX_ATTEMPTS} conflicting attempts")


class StreamQueues:
    """Commands on one stream wait for each other in memory, in arrival order, instead of racing to the
    database and retrying (a hot customer); commands on different streams run at once."""

    def __init__(self) -> None:
        self.locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def run(self, stream_id: str | None, store: EventStore, request: CommandRequest) -> Outcome:
        if stream_id is None:
            return await run_alone(store, request)
        lock, users = self.locks.get(stream_id) or (asyncio.Lock(), 0)
        self.locks[stream_id] = (lock, users + 1)
        try:
            async with lock:
                return await run_alone(store, request)
        finally:
            lock, users = self.locks[stream_id]
            if users == 1:
                del self.locks[stream_id]
            else:
                self.locks[stream_id] = (lock, users - 1)


class SoloRunner:
    """Every command in a batch of its own: two round trips, one commit each."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.queues = StreamQueues()

    async def run(self, request: CommandRequest) -> Outcome:
        return await self.queues.run(request.stream(), self.store, request)
