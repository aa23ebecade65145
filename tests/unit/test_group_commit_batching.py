"""How a group-commit lane forms its next batch (service/commands/group_commit.take_batch): at most
MAX_BATCH commands, never two with one request id (a replay tells grouped commands apart by request
id), none whose caller went away, in arrival order; and which commands may be grouped at all."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

from ledgerd.domain.customer import AdjustBalance, ProfilePatch, UpdateCustomer
from ledgerd.service.commands.group_commit import MAX_BATCH, GroupCommitter, Queued, groupable, take_batch
from ledgerd.service.commands.requests import CommandRequest, RequestContext
from ledgerd.service.store.postgres import PostgresEventStore


def request(stream: str, request_id: str | None) -> CommandRequest:
    command = AdjustBalance(customer_id=stream, occurred_at=1, transaction_id="cbtxn_1", amount=1, currency="usd")
    return CommandRequest(command, RequestContext("acct_1", False, 1, request_id))


def queued(stream: str, request_id: str) -> Queued:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    return Queued(request(stream, request_id), stream, future)


async def test_a_batch_keeps_arrival_order() -> None:
    queue = deque(
        [queued("cus_b", "r1"), queued("cus_a", "r2"), queued("cus_b", "r3"), queued("cus_a", "r4")]
    )
    batch = take_batch(queue)
    assert [(item.stream_id, item.request_id) for item in batch] == [
        ("cus_b", "r1"),
        ("cus_a", "r2"),
        ("cus_b", "r3"),
        ("cus_a", "r4"),
    ]
    assert not queue


def test_only_commands_with_a_request_id_and_no_external_id_claim_are_grouped() -> None:
    assert groupable(request("cus_a", "r1")) == "cus_a"
    assert groupable(request("cus_a", None)) is None
    claim = UpdateCustomer(customer_id="cus_a", occurred_at=1, patch=ProfilePatch(external_id="ext-1"))
    assert groupable(CommandRequest(claim, RequestContext("acct_1", False, 1, "r1"))) is None


async def test_a_repeated_request_id_ends_the_batch() -> None:
    queue = deque(
        [queued("cus_a", "r1"), queued("cus_b", "r2"), queued("cus_c", "r1"), queued("cus_d", "r3")]
    )
    batch = take_batch(queue)
    assert [item.request_id for item in batch] == ["r1", "r2"]
    assert [item.request_id for item in queue] == ["r1", "r3"]  # they form the next batch


async def test_at_most_max_batch_commands_and_cancelled_callers_are_dropped() -> None:
    items = [queued(f"cus_{n}", f"r{n}") for n in range(MAX_BATCH + 5)]
    items[0].future.cancel()
    queue = deque(items)
    batch = take_batch(queue)
    assert len(batch) == MAX_BATCH
    assert items[0] not in batch
    assert len(queue) == 4


def test_streams_spread_over_idle_lanes_and_a_streams_commands_share_one() -> None:
    committer = GroupCommitter(cast(PostgresEventStore, None), lanes=3)
    a1, b1, c1 = committer.lane_for("cus_a"), committer.lane_for("cus_b"), committer.lane_for("cus_c")
    assert sorted((a1, b1, c1)) == [0, 1, 2]  # three streams, three idle lanes
    assert committer.lane_for("cus_a") == a1  # while cus_a has commands in a lane, it stays there
    assert committer.load[a1] == 2
    committer.leave("cus_b", b1)
    assert committer.lane_for("cus_d") == b1  # the least loaded lane
    committer.leave("cus_a", a1)
    committer.leave("cus_a", a1)
    assert "cus_a" not in committer.streams and committer.load[a1] == 0
