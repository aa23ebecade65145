"""One clock per stream, with process clocks that disagree (issue 17).

Commands run through the real handler on PostgreSQL, each dated by a "process" whose clock jumps hours
backwards and forwards. Whatever the clocks say:

* a stream's `recorded_at` strictly increases with its version;
* `created` of every Stripe object (customer, balance transaction, event feed entry) is the recording
  second of the event that made it;
* an `as_of` answer for a second that had ended by the stream's last event never changes after later
  writes (customer and ledger alike);

and with the store's clock (what the API uses), an event is recorded at the database's time, not at the
skewed process's.
"""

from __future__ import annotations

import itertools
import secrets
import time
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerd.domain.customer import (
    AdjustBalance,
    AnyCommand,
    CreateCustomer,
    ProfilePatch,
    UpdateBalanceTransaction,
    UpdateCustomer,
)
from ledgerd.domain.errors import DomainError
from ledgerd.domain.values import Profile
from ledgerd.service.commands.handle import execute
from ledgerd.service.commands.requests import RequestContext
from ledgerd.service.pointintime import balance_transactions_as_of, customer_as_of
from ledgerd.service.store.postgres import PostgresEventStore, to_microseconds
from tests.integration.test_audit import ACCOUNT, T0

EXAMPLES = itertools.count()
HOUR_US = 3_600_000_000
SKEWS = st.sampled_from(
    [0, 0, -1, 1, -999_999, -1_000_000, 1_000_000, -2 * HOUR_US, 2 * HOUR_US, -30 * HOUR_US]
)
SCRIPT = st.lists(
    st.tuples(
        st.sampled_from(["create", "adjust", "adjust", "rename", "describe", "set_balance"]),
        st.integers(0, 1),  # customer slot
        st.integers(-500, 500),
        st.sampled_from([0, 1, 400_000, 1_000_000]),  # how far true time moves between commands
        SKEWS,  # the clock error of the process that runs the command
    ),
    min_size=2,
    max_size=14,
)


def command_for(
    kind: str, cid: str, index: int, amount: int, at: int, known: list[str], txns: list[str]
) -> AnyCommand:
    if cid not in known or kind == "create":
        return CreateCustomer(
            customer_id=cid,
            occurred_at=at,
            account=ACCOUNT,
            livemode=False,
            profile=Profile(name="Ada", invoice_prefix=secrets.token_hex(4).upper()),
            balance=amount,
            currency="usd",
            initial_transaction_id=f"cbtxn_{cid}_{index}",
        )
    if kind == "adjust":
        return AdjustBalance(
            customer_id=cid,
            occurred_at=at,
            transaction_id=f"cbtxn_{cid}_{index}",
            amount=amount,
            currency="usd",
        )
    if kind == "set_balance":
        return UpdateCustomer(
            customer_id=cid, occurred_at=at, balance=amount, adjustment_transaction_id=f"cbtxn_{cid}_{index}"
        )
    if kind == "describe" and txns:
        return UpdateBalanceTransaction(
            customer_id=cid, occurred_at=at, transaction_id=txns[amount % len(txns)], description=f"d{amount}"
        )
    return UpdateCustomer(customer_id=cid, occurred_at=at, patch=ProfilePatch(name=f"N{amount}"))


async def answers_then(conn: asyncpg.Connection, cid: str, second: int) -> Any:
    return (
        await customer_as_of(conn, ACCOUNT, False, cid, second),
        await balance_transactions_as_of(conn, ACCOUNT, False, cid, second),
    )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=SCRIPT)
async def test_skewed_process_clocks_still_write_one_timeline_per_stream(
    pool: asyncpg.Pool, script: list[tuple[str, int, int, int, int]]
) -> None:
    store = PostgresEventStore(pool)
    prefix = f"clk{next(EXAMPLES)}{secrets.token_hex(2)}"
    true_time = T0
    known: list[str] = []
    txns: dict[str, list[str]] = {}
    answered: dict[tuple[str, int], Any] = {}
    for index, (kind, slot, amount, step, skew) in enumerate(script):
        true_time += step
        at = true_time + skew  # this process's idea of now
        cid = f"cus_{prefix}_{slot}"
        command = command_for(kind, cid, index, amount, at, known, txns.get(cid, []))
        context = RequestContext(
            account=ACCOUNT, livemode=False, occurred_at_us=at, request_id=f"req_{prefix}{index}"
        )
        try:
            outcome = await execute(store, command, context)
        except DomainError:
            continue
        if cid not in known:
            known.append(cid)
        for event in outcome.events:
            if event.event_type == "BalanceAdjusted":
                txns.setdefault(cid, []).append(event.data["transaction_id"])
        async with pool.acquire() as conn:
            for customer in known:  # the last second that had ended by the stream's last event
                head = await conn.fetchval("SELECT recorded_at FROM streams WHERE stream_id = $1", customer)
                second = (to_microseconds(head) - 999_999) // 1_000_000
                answered.setdefault((customer, second), await answers_then(conn, customer, second))

    assert known, "every script starts by creating a customer"
    assert answered
    async with pool.acquire() as conn:
        for cid in known:
            events = await conn.fetch(
                "SELECT event_id, recorded_at, metadata ->> 'request_id' AS command FROM events "
                "WHERE stream_id = $1 ORDER BY stream_version",
                cid,
            )
            times = [to_microseconds(row["recorded_at"]) for row in events]
            # the events of one command share its time; each later command is strictly later
            per_command = [times[i] for i in range(len(events)) if i == 0 or events[i]["command"] != events[i - 1]["command"]]
            assert len(per_command) == len({row["command"] for row in events}), events
            assert per_command == sorted(set(per_command)), (cid, times)
            assert times == sorted(times)
            seconds = {row["event_id"]: to_microseconds(row["recorded_at"]) // 1_000_000 for row in events}
            customer = await conn.fetchrow("SELECT created FROM customers WHERE id = $1", cid)
            assert customer["created"] == times[0] // 1_000_000
            for row in await conn.fetch(
                "SELECT b.created, e.recorded_at FROM balance_transactions b JOIN events e "
                "ON e.stream_id = b.customer_id AND e.event_type = 'BalanceAdjusted' "
                "AND e.data ->> 'transaction_id' = b.id WHERE b.customer_id = $1",
                cid,
            ):
                assert row["created"] == to_microseconds(row["recorded_at"]) // 1_000_000
            feed = [
                row["created"]
                for row in await conn.fetch(
                    "SELECT created FROM stripe_events WHERE customer_id = $1 ORDER BY position, seq", cid
                )
            ]
            assert feed and set(feed) <= set(seconds.values()) and feed == sorted(feed)
        for (cid, second), then in answered.items():
            assert await answers_then(conn, cid, second) == then, (cid, second)


async def test_the_api_records_at_the_database_clock_not_the_process_clock(pool: asyncpg.Pool) -> None:
    """With store_clock (what the HTTP layer sets), a process two hours behind or ahead still records at
    the database's time, so streams written by several machines share one timeline."""
    store = PostgresEventStore(pool)
    cid = f"cus_dbclock{secrets.token_hex(3)}"
    now = time.time_ns() // 1000
    for index, skew in enumerate([-2 * HOUR_US, 2 * HOUR_US, -2 * HOUR_US]):
        command: AnyCommand
        if index == 0:
            command = CreateCustomer(
                customer_id=cid,
                occurred_at=now + skew,
                account=ACCOUNT,
                livemode=False,
                profile=Profile(name="Ada", invoice_prefix=secrets.token_hex(4).upper()),
            )
        else:
            command = AdjustBalance(
                customer_id=cid,
                occurred_at=now + skew,
                transaction_id=f"cbtxn_{cid}{index}",
                amount=5,
                currency="usd",
            )
        before = to_microseconds(await pool.fetchval("SELECT clock_timestamp()"))
        context = RequestContext(
            ACCOUNT, False, occurred_at_us=now + skew, request_id=f"req_c{index}", store_clock=True
        )
        outcome = await execute(store, command, context)
        after = to_microseconds(await pool.fetchval("SELECT clock_timestamp()"))
        [recorded] = outcome.events
        assert before <= recorded.recorded_at_us <= after, (skew, before, recorded.recorded_at_us, after)
    created = await pool.fetchval("SELECT created FROM customers WHERE id = $1", cid)
    assert abs(created - now // 1_000_000) <= 5
    assert {
        row["created"]
        for row in await pool.fetch("SELECT created FROM balance_transactions WHERE customer_id = $1", cid)
    } <= {
        created,
        created + 1,
        created + 2,
    }
