"""Stuck locks, statement timeouts, pool exhaustion and connections killed mid-request: every request ends
within its configured bound with a retryable Stripe error, a retry with the same Idempotency-Key then runs
exactly once, and the service carries on. Runs on a fresh database of the DATABASE_URL server; the only
sessions it disturbs are the test's own service's (application_name 'ledgerd' in that database)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import asyncpg

from tests.support.faults import Reply, Service, call, new_key

MARGIN_S = 1.5  # scheduling slack on a loaded two-core machine


async def waiting_service_backends(conn: asyncpg.Connection) -> list[int]:
    rows = await conn.fetch(
        """SELECT pid FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = 'ledgerd' AND wait_event_type = 'Lock'"""
    )
    return [row["pid"] for row in rows]


async def until_waiting(conn: asyncpg.Connection, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = await waiting_service_backends(conn)
        if len(pids) >= count:
            return pids
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} service sessions waiting on a lock")


@contextlib.asynccontextmanager
async def holding(db_url: str, *statements: str, args: tuple[object, ...] = ()) -> AsyncIterator[None]:
    """A transaction of the test's own that takes locks and keeps them until the block ends."""
    conn = await asyncpg.connect(db_url)
    try:
        transaction = conn.transaction()
        await transaction.start()
        for statement in statements:
            await conn.execute(statement, *args[: statement.count("$")])
        try:
            yield
        finally:
            await transaction.rollback()
    finally:
        await conn.close()


def stream_lock(customer_id: str) -> str:
    return f"SELECT pg_advisory_xact_lock(hashtextextended('stream:{customer_id}', 0))"


def assert_retryable(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, (reply.status, reply.body)
    assert reply.json["error"]["code"] == code, reply.body
    assert reply.headers.get("Stripe-Should-Retry") == "true", reply.headers
    assert reply.headers.get("Retry-After") == "1", reply.headers
    assert "Request-Id" in reply.headers


async def create_customer(http: aiohttp.ClientSession, service: Service, key: str) -> str:
    reply = await call(http, service.base_url, "POST", "/v1/customers", key, {"name": "locks"})
    assert reply.status == 200, reply.body
    customer_id: str = reply.json["id"]
    return customer_id


async def post_txn(
    http: aiohttp.ClientSession, service: Service, key: str, customer: str, idem: str, amount: int = 10
) -> Reply:
    path = f"/v1/customers/{customer}/balance_transactions"
    return await call(http, service.base_url, "POST", path, key, {"amount": amount, "currency": "usd"}, idem)


async def warm_up(http: aiohttp.ClientSession, service: Service, key: str, customer: str) -> None:
    """Use and release every pooled connection several times: settings that were only SET once per
    connection (and then undone by the pool's RESET ALL on release) would be gone after this."""
    for n in range(6):
        replies = await asyncio.gather(
            call(http, service.base_url, "GET", f"/v1/customers/{customer}", key),
            call(http, service.base_url, "GET", "/v1/customers?limit=1", key),
            post_txn(http, service, key, customer, f"warm-{customer}-{n}", 1),
        )
        assert [reply.status for reply in replies] == [200, 200, 200], [r.body for r in replies]


async def events_under(db_url: str, idem: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM events WHERE metadata->>'idempotency_key' = $1", idem)
        )
    finally:
        await conn.close()


async def test_stuck_locks_end_in_a_retryable_429_within_lock_timeout(
    db_url: str, spawn_service, http: aiohttp.ClientSession
) -> None:
    key = await new_key(db_url)
    lock_timeout_s = 0.5
    service = await spawn_service(
        db_url, LEDGER_LOCK_TIMEOUT_MS="500", LEDGER_STATEMENT_TIMEOUT_MS="4000", LEDGER_POOL_MAX="3"
    )
    customer = await create_customer(http, service, key)
    await warm_up(http, service, key, customer)

    # 1. The stream's advisory lock, held elsewhere: every attempt gives up after lock_timeout.
    async with holding(db_url, stream_lock(customer)):
        for n in range(4):  # sequential: the same pooled connections, reused
            reply = await post_txn(http, service, key, customer, f"stuck-{n}")
            assert_retryable(reply, 429, "lock_timeout")
            assert lock_timeout_s * 0.8 <= reply.elapsed < lock_timeout_s + MARGIN_S, reply.elapsed
    # A lock-timed-out request was not recorded: its retry runs now, once.
    again = await post_txn(http, service, key, customer, "stuck-0")
    assert again.status == 200 and "Idempotent-Replayed" not in again.headers, again.body
    assert await events_under(db_url, "stuck-0") == 1
    assert await events_under(db_url, "stuck-1") == 0

    # 2. A row lock on the stream head (the append's version check waits on it).
    async with holding(db_url, "SELECT 1 FROM streams WHERE stream_id = $1 FOR UPDATE", args=(customer,)):
        reply = await post_txn(http, service, key, customer, "row-lock")
        assert_retryable(reply, 429, "lock_timeout")
        assert reply.elapsed < lock_timeout_s + MARGIN_S

    # 3. A table lock that blocks even reads (e.g. a careless ALTER TABLE): reads time out too.
    async with holding(db_url, "LOCK TABLE customers IN ACCESS EXCLUSIVE MODE"):
        for path in (
            f"/v1/customers/{customer}",
            "/v1/customers",
            "/v1/customers/search?query=name%3A%27x%27",
        ):
            reply = await call(http, service.base_url, "GET", path, key)
            assert_retryable(reply, 429, "lock_timeout")
            assert reply.elapsed < lock_timeout_s + MARGIN_S, (path, reply.elapsed)

    assert (await post_txn(http, service, key, customer, "row-lock")).status == 200
    assert (await call(http, service.base_url, "GET", f"/v1/customers/{customer}", key)).status == 200


async def test_statement_timeout_ends_a_request_that_waits_without_lock_timeout(
    db_url: str, spawn_service, http: aiohttp.ClientSession
) -> None:
    key = await new_key(db_url)
    service = await spawn_service(db_url, LEDGER_LOCK_TIMEOUT_MS="0", LEDGER_STATEMENT_TIMEOUT_MS="700")
    customer = await create_customer(http, service, key)
    await warm_up(http, service, key, customer)
    async with holding(db_url, stream_lock(customer)):
        for n in range(3):
            reply = await post_txn(http, service, key, customer, f"slow-{n}")
            assert_retryable(reply, 429, "lock_timeout")
            assert 0.5 <= reply.elapsed < 0.7 + MARGIN_S, reply.elapsed
    assert (await post_txn(http, service, key, customer, "slow-0")).status == 200
    assert await events_under(db_url, "slow-0") == 1


async def test_pool_exhaustion_queues_for_the_acquire_timeout_then_fails_cleanly(
    db_url: str, spawn_service, http: aiohttp.ClientSession
) -> None:
    key = await new_key(db_url)
    service = await spawn_service(
        db_url,
        LEDGER_POOL_MIN="1",
        LEDGER_POOL_MAX="2",
        LEDGER_POOL_TIMEOUT_S="1",
        LEDGER_LOCK_TIMEOUT_MS="20000",
        LEDGER_STATEMENT_TIMEOUT_MS="30000",
    )
    a, b, c = [await create_customer(http, service, key) for _ in range(3)]
    monitor = await asyncpg.connect(db_url)
    try:
        async with holding(db_url, stream_lock(a), stream_lock(b)):
            # Two requests wait on the locks, holding both pooled connections.
            blocked = [
                asyncio.create_task(post_txn(http, service, key, a, "blocked-a")),
                asyncio.create_task(post_txn(http, service, key, b, "blocked-b")),
            ]
            await until_waiting(monitor, 2)
            # Everything else queues for LEDGER_POOL_TIMEOUT_S, then is a clean 503.
            started = time.monotonic()
            replies = await asyncio.gather(
                call(http, service.base_url, "GET", f"/v1/customers/{c}", key),
                call(http, service.base_url, "GET", "/v1/events", key),
                post_txn(http, service, key, c, "queued-c"),
            )
            for reply in replies:
                assert reply.status == 503, reply.body
                assert reply.json["error"] == {
                    "type": "api_error",
                    "code": "service_unavailable",
                    "message": reply.json["error"]["message"],
                    "doc_url": "https://stripe.com/docs/error-codes/service-unavailable",
                }
                assert reply.headers.get("Retry-After") == "1"
                assert reply.headers.get("Stripe-Should-Retry") == "true"
                assert 0.9 <= reply.elapsed < 1 + MARGIN_S, reply.elapsed
            assert time.monotonic() - started < 1 + MARGIN_S
            # Liveness does not need the database; readiness does, and says so.
            assert (await call(http, service.base_url, "GET", "/healthz", key)).status == 200
            assert (await call(http, service.base_url, "GET", "/readyz", key)).status == 503
            assert not any(task.done() for task in blocked)
        # The locks are gone: the waiting requests complete, the queued one runs on retry, once.
        assert [(await task).status for task in blocked] == [200, 200]
        assert (await post_txn(http, service, key, c, "queued-c")).status == 200
        for idem in ("blocked-a", "blocked-b", "queued-c"):
            assert await events_under(db_url, idem) == 1
        assert (await call(http, service.base_url, "GET", "/readyz", key)).status == 200
    finally:
        await monitor.close()


async def test_a_session_killed_mid_request_is_a_503_and_the_retry_runs_once(
    db_url: str, spawn_service, http: aiohttp.ClientSession
) -> None:
    """pg_terminate_backend on the service's session while its request waits inside a transaction (what a
    fast shutdown, a failover or an operator does): a 503, never a 500, and nothing half-written."""
    key = await new_key(db_url)
    service = await spawn_service(db_url, LEDGER_LOCK_TIMEOUT_MS="20000")
    customer = await create_customer(http, service, key)
    monitor = await asyncpg.connect(db_url)
    try:
        for n, target in enumerate(("write", "read")):
            lock = (
                stream_lock(customer)
                if target == "write"
                else "LOCK TABLE customers IN ACCESS EXCLUSIVE MODE"
            )
            async with holding(db_url, lock):
                if target == "write":
                    request = asyncio.create_task(post_txn(http, service, key, customer, f"killed-{n}"))
                else:
                    request = asyncio.create_task(
                        call(http, service.base_url, "GET", f"/v1/customers/{customer}", key)
                    )
                (pid,) = await until_waiting(monitor, 1)
                assert await monitor.fetchval("SELECT pg_terminate_backend($1)", pid)
                reply = await asyncio.wait_for(request, 10)
            assert reply.status == 503, (target, reply.body)
            assert reply.headers.get("Stripe-Should-Retry") == "true"
            assert reply.headers.get("Retry-After") == "1"
        assert await events_under(db_url, "killed-0") == 0
        retry = await post_txn(http, service, key, customer, "killed-0")
        assert retry.status == 200 and "Idempotent-Replayed" not in retry.headers
        assert await events_under(db_url, "killed-0") == 1
        assert (await call(http, service.base_url, "GET", f"/v1/customers/{customer}", key)).status == 200
    finally:
        await monitor.close()
    assert "unhandled_error" not in service.log_tail(200)
