"""Per API key rate limiting (service/ratelimit.py): the token bucket itself, the configuration (off unless
LEDGER_RATE_LIMIT_RPS is set), and over HTTP: Stripe's 429 `rate_limit` with Retry-After, per key, after
authentication and before idempotency (a rate-limited request is neither executed nor recorded)."""

from __future__ import annotations

import asyncio
import math

import aiohttp
import asyncpg
import pytest

from ledgerd.service.app import create_app
from ledgerd.service.config import Config
from ledgerd.service.ratelimit import TokenBucketLimiter, limiter_for, rate_limit_middleware
from tests.support.faults import Reply, call, new_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)  # one token comes back every 1/rate s
    assert limiter.take("other") == 0.0  # buckets are per key
    clock.now += 0.5
    assert limiter.take("k") == 0.0
    assert limiter.take("k") == pytest.approx(0.5)
    clock.now += 60  # refills to the burst, never beyond
    assert [limiter.take("k") for _ in range(4)][3] > 0


def test_full_buckets_are_forgotten_when_there_are_many() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=1.0, burst=1, clock=clock)
    for n in range(10_000):
        limiter.take(f"k{n}")
    clock.now += 5  # all refilled
    limiter.take("new")
    assert len(limiter.buckets) == 1


def test_rate_limiting_is_off_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LEDGER_RATE_LIMIT_RPS", "LEDGER_RATE_LIMIT_BURST"):
        monkeypatch.delenv(name, raising=False)
    config = Config.from_env("postgresql://unused/db")
    assert (config.rate_limit_rps, config.rate_limit_burst) == (0.0, 0)
    assert limiter_for(config.rate_limit_rps, config.rate_limit_burst) is None
    names = [middleware.__qualname__ for middleware in create_app(config).middlewares]
    assert not any(rate_limit_middleware.__name__ in name for name in names), names

    monkeypatch.setenv("LEDGER_RATE_LIMIT_RPS", "2.5")
    config = Config.from_env("postgresql://unused/db")
    limiter = limiter_for(config.rate_limit_rps, config.rate_limit_burst)
    assert limiter is not None and (limiter.rate, limiter.burst) == (2.5, 3)  # burst defaults to ceil(rate)
    assert len(create_app(config).middlewares) == len(names) + 1
    monkeypatch.setenv("LEDGER_RATE_LIMIT_BURST", "10")
    config = Config.from_env("x")
    limiter = limiter_for(config.rate_limit_rps, config.rate_limit_burst)
    assert limiter is not None and limiter.burst == 10
    monkeypatch.setenv("LEDGER_RATE_LIMIT_RPS", "-1")
    with pytest.raises(ValueError, match="RATE_LIMIT"):
        Config.from_env("x")


def assert_rate_limited(reply: Reply) -> None:
    assert reply.status == 429, reply.body
    assert reply.json == {
        "error": {
            "type": "invalid_request_error",
            "code": "rate_limit",
            "message": reply.json["error"]["message"],
            "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
        }
    }
    assert "too quickly" in reply.json["error"]["message"]
    assert int(reply.headers["Retry-After"]) >= 1
    assert reply.headers["Stripe-Should-Retry"] == "true"
    assert reply.headers["Request-Id"].startswith("req_")


async def test_rate_limit_over_http(db_url: str, spawn_service, http: aiohttp.ClientSession) -> None:
    key = await new_key(db_url, "acct_limited")
    other = await new_key(db_url, "acct_other")
    rate, burst = 2.0, 4
    service = await spawn_service(db_url, LEDGER_RATE_LIMIT_RPS=str(rate), LEDGER_RATE_LIMIT_BURST=str(burst))
    base = service.base_url

    replies = [await call(http, base, "GET", "/v1/customers", key) for _ in range(burst)]
    assert [reply.status for reply in replies] == [200] * burst
    limited = await call(http, base, "GET", "/v1/customers", key)
    assert_rate_limited(limited)
    assert int(limited.headers["Retry-After"]) == math.ceil(1 / rate)

    # A write with an Idempotency-Key while limited: not executed, not recorded.
    form = {"name": "limited", "metadata[n]": "1"}
    refused = await call(http, base, "POST", "/v1/customers", key, form, "limited-create")
    assert_rate_limited(refused)
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = 'limited-create'") == 0
        assert await conn.fetchval("SELECT count(*) FROM events") == 0
    finally:
        await conn.close()

    # Another key has its own bucket; public paths and bad keys are never rate limited.
    assert (await call(http, base, "GET", "/v1/customers", other)).status == 200
    for _ in range(10):
        assert (await call(http, base, "GET", "/healthz", key)).status == 200
        assert (await call(http, base, "GET", "/v1/customers", "sk_test_wrong")).status == 401

    # After Retry-After the same request with the same key runs, for the first time.
    await asyncio.sleep(int(refused.headers["Retry-After"]) + 0.05)
    created = await call(http, base, "POST", "/v1/customers", key, form, "limited-create")
    assert created.status == 200 and "Idempotent-Replayed" not in created.headers, created.body
    await asyncio.sleep(1 / rate + 0.05)
    replay = await call(http, base, "POST", "/v1/customers", key, form, "limited-create")
    assert replay.status == 200 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json["id"] == created.json["id"]

    # Sustained: over ~1.5 s at 20 requests/s about burst + rate * elapsed get through, the rest 429.
    await asyncio.sleep(burst / rate)  # full bucket again
    statuses = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 1.5:
        statuses.append((await call(http, base, "GET", "/v1/customers", key)).status)
        await asyncio.sleep(0.05)
    allowed = statuses.count(200)
    assert set(statuses) == {200, 429}
    assert burst <= allowed <= burst + math.ceil(rate * (loop.time() - started)) + 1, statuses
