"""Test mode of `ledgerd serve --ephemeral`: accounts from keys, per-account clocks, the `/_ledger/` API.

* Any well-formed ``sk_test_…`` key is accepted, and each distinct key is its own account: a test that
  mints a random key sees nothing of any other test, so parallel tests never collide. ``sk_live_`` keys
  are refused. No key is stored: the account id is a hash of the key and its *reset epoch*.
* ``POST /_ledger/reset`` bumps the caller's epoch: the key then names a new, empty account
  (``all=true``: a new generation for every key, e.g. between suites sharing a server). The event log
  is append-only, so the old account's data is not deleted, only unreachable (the database is thrown away
  when the server stops anyway).
* ``POST /_ledger/clock`` freezes (``frozen_time``, unix seconds) or moves forward (``advance``, seconds)
  the caller's clock; every write of the account is dated by it (``created``, events, ``as_of``).
* ``GET /_ledger/requests``: the caller's recent requests, newest first (in memory, bounded).
* Webhooks: endpoints a test registers are delivered for real (loopback receivers allowed, retries after
  1, 2, 4 s: service/webhooks/config.py). ``POST /_ledger/webhooks`` turns on *collect mode* for the caller's
  account: an endpoint for every event (``*``) whose URL is `COLLECT_URL`. The real dispatcher and
  workers deliver to it, rendering and signing each event as for any endpoint, but the worker hands the
  signed request (body and headers) to `TestMode.intercept` instead of sending it: it is kept in memory
  and read at ``GET /_ledger/webhooks`` (the caller's account only, oldest first, bounded), and recorded
  as a delivered attempt like a 200.

State lives in this process only: it is as ephemeral as the database.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from ledgerd.domain.errors import InvalidParameter
from ledgerd.service.appkeys import ACCOUNT, LIVEMODE, REQUEST_ID, TEST_MODE, pool_of
from ledgerd.service.auth import ApiKey, hash_secret, masked, secret_from_header
from ledgerd.service.errors import StripeError, json_response
from ledgerd.service.webhooks.delivery import Outcome
from ledgerd.service.webhooks.signing import new_secret

CONTROL_PREFIX = "/_ledger/"
TEST_KEY = re.compile(r"sk_test_[A-Za-z0-9_]{1,240}")
REQUESTS_KEPT = 200  # per account
ACCOUNTS_KEPT = 10_000  # accounts with a request log or a clock (least recently used dropped first)
MAX_CLOCK_S = 253_402_300_799  # 9999-12-31T23:59:59Z
WEBHOOKS_KEPT = 500  # collected deliveries per account (the oldest dropped first)
# The URL of collect-mode endpoints: never sent to (.invalid never resolves, RFC 2606, should a server
# that is not ephemeral ever claim one of their deliveries).
COLLECT_URL = "https://collect.ledger.invalid/"
COLLECTED = b"collected by the ephemeral ledger: GET /_ledger/webhooks"


class Bounded(OrderedDict[str, Any]):
    """A dict that forgets its least recently used entries beyond `limit`."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def touch(self, key: str, default: Any) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        self[key] = default
        while len(self) > self.limit:
            self.popitem(last=False)
        return default


@dataclass
class Clock:
    """An account's clock: the wall clock shifted by `offset_us`, or stopped at `frozen_us`."""

    offset_us: int = 0
    frozen_us: int | None = None

    def now_us(self) -> int:
        return self.frozen_us if self.frozen_us is not None else time.time_ns() // 1000 + self.offset_us


class TestMode:
    def __init__(self) -> None:
        self.generation = 0  # bumped by a reset of everything: every key then names a new account
        self.epochs: dict[bytes, int] = {}
        self.clocks: Bounded = Bounded(ACCOUNTS_KEPT)
        self.requests: Bounded = Bounded(ACCOUNTS_KEPT)
        self.webhooks: Bounded = Bounded(ACCOUNTS_KEPT)
        self.collected = itertools.count(1)

    # -- accounts -----------------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> ApiKey:
        secret = secret_from_header(authorization)
        if secret.startswith("sk_live_"):
            raise StripeError(
                401,
                f"Live mode keys are refused by an ephemeral ledger: {masked(secret)}. Use any sk_test_ key.",
            )
        if not TEST_KEY.fullmatch(secret):
            raise StripeError(
                401,
                f"Invalid API Key provided: {masked(secret)}. An ephemeral ledger accepts any key of the "
                "form sk_test_ followed by 1 to 240 letters, digits or underscores.",
            )
        digest = hash_secret(secret)
        epoch = f"{self.generation}.{self.epochs.get(digest, 0)}".encode()
        account = "acct_" + hashlib.sha256(digest + b"\x00" + epoch).hexdigest()[:16]
        return ApiKey(id="key_" + digest.hex()[:16], account=account, livemode=False, secret_hash=digest)

    def reset(self, authorization: str | None, *, everything: bool = False) -> str:
        if everything:
            self.generation += 1
            self.epochs.clear()
            self.clocks.clear()
            self.requests.clear()
            self.webhooks.clear()
        else:
            digest = hash_secret(secret_from_header(authorization))
            self.epochs[digest] = self.epochs.get(digest, 0) + 1
        return self.authenticate(authorization).account

    # -- clocks -------------------------------------------------------------------------------------

    def now_us(self, account: str) -> int:
        clock = self.clocks.get(account)
        return clock.now_us() if clock is not None else time.time_ns() // 1000

    def clock(self, account: str) -> Clock:
        clock: Clock = self.clocks.touch(account, Clock())
        return clock

    # -- request log --------------------------------------------------------------------------------

    def record(self, account: str, entry: dict[str, Any]) -> None:
        log: deque[dict[str, Any]] = self.requests.touch(account, deque(maxlen=REQUESTS_KEPT))
        log.append(entry)

    # -- collected webhooks -------------------------------------------------------------------------

    def intercept(self, row: Any, body: bytes, headers: dict[str, str]) -> Outcome | None:
        """Keep a claimed delivery to `COLLECT_URL` (exactly the signed request that would be sent) instead
        of sending it; any other delivery is sent (None)."""
        if row["url"] != COLLECT_URL:
            return None
        kept: deque[dict[str, Any]] = self.webhooks.touch(row["account"], deque(maxlen=WEBHOOKS_KEPT))
        kept.append(
            {
                "id": f"whcol_{next(self.collected)}",
                "object": "ledger.webhook_delivery",
                "endpoint": row["endpoint_id"],
                "event": row["id"],
                "type": row["type"],
                "attempt": row["attempts"],
                "created": int(time.time()),
                "headers": headers,
                "body": body.decode(),
            }
        )
        return Outcome(200, None, 0, COLLECTED)


def test_mode_of(request: web.Request) -> TestMode | None:
    mode: TestMode | None = request.app.get(TEST_MODE)
    return mode


def request_log_middleware(mode: TestMode) -> Any:
    """Outside the error middleware, so failures are recorded with the status the client saw."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        account = request.get(ACCOUNT)
        if account is not None and not request.path.startswith(CONTROL_PREFIX):
            mode.record(
                account,
                {
                    "id": request.get(REQUEST_ID),
                    "object": "ledger.request",
                    "method": request.method,
                    "path": request.path,
                    "query": request.rel_url.raw_query_string,
                    "status": response.status,
                    "idempotency_key": request.headers.get("Idempotency-Key"),
                    "created": mode.now_us(account) // 1_000_000,
                },
            )
        return response

    return middleware


# -- the control API --------------------------------------------------------------------------------

control_routes = web.RouteTableDef()


def mode_of(request: web.Request) -> TestMode:
    mode: TestMode = request.app[TEST_MODE]  # the routes are only added together with the test mode
    return mode


async def form_of(request: web.Request, allowed: frozenset[str]) -> dict[str, str]:
    from ledgerd.service import forms

    body = await request.read()
    values = forms.parse_form(body) if body else forms.parse_query(request.rel_url.raw_query_string)
    for name, value in values.items():
        if name not in allowed:
            raise InvalidParameter(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")
        if not isinstance(value, str):
            raise InvalidParameter(f"Invalid {name}: expected a single value", param=name)
    return values


def whole_number(values: dict[str, str], name: str, maximum: int = MAX_CLOCK_S) -> int | None:
    raw = values.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) > maximum:
        raise InvalidParameter(
            f"Invalid {name}: {raw!r} (a whole number, 0 to {maximum})",
            param=name,
            code="parameter_invalid_integer",
        )
    return int(raw)


def clock_body(account: str, clock: Clock | None) -> bytes:
    now_us = clock.now_us() if clock is not None else time.time_ns() // 1000
    frozen = clock is not None and clock.frozen_us is not None
    return msgspec.json.encode(
        {"object": "ledger.clock", "account": account, "now": now_us // 1_000_000, "frozen": frozen}
    )


@control_routes.post("/_ledger/reset")
async def reset(request: web.Request) -> web.Response:
    """The caller's account only; ``all=true``: every account (every key then starts empty)."""
    values = await form_of(request, frozenset({"all"}))
    if values.get("all", "false") not in ("true", "false"):
        raise InvalidParameter("Invalid boolean: use all=true or all=false", param="all")
    everything = values.get("all") == "true"
    account = mode_of(request).reset(request.headers.get("Authorization"), everything=everything)
    return json_response(200, msgspec.json.encode({"object": "ledger.reset", "account": account}))


@control_routes.get("/_ledger/clock")
async def read_clock(request: web.Request) -> web.Response:
    account = request[ACCOUNT]
    return json_response(200, clock_body(account, mode_of(request).clocks.get(account)))


@control_routes.post("/_ledger/clock")
async def set_clock(request: web.Request) -> web.Response:
    """``frozen_time=T`` stops the clock at T; ``frozen_time=`` (empty) lets it run on from where it stands;
    ``advance=S`` moves it S seconds forward (frozen or not). Both may be given: freeze, then advance."""
    values = await form_of(request, frozenset({"frozen_time", "advance"}))
    if not values:
        raise InvalidParameter("Give frozen_time (unix seconds) and/or advance (seconds).", param="advance")
    account = request[ACCOUNT]
    mode = mode_of(request)
    clock = mode.clock(account)
    advance = whole_number(values, "advance") or 0
    if values.get("frozen_time") == "":
        stood = clock.now_us()
        clock.frozen_us = None
        clock.offset_us = stood - time.time_ns() // 1000
    else:
        frozen = whole_number(values, "frozen_time")
        if frozen is not None:
            clock.frozen_us = frozen * 1_000_000
    if clock.frozen_us is not None:
        clock.frozen_us += advance * 1_000_000
    else:
        clock.offset_us += advance * 1_000_000
    return json_response(200, clock_body(account, clock))


@control_routes.get("/_ledger/requests")
async def recent_requests(request: web.Request) -> web.Response:
    values = await form_of(request, frozenset({"limit"}))
    limit = whole_number(values, "limit", REQUESTS_KEPT) if "limit" in values else 100
    if not limit:
        raise InvalidParameter(f"Invalid limit: use 1 to {REQUESTS_KEPT}", param="limit")
    log = mode_of(request).requests.get(request[ACCOUNT]) or ()
    items = list(reversed(log))[:limit]
    body = {"object": "list", "data": items, "has_more": len(log) > limit, "url": "/_ledger/requests"}
    return json_response(200, msgspec.json.encode(body))


SQL_COLLECTOR = """
INSERT INTO webhook_endpoints (id, account, livemode, url, enabled_events, description, secret, created)
VALUES ($1, $2, $3, $4, ARRAY['*'], 'ledgerd collect mode (/_ledger/webhooks)', $5, $6)
ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, enabled_events = EXCLUDED.enabled_events, status = 'enabled',
    disabled_reason = NULL, failing_since = NULL, deleted = false, updated_at = now()
RETURNING id, secret, xmax = 0 AS inserted
"""
# From the beginning of time when new (whatever the account's test clock says, every event of the account
# is collected from now on); from now when an endpoint that was disabled or deleted is enabled again.
SQL_COLLECT_ALL = """
INSERT INTO webhook_subscriptions (endpoint_id, valid_from, enabled_events, active)
VALUES ($1, CASE WHEN $2 THEN '-infinity'::timestamptz ELSE now() END, ARRAY['*'], true)
"""


def collector_id(account: str, livemode: bool) -> str:
    return "we_collect" + hashlib.sha256(f"{account}\x00{livemode}".encode()).hexdigest()[:24]


@control_routes.post("/_ledger/webhooks")
async def collect_webhooks(request: web.Request) -> web.Response:
    """Turn on collect mode for the caller's account (the same endpoint and secret on every call)."""
    await form_of(request, frozenset())
    account, livemode = request[ACCOUNT], request[LIVEMODE]
    async with pool_of(request).acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            SQL_COLLECTOR, collector_id(account, livemode), account, livemode, COLLECT_URL, new_secret(),
            mode_of(request).now_us(account) // 1_000_000,
        )
        await conn.execute(SQL_COLLECT_ALL, row["id"], row["inserted"])
    body = {
        "object": "ledger.webhook_collector",
        "account": account,
        "endpoint": row["id"],
        "url": COLLECT_URL,
        "secret": row["secret"],
        "enabled_events": ["*"],
    }
    return json_response(200, msgspec.json.encode(body))


@control_routes.get("/_ledger/webhooks")
async def collected_webhooks(request: web.Request) -> web.Response:
    """The caller's collected deliveries, oldest first (the last `WEBHOOKS_KEPT`)."""
    await form_of(request, frozenset())
    kept = mode_of(request).webhooks.get(request[ACCOUNT]) or ()
    body = {"object": "list", "data": list(kept), "has_more": False, "url": "/_ledger/webhooks"}
    return json_response(200, msgspec.json.encode(body))
