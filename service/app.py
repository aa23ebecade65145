"""The aiohttp application factory. Nothing happens at import time: `create_app(config)` builds the
app, and its cleanup context owns the database pool for the app's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ledgerd.service.accounts import SettingsCache
from ledgerd.service.appkeys import (
    ACCOUNT,
    API_KEY_ID,
    COMMITTER,
    CONFIG,
    DATABASE,
    LIST_POOL,
    LIVEMODE,
    METRICS,
    POOL,
    RUNNER,
    TEST_MODE,
    WEBHOOK_CONFIG,
)
from ledgerd.service.auth import KeyCache, authenticate
from ledgerd.service.background import background_context, running
from ledgerd.service.commands.group_commit import GroupCommitter
from ledgerd.service.commands.runner import Runner, SoloRunner
from ledgerd.service.config import Config
from ledgerd.service.errors import StripeError, error_middleware, unavailable
from ledgerd.service.explorer import DOCS_PATH, DOCS_PREFIX
from ledgerd.service.explorer import add_routes as add_explorer_routes
from ledgerd.service.fidelity import fidelity_middleware, version_header
from ledgerd.service.migrate import MigrationError, migrate
from ledgerd.service.observability import Metrics, access_middleware, configure_logging
from ledgerd.service.openapi import openapi_view
from ledgerd.service.ratelimit import limiter_for, rate_limit_middleware
from ledgerd.service.routes import routes
from ledgerd.service.store.postgres import PostgresEventStore
from ledgerd.service.strict import strict_middleware
from ledgerd.service.testmode import TestMode, control_routes, request_log_middleware
from ledgerd.service.transport import HANDLER_ARGS, refuse_encoded_bodies
from ledgerd.service.webhooks.config import WebhookConfig
from ledgerd.service.webhooks.endpoints import routes as webhook_routes
from ledgerd.service.webhooks.extensions import routes as webhook_extension_routes
from ledgerd.service.webhooks.service import webhooks_context

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", DOCS_PATH})
PUBLIC_PREFIXES = (DOCS_PREFIX,)  # the explorer's static assets


class BoundedPool(asyncpg.pool.Pool):  # type: ignore[misc]
    """An asyncpg pool whose `acquire()` waits at most `acquire_timeout` seconds by default.

    Every path takes its connection through `acquire()`: the event store's sessions and `pool.fetch…`
    alike. When all connections are busy (or the database cannot be reached) a request queues for that
    long and then fails with TimeoutError, which the error middleware answers with a 503.
    """

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout
        # Waiters are served first come, first served. asyncpg hands connections out through an
        # asyncio.Queue, which lets a newcomer take a connection released for a waiter that is already
        # queued; the waiter then queues again at the back: under load a few requests waited hundreds
        # of milliseconds while the median waited none (bench/RESULTS.md, retrieve at 64 clients).
        self.turns = asyncio.Semaphore(kwargs["max_size"])
        # The connections handed out, each holding one turn. Not `connection._con is not None`: asyncpg
        # detaches a connection that closed while held (the server terminated it), and its turn was lost.
        self.turn_holders: dict[int, Any] = {}  # id -> connection (kept, so that its id is not reused)

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109 (asyncpg's signature)
        started = time.monotonic()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for runs the acquire as a task of its own,
        # and when cancelled just as that task got a turn it returns the turn and drops the cancellation.
        async with asyncio.timeout(timeout):
            await self.turns.acquire()
        try:
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            connection = await super()._acquire(left)
        except BaseException:
            self.turns.release()
            raise
        self.turn_holders[id(connection)] = connection
        return connection

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        try:
            await super().release(connection, timeout=timeout)
        finally:
            if self.turn_holders.pop(id(connection), None) is not None:  # releasing twice: one turn back
                self.turns.release()


def connection_settings(config: Config, *, plan_cache_mode: str = "force_generic_plan") -> dict[str, str]:
    """Session settings sent in the startup packet of every pooled connection.

    Not `SET` in an init hook: the pool runs `RESET ALL` whenever a connection is released, which puts
    every SET parameter back to its session default, so timeouts set by `init` held only for a
    connection's first use. Startup-packet values *are* the session defaults, and survive the reset.
    """
    return {
        "application_name": "ledgerd",
        "statement_timeout": str(int(config.statement_timeout_ms)),
        "lock_timeout": str(int(config.lock_timeout_ms)),
        "idle_in_transaction_session_timeout": "60000",
        "synchronous_commit": config.synchronous_commit,
        # The command path's write is one large data-modifying CTE; with PostgreSQL's default plan cache mode
        # it was re-planned on every execution (custom plans). A generic plan is made once per connection:
        # PostgreSQL CPU per AdjustBalance 1.78 -> 1.29 ms (3 interleaved A/B rounds, wrk 16 clients).
        # (The lists' pool plans each statement for its values instead: `list_pool`.)
        "plan_cache_mode": plan_cache_mode,
        # Every statement the service sends is a lookup by key. A plan cached while a table was small (a fresh
        # database: idempotency_keys starts empty) kept hash-joining a sequential scan until autoanalyze ran, so
        # each command read every idempotency record written so far. Seq scans stay possible where no index
        # applies; they are simply never preferred.
        "enable_seqscan": "off",
    }


async def release_connection(conn: asyncpg.Connection) -> None:
    """What the pool runs when a connection comes back. asyncpg's default (RESET ALL, UNLISTEN,
    pg_advisory_unlock_all, CLOSE ALL) costs a round trip per request and has nothing to undo here:
    the service only takes transaction-scoped locks and sets nothing per session. An unfinished
    transaction is still rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(config: Config, *, for_lists: bool = False) -> BoundedPool:
    """The command path's pool; with `for_lists`, the small pool the list pages read from: its
    connections make a custom plan per execution, which a list statement whose filters and direction are
    parameters needs (a generic plan can neither drop a filter left out nor use the index of one given)."""
    # A client-side bound as well, a little above the server's statement_timeout: a server that stopped
    # answering (a network partition, a stopped process) must not hold a request forever either.
    command_timeout = config.statement_timeout_ms / 1000 + 5 if config.statement_timeout_ms > 0 else None
    pool = BoundedPool(
        config.database_url,
        acquire_timeout=config.pool_acquire_timeout_s,
        min_size=min(config.pool_min_size, 1) if for_lists else config.pool_min_size,
        max_size=max(1, min(config.pool_max_size // 2, LIST_POOL_MAX)) if for_lists else config.pool_max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        server_settings=connection_settings(
            config, plan_cache_mode="force_custom_plan" if for_lists else "force_generic_plan"
        ),
        command_timeout=command_timeout,
        timeout=max(config.pool_acquire_timeout_s, 1.0),  # to establish one connection
        reset=release_connection,
    )
    try:
        await pool
    except BaseException:
        pool.terminate()  # the connections it did open
        raise
    return pool


# Connections for list pages (at most half the command path's): a list queues for one like any other request.
LIST_POOL_MAX = 8


# How long start-up waits for the first attempt to reach the database before listening anyway: a
# service whose database is up is ready when it starts listening; one whose database is down listens
# at once (a refused connection fails at once) or after this long (an unanswered one).
FIRST_ATTEMPT_WAIT_S = 2.0
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0


class Database:
    """Whether the app has its pool yet, and if not, why (for /readyz). `ready` is set once the pool,
    the store and the runner are in the app: background workers that need the database await it."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.attempted = asyncio.Event()
        self.problem: str | None = "connecting to the database"


async def establish(app: web.Application, config: Config, database: Database) -> None:
    """Migrate (unless --no-migrate) and open the pool, retrying with exponential backoff until both
    succeed; then put the pool, the store and the runner into the app."""
    log = structlog.get_logger("ledger.database")
    delay = BACKOFF_FIRST_S
    while True:
        try:
            if config.migrate_on_start:
                applied = await migrate(config.database_url)
                if applied:
                    log.info("migrations_applied", names=applied)
            pool = await create_pool(config)
            try:
                list_pool = await create_pool(config, for_lists=True)
            except BaseException:
                pool.terminate()
                raise
            break
        except MigrationError as error:  # this build does not match the database: no retry helps
            database.problem = "the migrations could not be applied (see the log)"
            log.error("migrations_failed", error=str(error))
            database.attempted.set()
            return
        except Exception as error:  # unreachable, starting up, no such database yet, ...
            database.problem = f"the database is not reachable ({type(error).__name__})"
            log.warning("database_unreachable", error=repr(error), retry_in_s=delay)
            database.attempted.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
    store = PostgresEventStore(pool)
    committer = (
        GroupCommitter(store, config.group_commit_lanes, app[METRICS]) if config.group_commit_lanes else None
    )
    runner: Runner = committer if committer is not None else SoloRunner(store)
    app[RUNNER] = runner
    app[COMMITTER] = committer
    app[LIST_POOL] = list_pool
    app[POOL] = pool  # last: a request that sees the pool finds the runner and the lists' pool too
    database.problem = None
    database.ready.set()
    database.attempted.set()
    log.info("database_ready")


def pool_context(config: Config) -> Any:
    async def context(app: web.Application) -> AsyncIterator[None]:
        database: Database = app[DATABASE]
        try:
            async with running(establish(app, config, database)):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(database.attempted.wait(), FIRST_ATTEMPT_WAIT_S)
                yield
        finally:
            committer: GroupCommitter | None = app.get(COMMITTER)
            if committer is not None:
                await committer.close()
            for pool in (app[LIST_POOL], app[POOL]):
                if pool is not None:
                    await close_pool(pool)

    return context


POOL_CLOSE_S = 5.0


async def close_pool(pool: BoundedPool) -> None:
    """Close gracefully if the database answers in time; else drop the connections (shutting down while
    the database is unreachable must not end in a traceback)."""
    try:
        await asyncio.wait_for(pool.close(), POOL_CLOSE_S)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        structlog.get_logger("ledger.database").warning("pool_close_failed", error=repr(error))
        pool.terminate()


def database_missing(request: web.Request) -> StripeError:
    database: Database = request.app[DATABASE]
    return unavailable(f"The ledger is starting: {database.problem or 'connecting'}; please retry shortly.")


PRUNE_EVERY_S = 600.0


async def prune_idempotency_keys(pool: asyncpg.Pool, retention_hours: int) -> int:
    """Forget idempotency records older than the retention window (Stripe keeps them >= 24 h)."""
    status: str = await pool.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)", retention_hours
    )
    return int(status.split()[-1])


def pruning_context(config: Config) -> Any:
    log = structlog.get_logger("ledger.pruning")

    async def loop(app: web.Application) -> None:
        await app[DATABASE].ready.wait()
        while True:
            try:
                removed = await prune_idempotency_keys(app[POOL], config.idempotency_retention_hours)
                if removed:
                    log.info("idempotency_keys_pruned", removed=removed)
            except Exception as error:  # the database may be down for a while: try again next round
                log.warning("idempotency_pruning_failed", error=repr(error))
            await asyncio.sleep(PRUNE_EVERY_S)

    return background_context(loop)


def auth_middleware(cache: KeyCache, test_mode: TestMode | None = None) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        if request.app[POOL] is None:
            raise database_missing(request)
        if test_mode is not None:  # ephemeral: every sk_test_ key is an account of its own
            key = test_mode.authenticate(request.headers.get("Authorization"))
        else:
            key = await authenticate(request.app[POOL], cache, request.headers.get("Authorization"))
        request[ACCOUNT] = key.account
        request[LIVEMODE] = key.livemode
        request[API_KEY_ID] = key.id
        return await handler(request)

    return middleware


async def metrics_view(request: web.Request) -> web.Response:
    metrics: Metrics = request.app[METRICS]
    response = web.Response(body=generate_latest(metrics.registry))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


def create_app(config: Config) -> web.Application:
    configure_logging(config.log_level, sys.stderr if config.ephemeral else None)
    metrics = Metrics()
    test_mode = TestMode() if config.ephemeral else None
    middlewares = [
        access_middleware(metrics, config.access_log),
        *([request_log_middleware(test_mode)] if test_mode is not None else []),
        error_middleware,
        refuse_encoded_bodies,  # before auth: an unauthenticated bomb is refused from its headers
        auth_middleware(KeyCache(config.api_key_cache_ttl_s), test_mode),
        *([strict_middleware] if config.strict else []),
    ]
    limiter = limiter_for(config.rate_limit_rps, config.rate_limit_burst)
    if limiter is not None:  # after auth (the bucket is the key's), before idempotency (in the handlers)
        middlewares.append(rate_limit_middleware(limiter))
    # Stripe fidelity (issue 13): account settings, API version, Stripe-Account; after auth and the limiter.
    middlewares.append(fidelity_middleware(SettingsCache(config.api_key_cache_ttl_s)))
    app = web.Application(
        client_max_size=config.max_body_bytes,
        handler_args=HANDLER_ARGS,
        middlewares=middlewares,
    )
    app[CONFIG] = config
    app[METRICS] = metrics
    app[DATABASE] = Database()
    app[POOL] = None  # until establish() has one: API calls are a 503 meanwhile
    app[LIST_POOL] = None
    app.on_response_prepare.append(version_header)  # Stripe-Version on every answered request
    app.cleanup_ctx.append(pool_context(config))
    app.cleanup_ctx.append(pruning_context(config))
    app.router.add_routes(routes)
    if test_mode is not None:
        app[TEST_MODE] = test_mode
        app.router.add_routes(control_routes)
    # Webhooks (issue 11): the endpoints API, and the dispatcher and delivery workers (after the pool).
    webhook_config = WebhookConfig.from_env(ephemeral=config.ephemeral)
    app[WEBHOOK_CONFIG] = webhook_config
    app.cleanup_ctx.append(webhooks_context(webhook_config))
    app.router.add_routes(webhook_routes)
    app.router.add_routes(webhook_extension_routes)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/openapi.json", openapi_view)
    add_explorer_routes(app)
    return app
