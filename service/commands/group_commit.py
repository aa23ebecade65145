"""Group commit: concurrent commands share their two round trips and one commit.

Each lane runs one batch at a time: every command queued in it while the previous batch ran (up to
MAX_BATCH). A command goes to the lane its stream's other commands are in, else to the least loaded
lane: commands on one stream meet in one lane, in arrival order (a hot customer's commands queue in
memory and are decided one after the other inside a batch, never racing each other to the database);
commands on different streams run in parallel on idle lanes and only share batches when every lane is
busy. A lane with one command queued runs it exactly as the solo runner does.

A batch is `execute_batch`: one read for all its commands, each planned on what its predecessors left,
one write. When that write loses a race (a stream moved, a key was taken by another process), nothing of
the batch was written and no response was sent: every command of it then runs alone, with the solo
runner's retries, so one contended command cannot fail the others.

Commands share a batch only with request ids that differ from every other's in it (a replay tells the
commands of one transaction apart by request id: projections.command_of); commands without a request id
and commands that take or give up an external_id claim (which another lane could race for) run alone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from ledgerd.service.commands.requests import CommandRequest, Outcome
from ledgerd.service.commands.runner import RETRYABLE, StreamQueues, execute_batch, run_alone
from ledgerd.service.observability import Metrics
from ledgerd.service.store.base import EventStore

MAX_BATCH = 32


@dataclass
class Queued:
    request: CommandRequest
    stream_id: str
    future: asyncio.Future[Outcome]

    @property
    def request_id(self) -> str | None:
        return self.request.context.request_id


def groupable(request: CommandRequest) -> str | None:
    """The stream of a command that may share a batch, else None."""
    if request.context.request_id is None or request.claim_key() is not None:
        return None
    return request.stream()


class GroupCommitter:
    def __init__(self, store: EventStore, lanes: int, metrics: Metrics | None = None) -> None:
        if lanes < 1:
            raise ValueError("a group committer needs at least one lane")
        self.store = store
        self.lanes: list[deque[Queued]] = [deque() for _ in range(lanes)]
        self.drains: list[asyncio.Task[None] | None] = [None] * lanes
        self.metrics = metrics
        self.load = [0] * lanes  # commands waiting for, or inside, each lane's batches
        self.streams: dict[str, list[int]] = {}  # stream -> [its lane, its commands in it]
        self.alone = StreamQueues()

    def lane_for(self, stream_id: str) -> int:
        """The lane a stream's commands are already in, else the least loaded one."""
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

    async def run(self, request: CommandRequest) -> Outcome:
        """Run the command in a batch shared with others queued on its lane; return its outcome once
        that batch has committed, or raise what it raised."""
        stream_id = groupable(request)
        if stream_id is None:
            return await self.alone.run(request.stream(), self.store, request)
        lane = self.lane_for(stream_id)
        try:
            future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            self.lanes[lane].append(Queued(request, stream_id, future))
            if self.drains[lane] is None:
                self.drains[lane] = asyncio.create_task(self.drain(lane))
            return await future
        finally:
            self.leave(stream_id, lane)

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
        try:
            async with self.store.connection() as connection:
                results = await execute_batch(connection, [item.request for item in batch])
        except RETRYABLE:  # nothing was written: run each command on its own, with retries
            if self.metrics is not None and len(batch) > 1:
                self.metrics.group_commit_fallbacks.inc()
            for item in batch:
                await self.settle_alone(item)
            return
        except Exception as error:  # e.g. the database is down: every command of the batch failed
            for item in batch:
                settle(item.future, None, error)
            return
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                settle(item.future, None, result)
            else:
                settle(item.future, result, None)

    async def settle_alone(self, item: Queued) -> None:
        if item.future.done():  # its caller went away: its outcome, if any, stays in the log
            return
        try:
            outcome = await run_alone(self.store, item.request)
        except Exception as error:
            settle(item.future, None, error)
        else:
            settle(item.future, outcome, None)


def take_batch(queue: deque[Queued]) -> list[Queued]:
    """Up to MAX_BATCH queued commands with distinct request ids, in arrival order (a stream's commands
    keep their order)."""
    batch: list[Queued] = []
    seen: set[str | None] = set()
    while queue and len(batch) < MAX_BATCH:
        item = queue[0]
        if item.future.done():  # its caller went away before it ran: never run it
            queue.popleft()
            continue
        if item.request_id in seen:
            break
        seen.add(item.request_id)
        batch.append(queue.popleft())
    return batch


def settle(future: asyncio.Future[Outcome], value: Outcome | None, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the command's outcome stays in the log
        return
    if error is not None:
        future.set_exception(error)
    elif value is not None:
        future.set_result(value)
