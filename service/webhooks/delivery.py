"""Delivery workers: claim due deliveries with a short lease, POST the signed event, record the attempt.

Three steps, never a transaction open across the HTTP call (it would hold back the transaction-id
horizon every reader of the log waits for): (1) a short transaction leases up to N due deliveries and
commits; (2) the request, with no redirects followed and a total timeout; (3) a short transaction records
the attempt and settles the delivery if the lease is still ours. A process killed between (1) and (3)
leaves a lease that expires: the delivery is sent again (at-least-once; receivers dedupe on the event id).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import msgspec
from yarl import URL

from ledgerd.projections.objects import render_event
from ledgerd.service import versions
from ledgerd.service.webhooks.config import WebhookConfig
from ledgerd.service.webhooks.metrics import WebhookMetrics
from ledgerd.service.webhooks.signing import signed_headers
from ledgerd.service.webhooks.sql import statements
from ledgerd.service.webhooks.ssrf import GuardedResolver, SsrfBlocked, check_literal

RESPONSE_EXCERPT = 20_000
USER_AGENT = "ledgerd-webhooks/0.1 (+Stripe-compatible)"
THROTTLED = frozenset({429, 503})


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None  # None on success; else timeout, connection, ssrf_blocked, redirect, http_status
    latency_ms: int
    response: bytes
    retry_after_s: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None


def render_payload(row: Any) -> bytes:
    """The event as GET /v1/events/{id} renders it, with the pending count at claim time: the exact bytes
    signed and sent, at the endpoint's API version (else the account's default, else the latest)."""
    event = versions.render_event_data(render_event(row), row["api_version"] or versions.LATEST)
    return msgspec.json.encode(event | {"pending_webhooks": row["pending_webhooks"]})


def retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None  # an HTTP date: ignored, the schedule applies


def next_delay(config: WebhookConfig, livemode: bool, attempt: int, outcome: Outcome) -> float | None:
    """Seconds until the next attempt after failed attempt number `attempt` (1-based); None: give up."""
    schedule = config.schedule(livemode)
    if attempt > len(schedule):
        return None
    delay = schedule[attempt - 1] * random.uniform(1 - config.jitter, 1 + config.jitter)
    if outcome.status_code in THROTTLED and outcome.retry_after_s is not None:
        delay = min(max(outcome.retry_after_s, delay), 2 * delay)
    return delay


async def read_excerpt(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < RESPONSE_EXCERPT:
        chunk = await response.content.read(RESPONSE_EXCERPT - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def ssrf_refusal(error: BaseException) -> SsrfBlocked | None:
    """The guard's refusal behind a client error (aiohttp wraps what the resolver raises), if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, SsrfBlocked):
            return seen
        if isinstance(seen, aiohttp.ClientConnectorError) and isinstance(seen.os_error, SsrfBlocked):
            return seen.os_error
        seen = seen.__cause__
    return None


def new_session(config: WebhookConfig) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(config.allow_cidrs), limit=config.concurrency)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=config.timeout_s),
        headers={"User-Agent": USER_AGENT},
        auto_decompress=False,
    )


async def post(
    session: aiohttp.ClientSession, config: WebhookConfig, url: str, body: bytes, headers: dict[str, str]
) -> Outcome:
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        check_literal(URL(url).host or "", config.allow_cidrs)
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            excerpt = await read_excerpt(response)
            status = response.status
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    except TimeoutError:
        return Outcome(None, "timeout", elapsed(), f"no response within {config.timeout_s:g} s".encode())
    except (aiohttp.ClientError, OSError) as error:
        refusal = ssrf_refusal(error)
        if refusal is not None:
            return Outcome(None, "ssrf_blocked", elapsed(), str(refusal).encode()[:RESPONSE_EXCERPT])
        text = f"{type(error).__name__}: {error}"
        return Outcome(None, "connection", elapsed(), text.encode()[:RESPONSE_EXCERPT])
    if 200 <= status < 300:
        return Outcome(status, None, elapsed(), excerpt)
    kind = "redirect" if 300 <= status < 400 else "http_status"
    return Outcome(status, kind, elapsed(), excerpt, retry_after)


def secrets_of(row: Any) -> list[str]:
    secrets = [row["secret"]]
    if row["previous_secret"] is not None and row["previous_active"]:
        secrets.append(row["previous_secret"])
    return secrets


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def claim(pool: asyncpg.Pool, config: WebhookConfig, limit: int) -> list[asyncpg.Record]:
    """Lease up to `limit` due deliveries: one statement, its own (short) transaction, committed on return."""
    rows: list[asyncpg.Record] = await pool.fetch(
        statements()["claim"], limit, config.lease_s, config.worker_id, config.only_endpoint
    )
    return rows


async def settle(
    pool: asyncpg.Pool, config: WebhookConfig, row: Any, outcome: Outcome, at: dt.datetime
) -> float | None:
    """Record the attempt and what follows from it, in one short transaction; the seconds until the next
    attempt (None: no further attempt)."""
    sql = statements()
    excerpt = outcome.response[:RESPONSE_EXCERPT]
    if outcome.succeeded:
        await pool.execute(
            sql["record_success"], row["delivery_id"], row["id"], row["endpoint_id"], at, outcome.status_code,
            outcome.latency_ms, excerpt, row["manual"], config.worker_id, row["attempts"],
        )
        return None
    delay = None if outcome.status_code == 410 else next_delay(config, row["livemode"], row["attempts"], outcome)
    state = "failed" if delay is None else "pending"
    next_at = None if delay is None else utcnow() + dt.timedelta(seconds=delay)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            sql["record_attempt"], row["delivery_id"], row["id"], row["endpoint_id"], at, outcome.status_code,
            outcome.error, outcome.latency_ms, excerpt, next_at, row["manual"],
        )
        await conn.execute(sql["settle"], row["delivery_id"], config.worker_id, row["attempts"], state, next_at)
        if outcome.status_code == 410:
            await conn.execute(sql["disable_endpoint"], row["endpoint_id"], "gone", utcnow())
        elif await conn.fetchval(sql["endpoint_failed"], row["endpoint_id"], at, config.disable_after_hours * 3600.0):
            await conn.execute(sql["disable_endpoint"], row["endpoint_id"], "failing", utcnow())
    return delay


# Takes a claimed delivery (its row, the signed body, every header that would be sent) instead of sending it,
# returning the outcome; or None to let it be sent (the ephemeral ledger's collect mode, service/testmode.py).
Intercept = Callable[[Any, bytes, dict[str, str]], Outcome | None]


async def deliver(
    pool: asyncpg.Pool,
    session: aiohttp.ClientSession,
    config: WebhookConfig,
    row: Any,
    intercept: Intercept | None = None,
) -> tuple[Outcome, float | None]:
    """Send one claimed delivery and record it; the outcome and the seconds until the next attempt."""
    body = render_payload(row)
    at = utcnow()
    headers = signed_headers(secrets_of(row), row["id"], int(at.timestamp()), body)
    taken = intercept(row, body, {"User-Agent": USER_AGENT, **headers}) if intercept is not None else None
    outcome = taken if taken is not None else await post(session, config, row["url"], body, headers)
    return outcome, await settle(pool, config, row, outcome, at)


class Deliverer:
    """Keeps up to `config.concurrency` deliveries in flight; `wake()` makes it look for work now."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: WebhookConfig,
        log: Any,
        metrics: WebhookMetrics,
        on_attempt: Callable[[Any, Outcome], None] | None = None,
        intercept: Intercept | None = None,
    ) -> None:
        self.on_attempt = on_attempt
        self.intercept = intercept
        self.pool = pool
        self.config = config
        self.log = log
        self.metrics = metrics
        self.woken = asyncio.Event()
        self.in_flight: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self.woken.set()

    async def one(self, session: aiohttp.ClientSession, row: Any) -> None:
        try:
            outcome, retry_in = await deliver(self.pool, session, self.config, row, self.intercept)
        except Exception as error:  # not recorded: the lease expires and the event is sent again
            self.log.warning("webhook_settle_failed", event_id=row["id"], endpoint=row["endpoint_id"], error=repr(error))
            return
        if self.on_attempt is not None:
            self.on_attempt(row, outcome)
        self.metrics.attempts.labels(outcome=outcome.error or "succeeded").inc()
        self.metrics.latency.observe(outcome.latency_ms / 1000)
        if retry_in is not None:  # look again when the retry is due, not at the next idle poll
            asyncio.get_running_loop().call_later(retry_in, self.wake)
        if not outcome.succeeded:
            self.log.info(
                "webhook_attempt_failed", event_id=row["id"], endpoint=row["endpoint_id"], attempt=row["attempts"],
                status=outcome.status_code, error=outcome.error,
            )

    async def idle(self, seconds: float) -> bool:
        """Wait for a wake-up or `seconds`; True if woken."""
        self.woken.clear()
        try:
            await asyncio.wait_for(self.woken.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        pause = self.config.poll_min_s
        async with new_session(self.config) as session:
            try:
                while True:
                    free = self.config.concurrency - len(self.in_flight)
                    if free <= 0:
                        await asyncio.wait(self.in_flight, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    try:
                        rows = await claim(self.pool, self.config, free)
                    except Exception as error:  # the database may be down: back off and try again
                        self.log.warning("webhook_claim_failed", error=repr(error))
                        await asyncio.sleep(min(5.0, max(pause, 0.5)))
                        pause = min(self.config.poll_max_s, pause * 2)
                        continue
                    for row in rows:
                        task = asyncio.create_task(self.one(session, row))
                        self.in_flight.add(task)
                        task.add_done_callback(self.in_flight.discard)
                    if rows:
                        pause = self.config.poll_min_s
                    elif not await self.idle(pause):
                        pause = min(self.config.poll_max_s, pause * 2)
            finally:
                for task in list(self.in_flight):
                    task.cancel()
                await asyncio.gather(*self.in_flight, return_exceptions=True)
