"""Per API key rate limiting: a token bucket per key, in the memory of one service process.

Off unless `LEDGER_RATE_LIMIT_RPS` is set (> 0). Each authenticated key gets a bucket of
`LEDGER_RATE_LIMIT_BURST` tokens (default: the rate rounded up, at least 1), refilled at RPS tokens per
second; a request takes one token. A request finding the bucket empty is answered at once with Stripe's
429 `rate_limit` error and a `Retry-After` (whole seconds until a token is back), before the idempotency
layer sees it: a rate-limited request is not executed and not recorded, so the client retries it later with
the same Idempotency-Key and it runs then.

The middleware runs after authentication (the bucket belongs to the key, and a wrong key is a 401, never a
429) and before the handlers; public paths (health, metrics, the OpenAPI document) have no key and are
never limited. Limits are per process: N service processes allow N times the rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ledgerd.service.appkeys import API_KEY_ID
from ledgerd.service.errors import StripeError

RATE_LIMIT_MESSAGE = (
    "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests."
)
MAX_BUCKETS = 10_000  # full buckets are forgotten beyond this (a full bucket is the same as no bucket)


@dataclass
class Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """`take(key)` -> 0.0 when a token was taken, else the seconds until one will be available."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self.buckets: dict[str, Bucket] = {}

    def take(self, key: str) -> float:
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self.forget_full(now)
            bucket = self.buckets[key] = Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def forget_full(self, now: float) -> None:
        full = [
            key
            for key, bucket in self.buckets.items()
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.burst
        ]
        for key in full:
            del self.buckets[key]


def rate_limited(wait_s: float) -> StripeError:
    return StripeError(
        429,
        RATE_LIMIT_MESSAGE,
        code="rate_limit",
        headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        should_retry=True,
    )


def rate_limit_middleware(limiter: TokenBucketLimiter) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        key_id = request.get(API_KEY_ID)
        if key_id is not None:
            wait_s = limiter.take(key_id)
            if wait_s > 0:
                raise rate_limited(wait_s)
        return await handler(request)

    return middleware


def limiter_for(rate: float, burst: int) -> TokenBucketLimiter | None:
    """The limiter configured by LEDGER_RATE_LIMIT_RPS / _BURST, or None when rate limiting is off."""
    if rate <= 0:
        return None
    return TokenBucketLimiter(rate, burst if burst > 0 else math.ceil(rate))
