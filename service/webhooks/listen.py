"""`ledgerd listen --forward-to URL [--events t1,t2] [--account A] [--live]`, like `stripe listen`.

It registers (or finds again) a forwarder endpoint for the URL, whose id and `whsec_` secret stay the same
between restarts, prints the secret, and then delivers that endpoint's events itself, signed and retried like
any delivery; the service's own workers never send to it (the URL is usually on this machine). Events
recorded while the listener is stopped are forwarded when it starts again (stripe-cli forwards nothing it
missed and retries nothing). Loopback is allowed for the forward URL; other ranges as for the service
(LEDGER_WEBHOOK_ALLOW_CIDRS). The endpoint counts towards the 16 of its account and mode; delete it with
DELETE /v1/webhook_endpoints/{id} to stop forwarding for good.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import sys
from typing import Any, TextIO

import asyncpg
import structlog
from prometheus_client import CollectorRegistry

from ledgerd.domain.errors import DomainError
from ledgerd.service.webhooks.config import LOOPBACK, WebhookConfig
from ledgerd.service.webhooks.delivery import Deliverer, Outcome
from ledgerd.service.webhooks.metrics import WebhookMetrics
from ledgerd.service.webhooks.params import check_events, check_url
from ledgerd.service.webhooks.service import dispatch_loop
from ledgerd.service.webhooks.signing import new_secret

SQL_REGISTER = """
INSERT INTO webhook_endpoints
    (id, account, livemode, url, enabled_events, description, secret, created, forwarder)
VALUES ($1, $2, $3, $4, $5, 'ledgerd listen', $6, extract(epoch FROM now())::bigint, true)
ON CONFLICT (id) DO UPDATE SET enabled_events = EXCLUDED.enabled_events, status = 'enabled',
    disabled_reason = NULL, failing_since = NULL, deleted = false, updated_at = now()
RETURNING id, secret
"""
SQL_SUBSCRIBE = """
INSERT INTO webhook_subscriptions (endpoint_id, valid_from, enabled_events, active) VALUES ($1, $2, $3, true)
"""


def listener_id(account: str, livemode: bool, url: str) -> str:
    digest = hashlib.sha256(f"{account}\x00{livemode}\x00{url}".encode()).hexdigest()
    return "we_listen" + digest[:24]


async def register(pool: asyncpg.Pool, account: str, livemode: bool, url: str, events: tuple[str, ...]) -> tuple[str, str]:
    """The listener's endpoint id and secret: created on the first run, the same on every later one."""
    endpoint_id = listener_id(account, livemode, url)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(SQL_REGISTER, endpoint_id, account, livemode, url, list(events), new_secret())
        await conn.execute(SQL_SUBSCRIBE, endpoint_id, dt.datetime.now(dt.UTC), list(events))
    return row["id"], row["secret"]


def printer(out: TextIO) -> Any:
    def report(row: Any, outcome: Outcome) -> None:
        answer = outcome.status_code if outcome.status_code is not None else outcome.error
        print(f"--> {row['type']} [{row['id']}]  <-- {answer} ({outcome.latency_ms} ms)", file=out, flush=True)

    return report


async def listen(
    database_url: str, url: str, events: str, account: str, livemode: bool, out: TextIO = sys.stdout
) -> None:
    base = WebhookConfig.from_env()
    allow = (*base.allow_cidrs, *LOOPBACK)
    try:
        url = check_url(url, livemode=False, allow=allow)
        chosen = check_events([name.strip() for name in events.split(",") if name.strip()])
    except DomainError as error:
        raise SystemExit(f"ledgerd listen: {error.message}") from error
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        endpoint_id, secret = await register(pool, account, livemode, url, chosen)
        config = dataclasses.replace(base, allow_cidrs=allow, only_endpoint=endpoint_id)
        print(
            f"Ready! Your webhook signing secret is {secret} (endpoint {endpoint_id}); forwarding "
            f"{', '.join(chosen)} of {account} ({'live' if livemode else 'test'} mode) to {url}. ^C to quit.",
            file=out,
            flush=True,
        )
        log = structlog.get_logger("ledger.listen")
        metrics = WebhookMetrics(CollectorRegistry())
        deliverer = Deliverer(pool, config, log, metrics, on_attempt=printer(out))
        await asyncio.gather(dispatch_loop(pool, config, deliverer, metrics, log), deliverer.run())
    finally:
        await pool.close()
