"""The webhook pipeline's lifetime inside the app: `webhooks_context` (a cleanup context, after the pool's)
runs one dispatcher loop and one delivery loop per process. Both survive the database being down: they
log, back off and carry on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from ledgerd.service.appkeys import METRICS, POOL, TEST_MODE, WEBHOOK_DELIVERER
from ledgerd.service.webhooks.config import WebhookConfig
from ledgerd.service.webhooks.delivery import Deliverer
from ledgerd.service.webhooks.dispatcher import dispatch_all
from ledgerd.service.webhooks.metrics import SQL_OLDEST_UNDELIVERED, WebhookMetrics

DISPATCH_EVERY_S = 0.05  # an idle poll is one read-only query (dispatcher.py, `peek`)


LAG_EVERY_S = 5.0


async def dispatch_loop(
    pool: asyncpg.Pool, config: WebhookConfig, deliverer: Deliverer, metrics: WebhookMetrics, log: Any
) -> None:
    failures = 0
    lag_measured = 0.0
    while True:
        try:
            done = await dispatch_all(pool, config.dispatch_batch)
            failures = 0
            if done.deliveries:
                metrics.fanned_out.inc(done.deliveries)
                deliverer.wake()
            if time.monotonic() - lag_measured > LAG_EVERY_S:
                lag_measured = time.monotonic()
                metrics.oldest_undelivered.set(await pool.fetchval(SQL_OLDEST_UNDELIVERED))
        except Exception as error:  # the database may be down: back off and try again
            failures += 1
            log.warning("webhook_dispatch_failed", error=repr(error), failures=failures)
            await asyncio.sleep(min(5.0, 0.2 * 2**failures))
            continue
        await asyncio.sleep(DISPATCH_EVERY_S)


def webhooks_context(config: WebhookConfig) -> Any:
    log = structlog.get_logger("ledger.webhooks")

    async def context(app: web.Application) -> AsyncIterator[None]:
        if not config.enabled:
            yield
            return
        pool: asyncpg.Pool = app[POOL]
        metrics = WebhookMetrics(app[METRICS].registry)
        test_mode = app.get(TEST_MODE)  # an ephemeral ledger collects deliveries to its collect URL
        deliverer = Deliverer(pool, config, log, metrics, intercept=test_mode.intercept if test_mode else None)
        app[WEBHOOK_DELIVERER] = deliverer
        tasks = [
            asyncio.create_task(dispatch_loop(pool, config, deliverer, metrics, log)),
            asyncio.create_task(deliverer.run()),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return context
