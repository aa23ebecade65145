"""Group commit: concurrent commands share one transaction, so one COMMIT (one WAL flush) serves many.

Each lane runs one transaction at a time holding every command queued in it when the previous
transaction ended (up to MAX_BATCH). A command goes to the lane its stream's other commands are in,
else to the least loaded lane: commands on one stream meet in one lane, in arrival order (a hot
customer's commands queue in memory instead of each holding a pooled connection while waiting on the
stream's advisory lock in PostgreSQL); commands on different streams run in parallel on idle lanes and
only share transactions when every lane is busy. With one command queued, a lane runs it exactly as
the ungrouped path does.

A shared transaction costs fewer round trips per command, not only fewer commits: it begins with one
statement that takes every lock of the batch (idempotency keys and streams, in one global order, so
batches cannot deadlock each other) and reads their idempotency records and stream heads; each command
then decides on the head its predecessor in the batch left (PostgresSession + BatchState), appends and
updates the customer row (2 statements for AdjustBalance); the new balance transactions, the event
feed rows and the idempotency records of the whole batch are inserted in one statement each before
the COMMIT (projections.Deferred: nothing in the batch reads them back from the tables). A repeated idempotency key inside one batch replays the first's record.

No savepoints: they would cost two round trips per command. A command that fails cleanly (a
rejection or conflict raised before it wrote anything, with no statement error) simply leaves the
transaction to the others. Any other failure (a statement error aborts the whole transaction, or a
failure after a write) rolls the shared transaction back, and every command of the batch is then run
again, each alone in its own transaction: nothing of the batch was committed and no response was
sent, so one failing command cannot fail the others.

A replay must apply the commands one at a time as they were applied live. They share a transaction
id, so `projections.apply_all` tells them apart by request id: commands join a batch only with a
request id that differs from every other's in it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ledgerd.domain.errors import DomainError
from ledgerd.service.handler import Claims, IdempotencyConflict
from ledgerd.service.observability import Metrics
from ledgerd.service.store.base import WrongExpectedVersion
from ledgerd.service.store.postgres import BatchState, PostgresEventStore, PostgresSession

MAX_BATCH = 32

Body = Callable[[PostgresSession], Awaitable[Any]]


@dataclass
class Queued:
    claims: Claims
    request_id: str
    body: Body
    future: asyncio.Future[Any]

    @property
    def stream_id(self) -> str:
        return self.claims.stream_id


def clean_failure(error: BaseException, session: PostgresSession) -> bool:
    """The command failed without touching the shared transaction: it wrote nothing, and the failure
    is one the handler raises itself, never a statement error (which aborts the transaction)."""
    return session.writes == 0 and isinstance(error, DomainError | IdempotencyConflict | WrongExpectedVersion)


class GroupCommitter:
    def __init__(self, store: PostgresEventStore, lanes: int, metrics: Metrics | None = None) -> None:
        if lanes < 1:
            raise ValueError("a group committer needs at least one lane")
        self.store = store
        self.lanes: list[deque[Queued]] = [deque() for _ in range(lanes)]
        self.drains: list[asyncio.Task[None] | None] = [None] * lanes
        self.metrics = metrics
        self.load = [0] * lanes  # commands waiting for, or inside, each lane's transactions
        self.streams: dict[str, list[int]] = {}  # stream -> [its lane, its commands in it]

    def lane_for(self, stream_id: str) -> int:
        """The lane a stream's commands are already in, else the least loaded one: commands on
        different streams spread over idle lanes (and run at once), a stream's commands stay in one
        lane (in order, grouped), and only when every lane is busy do different streams share."""
        entry = self.streams.get(stream_id)
        if entry is None:
            lane = min(range(len(self.load)), key=self.load.__getitem__)
            entry = self.streams[stream_id] = [lane, 0]
        entry[1] += 1
        self.load[entry[0]] += 1
        return entry[0]

    def leave(self, stream_id: str, lane: int) -> None:
        self.load[lane] -= 1
        entry = self.streams[stream_id]
        entry[1] -= 1
        if entry[1] == 0:
            del self.streams[stream_id]

    async def run(self, claims: Claims, request_id: str, body: Body) -> Any:
        """Run `body` in a transaction shared with other commands queued on the same lane; return
        its result once that transaction has committed, or raise what it raised."""
        lane = self.lane_for(claims.stream_id)
        try:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.lanes[lane].append(Queued(claims, request_id, body, future))
            if self.drains[lane] is None:
                self.drains[lane] = asyncio.create_task(self.drain(lane))
            return await future
        finally:
            self.leave(claims.stream_id, lane)

    async def close(self) -> None:
        for task in self.drains:
            if task is not None:
                task.cancel()
        for queue in self.lanes:
            while queue:
                item = queue.popleft()
                if not item.future.done():
                    item.future.set_exception(ConnectionError("the service is shutting down"))

    async def drain(self, lane: int) -> None:
        queue = self.lanes[lane]
        try:
            while queue:
                await self.run_batch(take_batch(queue))
        finally:
            self.drains[lane] = None

    async def run_batch(self, batch: list[Queued]) -> None:
        if not batch:
            return
        if self.metrics is not None:
            self.metrics.group_commit_batch.observe(len(batch))
        if len(batch) == 1:
            await self.run_alone(batch[0])
            return
        try:
            results = await self.run_together(batch)
        except Exception:  # the shared transaction rolled back: run each command on its own
            if self.metrics is not None:
                self.metrics.group_commit_fallbacks.inc()
            for item in batch:
                await self.run_alone(item)
            return
        for item, (value, error) in zip(batch, results, strict=True):
            settle(item.future, value, error)

    async def run_together(self, batch: list[Queued]) -> list[tuple[Any, BaseException | None]]:
        results: list[tuple[Any, BaseException | None]] = []
        state = BatchState()
        claims = [item.claims for item in batch]
        lock_keys = [claim.stream_lock_key for claim in claims]
        lock_keys += [
            claim.idempotency_lock_key for claim in claims if claim.idempotency_lock_key is not None
        ]
        scopes = list(dict.fromkeys(claim.idempotency_scope for claim in claims if claim.idempotency_scope))
        streams = list(dict.fromkeys(claim.stream_id for claim in claims))
        async with self.store.pool.acquire() as conn, conn.transaction():
            await state.begin(conn, lock_keys, scopes, streams)
            for item in batch:
                session = PostgresSession(conn, state)
                try:
                    results.append((await item.body(session), None))
                except Exception as error:
                    if not clean_failure(error, session):
                        raise
                    results.append((None, error))
            await state.finish(conn)
        return results

    async def run_alone(self, item: Queued) -> None:
        try:
            async with self.store.session() as session:
                value = await item.body(session)
        except Exception as error:
            settle(item.future, None, error)
        else:
            settle(item.future, value, None)


def take_batch(queue: deque[Queued]) -> list[Queued]:
    """Up to MAX_BATCH queued commands with distinct request ids, ordered by stream (a stable sort:
    one stream's commands keep their arrival order), so that every batch, in every process, takes
    its stream locks in the same global order."""
    batch: list[Queued] = []
    seen: set[str] = set()
    while queue and len(batch) < MAX_BATCH:
        item = queue[0]
        if item.future.done():  # its caller went away before it ran: never run it
            queue.popleft()
            continue
        if item.request_id in seen:
            break
        seen.add(item.request_id)
        batch.append(queue.popleft())
    batch.sort(key=lambda item: item.stream_id)
    return batch


def settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the command's outcome stays in the log
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
