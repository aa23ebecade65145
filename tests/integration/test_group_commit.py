"""Group commit (service/commands/group_commit.py) on real PostgreSQL: concurrent commands share their
round trips and one transaction, every acknowledged command is committed exactly once, a rejected or
contended command cannot fail the others, and a replay of a grouped history rebuilds the projections
byte for byte."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import pytest
import pytest_asyncio

from ledgerd.domain.customer import AdjustBalance, CreateCustomer, UpdateBalanceTransaction
from ledgerd.domain.errors import DomainError, InvalidParameter
from ledgerd.domain.values import Profile
from ledgerd.projections.sql import Rows
from ledgerd.service.audit import check_drift
from ledgerd.service.commands.group_commit import GroupCommitter
from ledgerd.service.commands.handle import execute
from ledgerd.service.commands.idempotency import IdempotencyRequest
from ledgerd.service.commands.requests import Outcome, RequestContext
from ledgerd.service.store.postgres import PostgresConnection, PostgresEventStore

ACCOUNT = "acct_group"
T0 = 1_700_000_000_000_000


def context(n: int) -> RequestContext:
    return RequestContext(account=ACCOUNT, livemode=False, occurred_at_us=T0 + n, request_id=f"req_g{n:06d}")


@pytest_asyncio.fixture(loop_scope="session")
async def big_pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_url, min_size=2, max_size=20)
    try:
        yield pool
    finally:
        await pool.close()


def render(rows: Rows) -> dict[str, int]:
    [row] = (row for (table, _), row in rows.items() if table == "customers")
    return {"balance": row["balance"], "version": row["version"]}


async def create(store: PostgresEventStore, customer_id: str, n: int = 0) -> None:
    command = CreateCustomer(
        customer_id=customer_id,
        occurred_at=T0,
        account=ACCOUNT,
        livemode=False,
        profile=Profile(invoice_prefix="GRP"),
        currency="usd",
    )
    await execute(store, command, context(n))


def adjust(customer_id: str, n: int, amount: int = 100) -> AdjustBalance:
    return AdjustBalance(
        customer_id=customer_id,
        occurred_at=T0 + n,
        transaction_id=f"cbtxn_g{n:06d}",
        amount=amount,
        currency="usd",
    )


async def test_hot_customer_commands_share_transactions_and_none_is_lost(big_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(big_pool)
    committer = GroupCommitter(store, lanes=4)
    await create(store, "cus_hot")
    outcomes = await asyncio.gather(
        *(
            execute(store, adjust("cus_hot", n), context(n), render=render, runner=committer)
            for n in range(1, 201)
        )
    )
    assert all(outcome.status == 200 for outcome in outcomes)
    # Each response is the customer as its own command left it: 200 distinct balances 100..20000.
    balances = sorted(msgspec.json.decode(outcome.response)["balance"] for outcome in outcomes)
    assert balances == [100 * n for n in range(1, 201)]
    assert await big_pool.fetchval("SELECT balance FROM customers WHERE id = 'cus_hot'") == 20_000
    assert (
        await big_pool.fetchval("SELECT sum(amount) FROM balance_transactions WHERE customer_id = 'cus_hot'")
        == 20_000
    )
    events, transactions = await big_pool.fetchrow(
        "SELECT count(*), count(DISTINCT tx_id) FROM events WHERE stream_id = 'cus_hot' AND stream_version > 1"
    )
    assert events == 200
    assert transactions < events  # commands really were grouped
    # The replay applies the grouped commands one by one, as the live path did: identical projections.
    assert (await check_drift(big_pool)).problems == []
    await committer.close()


async def test_idempotency_key_repeated_inside_one_batch_replays(big_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(big_pool)
    committer = GroupCommitter(store, lanes=1)
    await create(store, "cus_idem")
    key = IdempotencyRequest("key-g", "POST", "/v1/customers/cus_idem/balance_transactions", {"amount": 100})
    outcomes = await asyncio.gather(
        *(
            execute(
                store,
                adjust("cus_idem", 1),
                context(n),
                idempotency=key,
                render=render,
                runner=committer,
            )
            for n in range(1, 9)
        )
    )
    assert sum(not outcome.replayed for outcome in outcomes) == 1
    assert {outcome.response for outcome in outcomes} == {outcomes[0].response}
    assert await big_pool.fetchval("SELECT balance FROM customers WHERE id = 'cus_idem'") == 100
    await committer.close()


async def test_a_rejected_command_leaves_the_batch_to_the_others(big_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(big_pool)
    committer = GroupCommitter(store, lanes=1)
    await create(store, "cus_rej")
    commands = [adjust("cus_rej", n) for n in range(1, 6)]
    commands[2] = UpdateBalanceTransaction(  # no such entry: rejected by decide, before any write
        customer_id="cus_rej", occurred_at=T0, transaction_id="cbtxn_missing", description="x"
    )
    results = await asyncio.gather(
        *(execute(store, command, context(n), runner=committer) for n, command in enumerate(commands, 1)),
        return_exceptions=True,
    )
    assert isinstance(results[2], DomainError)
    assert all(isinstance(result, Outcome) for i, result in enumerate(results) if i != 2)
    assert await big_pool.fetchval("SELECT balance FROM customers WHERE id = 'cus_rej'") == 400
    # The four accepted commands committed together, in one transaction.
    assert (
        await big_pool.fetchval(
            "SELECT count(DISTINCT tx_id) FROM events WHERE stream_id = 'cus_rej' AND stream_version > 1"
        )
        == 1
    )
    await committer.close()


class RacedStore(PostgresEventStore):
    """Another process appends to the stream between a batch's read and its write, once."""

    def __init__(self, pool: asyncpg.Pool, stream_id: str) -> None:
        super().__init__(pool)
        self.stream_id = stream_id
        self.raced = False

    def connection(self):  # type: ignore[no-untyped-def]
        outer = self

        class Raced(PostgresConnection):
            async def write(self, writes):  # type: ignore[no-untyped-def]
                if not outer.raced:
                    outer.raced = True
                    await execute(PostgresEventStore(outer.pool), adjust(outer.stream_id, 999, amount=1000), context(999))
                return await super().write(writes)

        base = super().connection()

        class Context:
            async def __aenter__(self) -> PostgresConnection:
                connection = await base.__aenter__()
                return Raced(connection.conn)

            async def __aexit__(self, *exc: object) -> None:
                await base.__aexit__(*exc)

        return Context()


async def test_a_batch_that_loses_a_race_reruns_each_command_alone(big_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(big_pool)
    await create(store, "cus_race")
    raced = RacedStore(big_pool, "cus_race")
    committer = GroupCommitter(raced, lanes=1)
    outcomes = await asyncio.gather(
        *(execute(raced, adjust("cus_race", n), context(n), render=render, runner=committer) for n in range(1, 6))
    )
    assert raced.raced
    # Nothing of the lost batch was written; each command then committed exactly once, on top of the
    # concurrent append (balance 1000 + 5 x 100).
    assert await big_pool.fetchval("SELECT balance FROM customers WHERE id = 'cus_race'") == 1500
    assert await big_pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'cus_race'") == 7
    assert sorted(msgspec.json.decode(o.response)["balance"] for o in outcomes) == [1100, 1200, 1300, 1400, 1500]
    assert (await check_drift(big_pool)).problems == []
    await committer.close()


async def test_an_invalid_command_raises_without_a_transaction(big_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(big_pool)
    committer = GroupCommitter(store, lanes=2)
    with pytest.raises(InvalidParameter):
        await execute(store, adjust("cus_none", 1, amount=0), context(1), runner=committer)
    await committer.close()


async def test_a_balance_transaction_created_and_updated_in_one_batch(big_pool: asyncpg.Pool) -> None:
    # Clients only learn a transaction's id from the committed response, but nothing stops a caller of
    # the handler from sending both at once: the update must see the row the batch keeps in memory.
    store = PostgresEventStore(big_pool)
    committer = GroupCommitter(store, lanes=1)
    await create(store, "cus_upd")
    update = UpdateBalanceTransaction(
        customer_id="cus_upd", occurred_at=T0 + 2, transaction_id="cbtxn_g000001", description="corrected"
    )
    first, second = await asyncio.gather(
        execute(store, adjust("cus_upd", 1), context(1), runner=committer),
        execute(store, update, context(2), runner=committer),
    )
    assert [event.event_type for event in first.events + second.events] == [
        "BalanceAdjusted",
        "BalanceTransactionUpdated",
    ]
    assert first.events[0].tx_id == second.events[0].tx_id  # one shared transaction
    row = await big_pool.fetchrow(
        "SELECT amount, description FROM balance_transactions WHERE id = 'cbtxn_g000001'"
    )
    assert (row["amount"], row["description"]) == (100, "corrected")
    assert (await check_drift(big_pool)).problems == []
    await committer.close()
