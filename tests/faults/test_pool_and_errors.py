"""The service's pool and its error mapping, without a service process: session settings that survive the
pool's RESET ALL, a bounded acquire, and which database failures are retryable (429/503) or a 500."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import pytest
from aiohttp.test_utils import make_mocked_request

from ledgerd.service.app import create_pool
from ledgerd.service.config import Config
from ledgerd.service.errors import translate


async def test_session_settings_hold_for_every_use_of_a_pooled_connection(db_url: str) -> None:
    config = Config(
        database_url=db_url,
        pool_min_size=1,
        pool_max_size=1,
        statement_timeout_ms=4321,
        lock_timeout_ms=1234,
        synchronous_commit="remote_apply",
    )
    pool = await create_pool(config)
    try:
        for _ in range(3):  # the pool runs RESET ALL on every release
            async with pool.acquire() as conn:
                settings = dict(
                    await conn.fetch(
                        """SELECT name, setting FROM pg_settings WHERE name IN ('statement_timeout',
                           'lock_timeout', 'synchronous_commit', 'application_name',
                           'idle_in_transaction_session_timeout')"""
                    )
                )
                assert settings == {
                    "application_name": "ledgerd",
                    "idle_in_transaction_session_timeout": "60000",
                    "lock_timeout": "1234",
                    "statement_timeout": "4321",
                    "synchronous_commit": "remote_apply",
                }
                # The release hook skips asyncpg's RESET ALL (a round trip per request: the service sets
                # nothing per session), but a transaction left open must still be rolled back.
                await conn.execute("BEGIN; SET LOCAL lock_timeout = 1; CREATE TEMP TABLE leaked (x int)")
            assert await pool.fetchval("SHOW lock_timeout") == "1234ms"
            assert await pool.fetchval("SELECT to_regclass('pg_temp.leaked')") is None
    finally:
        await pool.close()


async def test_acquire_waits_at_most_the_configured_time(db_url: str) -> None:
    pool = await create_pool(
        Config(database_url=db_url, pool_min_size=1, pool_max_size=1, pool_acquire_timeout_s=0.3)
    )
    try:
        async with pool.acquire():
            for attempt in (pool.fetchval("SELECT 1"), pool.acquire().__aenter__()):
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    await attempt
                assert 0.25 <= time.monotonic() - started < 1.5
        assert await pool.fetchval("SELECT 1") == 1  # and the pool is fine afterwards
    finally:
        await pool.close()


def test_only_durable_commit_levels_are_accepted() -> None:
    with pytest.raises(ValueError, match="LEDGER_SYNCHRONOUS_COMMIT"):
        Config(database_url="x", synchronous_commit="off")
    with pytest.raises(ValueError, match="POOL_TIMEOUT"):
        Config(database_url="x", pool_acquire_timeout_s=0)


UNAVAILABLE = [
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.CrashShutdownError("terminating connection because of crash of another server process"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.DiskFullError("could not extend file"),
    asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
    asyncpg.IdleInTransactionSessionTimeoutError("terminating connection due to idle-in-transaction timeout"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.InterfaceError("connection is closed"),
    asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
    ConnectionRefusedError(111, "Connection refused"),
    FileNotFoundError(2, "No such file or directory"),  # a Unix socket that is not there (yet)
    TimeoutError(),  # also asyncio.TimeoutError on 3.11
]
CONTENTION = [
    asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.LockNotAvailableError("canceling statement due to lock timeout"),
    asyncpg.DeadlockDetectedError("deadlock detected"),
    asyncpg.SerializationError("could not serialize access"),
]
BUGS = [
    asyncpg.InsufficientPrivilegeError("permission denied for table events"),  # a missing GRANT
    asyncpg.UndefinedTableError('relation "x" does not exist'),
    asyncpg.UniqueViolationError("duplicate key value"),
    RuntimeError("boom"),
]


@pytest.mark.parametrize("error", UNAVAILABLE, ids=lambda e: type(e).__name__)
def test_database_unavailability_is_a_retryable_503(error: BaseException) -> None:
    mapped = translate(error, make_mocked_request("POST", "/v1/customers"))
    assert mapped is not None
    assert (mapped.status, mapped.type, mapped.code) == (503, "api_error", "service_unavailable")
    assert mapped.headers == {"Retry-After": "1", "Stripe-Should-Retry": "true"}


@pytest.mark.parametrize("error", CONTENTION, ids=lambda e: type(e).__name__)
def test_contention_is_a_retryable_429_lock_timeout(error: BaseException) -> None:
    mapped = translate(error, make_mocked_request("POST", "/v1/customers"))
    assert mapped is not None
    assert (mapped.status, mapped.type, mapped.code) == (429, "invalid_request_error", "lock_timeout")
    assert mapped.headers == {"Retry-After": "1", "Stripe-Should-Retry": "true"}


@pytest.mark.parametrize("error", BUGS, ids=lambda e: type(e).__name__)
def test_other_database_errors_stay_500s(error: BaseException) -> None:
    assert translate(error, make_mocked_request("POST", "/v1/customers")) is None


async def test_idempotency_pruning_survives_database_outages(monkeypatch: pytest.MonkeyPatch) -> None:
    """The background pruning loop logs a failure and tries again next round, whatever the database raised
    (a pool acquire timeout or a closed connection used to end the loop for good)."""
    import ledgerd.service.app as app_module
    from ledgerd.service.appkeys import DATABASE, POOL

    failures = [TimeoutError(), asyncpg.InterfaceError("pool is closing"), OSError("refused")]
    calls: list[int] = []

    async def prune(pool: object, hours: int) -> int:
        calls.append(hours)
        if failures:
            raise failures.pop(0)
        return 0

    monkeypatch.setattr(app_module, "prune_idempotency_keys", prune)
    monkeypatch.setattr(app_module, "PRUNE_EVERY_S", 0.001)
    context = app_module.pruning_context(Config(database_url="x", idempotency_retention_hours=24))
    database = app_module.Database()
    database.ready.set()
    running = context({POOL: None, DATABASE: database})  # type: ignore[arg-type]
    await running.__anext__()
    for _ in range(200):
        if len(calls) >= 5:
            break
        await asyncio.sleep(0.005)
    with contextlib.suppress(StopAsyncIteration):
        await running.__anext__()
    assert len(calls) >= 5 and not failures
