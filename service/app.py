"""The aiohttp application factory. Nothing happens at import time: `create_app(config)` builds the
app, and its cleanup context owns the database pool for the app's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ledgerd.service.auth import KeyCache, authenticate
from ledgerd.service.commands.group_commit import GroupCommitter
from ledgerd.service.commands.runner import Runner, SoloRunner
from ledgerd.service.config import Config
from ledgerd.service.errors import error_middleware
from ledgerd.service.explorer import DOCS_PATH, DOCS_PREFIX
from ledgerd.service.explorer import add_routes as add_explorer_routes
from ledgerd.service.observability import Metrics, access_middleware, configure_logging
from ledgerd.service.openapi import openapi_view
from ledgerd.service.ratelimit import limiter_for, rate_limit_middleware
from ledgerd.service.routes import routes
from ledgerd.service.store.postgres import PostgresEventStore
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

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109 (asyncpg's signature)
        started = time.monotonic()
        await asyncio.wait_for(self.turns.acquire(), timeout)
        try:
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            return await super()._acquire(left)
        except BaseException:
            self.turns.release()
            raise

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        held = getattr(connection, "_con", None) is not None  # releasing twice gives back one turn
        try:
            await super().release(connection, timeout=timeout)
        finally:
            if held:
                self.turns.release()


def connection_settings(config: Config) -> dict[str, str]:
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
    }


async def release_connection(conn: asyncpg.Connection) -> None:
    """What the pool runs when a connection comes back. asyncpg's default (RESET ALL, UNLISTEN,
    pg_advisory_unlock_all, CLOSE ALL) costs a round trip per request and has nothing to undo here:
    the service only takes transaction-scoped locks and sets nothing per session. An unfinished
    transaction is still rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(config: Config) -> BoundedPool:
    # A client-side bound as well, a little above the server's statement_timeout: a server that stopped
    # answering (a network partition, a stopped process) must not hold a request forever either.
    command_timeout = config.statement_timeout_ms / 1000 + 5 if config.statement_timeout_ms > 0 else None
    pool = BoundedPool(
        config.database_url,
        acquire_timeout=config.pool_acquire_timeout_s,
        min_size=config.pool_min_size,
        max_size=config.pool_max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        server_settings=connection_settings(config),
        command_timeout=command_timeout,
        timeout=max(config.pool_acquire_timeout_s, 1.0),  # to establish one connection
        reset=release_connection,
    )
    await pool
    return pool


def pool_context(config: Config) -> Any:
    async def context(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pool(config)
        app["pool"] = pool
        store = PostgresEventStore(pool)
        app["store"] = store
        committer = (
            GroupCommitter(store, config.group_commit_lanes, app["metrics"])
            if config.group_commit_lanes
            else None
        )
        runner: Runner = committer if committer is not None else SoloRunner(store)
        app["runner"] = runner
        try:
            yield
        finally:
            if committer is not None:
                await committer.close()
            await pool.close()

    return context


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
        while True:
            try:
                removed = await prune_idempotency_keys(app["pool"], config.idempotency_retention_hours)
                if removed:
                    log.info("idempotency_keys_pruned", removed=removed)
            except Exception as error:  # the database may be down for a while: try again next round
                log.warning("idempotency_pruning_failed", error=repr(error))
            await asyncio.sleep(PRUNE_EVERY_S)

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop(app))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return context


def auth_middleware(cache: KeyCache) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        key = await authenticate(request.app["pool"], cache, request.headers.get("Authorization"))
        request["account"] = key.account
        request["livemode"] = key.livemode
        request["api_key_id"] = key.id
        return await handler(request)

    return middleware


async def metrics_view(request: web.Request) -> web.Response:
    metrics: Metrics = request.app["metrics"]
    response = web.Response(body=generate_latest(metrics.registry))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


def create_app(config: Config) -> web.Application:
    configure_logging(config.log_level)
    metrics = Metrics()
    middlewares = [
        access_middleware(metrics, config.access_log),
        error_middleware,
        auth_middleware(KeyCache(config.api_key_cache_ttl_s)),
    ]
    limiter = limiter_for(config.rate_limit_rps, config.rate_limit_burst)
    if limiter is not None:  # after auth (the bucket is the key's), before idempotency (in the handlers)
        middlewares.append(rate_limit_middleware(limiter))
    app = web.Application(
        client_max_size=config.max_body_bytes,
        # Long query strings and headers reach the app (and get a Stripe-shaped answer) instead of
        # aiohttp's plain-text 400 at its default 8190-byte limits.
        handler_args={"max_line_size": 65536, "max_field_size": 65536},
        middlewares=middlewares,
    )
    app["config"] = config
    app["metrics"] = metrics
    app.cleanup_ctx.append(pool_context(config))
    app.cleanup_ctx.append(pruning_context(config))
    app.router.add_routes(routes)
    # Webhooks (issue 11): the endpoints API, and the dispatcher and delivery workers (after the pool).
    webhook_config = WebhookConfig.from_env()
    app["webhook_config"] = webhook_config
    app.cleanup_ctx.append(webhooks_context(webhook_config))
    app.router.add_routes(webhook_routes)
    app.router.add_routes(webhook_extension_routes)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/openapi.json", openapi_view)
    add_explorer_routes(app)
    return app
