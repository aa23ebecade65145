"""Beyond Stripe (extensions, documented as such in the README and /openapi.json):

* ``POST /v1/events/{event}/retry`` (``webhook_endpoint``): send one event to one endpoint again, now.
* ``POST /v1/webhook_endpoints/{id}/recover`` (``since``, optional ``until``, unix seconds): deliver again
  every event of that range the endpoint subscribes to now: the log is permanent, so a new endpoint can be
  backfilled from the beginning.
* ``POST /v1/webhook_endpoints/{id}/roll_secret`` (``expire_previous_in`` <= 86400 s): a new secret; the
  previous one keeps signing (one ``v1`` each) until it expires.
* ``GET /v1/webhook_endpoints/{id}/attempts`` and ``GET /v1/events/{event}/attempts``: every attempt, newest
  first, in Stripe's list shape.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from aiohttp import web

from ledgerd.domain.errors import InvalidParameter, ResourceMissing
from ledgerd.projections.objects import render_event
from ledgerd.service.appkeys import ACCOUNT, LIVEMODE, WEBHOOK_DELIVERER, pool_of
from ledgerd.service.errors import json_response
from ledgerd.service.params import _limit
from ledgerd.service.routes.events import find_event
from ledgerd.service.routes.plumbing import list_body, path_id, read_params
from ledgerd.service.scalars import NO_PARAMS
from ledgerd.service.scalars import check_keys as _check_keys
from ledgerd.service.scalars import integer as _integer
from ledgerd.service.scalars import opt_string as _opt_string
from ledgerd.service.scalars import required as _required
from ledgerd.service.scalars import unset as _unset
from ledgerd.service.webhooks import events as webhook_events
from ledgerd.service.webhooks.endpoints import endpoint_path_id, endpoint_row, render_endpoint
from ledgerd.service.webhooks.signing import new_secret

routes = web.RouteTableDef()

MAX_SECRET_OVERLAP_S = 86_400
MAX_UNIX = 2**53 - 1
ATTEMPT_PREFIX = "wha_"

SQL_RETRY = """
UPDATE webhook_deliveries SET state = 'pending', due_at = now(), manual = true
WHERE event_id = $1 AND endpoint_id = $2
RETURNING id
"""
SQL_RECOVER = """
INSERT INTO webhook_deliveries
    (event_id, endpoint_id, account, livemode, event_position, event_seq, event_recorded_at, due_at, manual)
SELECT s.id, w.id, s.account, s.livemode, s.position, s.seq, e.recorded_at, now(), true
FROM webhook_endpoints w
JOIN stripe_events s ON s.account = w.account AND s.livemode = w.livemode
JOIN events e ON e.position = s.position
WHERE w.id = $1 AND s.created >= $2 AND s.created < $3
  AND (s.type = ANY (w.enabled_events) OR '*' = ANY (w.enabled_events))
ON CONFLICT (event_id, endpoint_id) DO UPDATE SET state = 'pending', due_at = now(), manual = true
    WHERE webhook_deliveries.state <> 'pending'
"""


def wake(request: web.Request) -> None:
    deliverer = request.app.get(WEBHOOK_DELIVERER)
    if deliverer is not None:
        deliverer.wake()


@routes.post("/v1/events/{event}/retry")
async def retry_event(request: web.Request) -> web.Response:
    payload = await read_params(request)
    _check_keys(payload, frozenset({"webhook_endpoint", "expand"}), NO_PARAMS, "")
    endpoint_id = _opt_string(_required(payload, "webhook_endpoint", ""), "webhook_endpoint") or ""
    row = await find_event(request, path_id(request, "event", "id"))
    async with pool_of(request).acquire() as conn, conn.transaction():
        endpoint = await conn.fetchrow(
            "SELECT status FROM webhook_endpoints WHERE id = $1 AND account = $2 AND livemode = $3 AND NOT deleted",
            endpoint_id, request[ACCOUNT], request[LIVEMODE],
        )
        if endpoint is None:
            raise ResourceMissing(f"No such webhook endpoint: '{endpoint_id}'", param="webhook_endpoint")
        if endpoint["status"] != "enabled":
            raise InvalidParameter("The webhook endpoint is disabled; enable it first.", param="webhook_endpoint")
        if await conn.fetchval(SQL_RETRY, row["id"], endpoint_id) is None:
            raise InvalidParameter(
                f"The webhook endpoint {endpoint_id} was not subscribed to {row['id']} when it was created; "
                "use POST /v1/webhook_endpoints/{id}/recover to send it events of a time range.",
                param="webhook_endpoint",
            )
    wake(request)
    [event] = await webhook_events.with_pending(pool_of(request), [render_event(row)])
    return json_response(200, msgspec.json.encode(event))


def unix_time(payload: dict[str, Any], name: str) -> int | None:
    if _unset(payload.get(name)):
        return None
    value = _integer(payload[name], name)
    if not 0 <= value <= MAX_UNIX:
        raise InvalidParameter(f"Invalid {name}: a unix time in seconds.", param=name)
    return value


@routes.post("/v1/webhook_endpoints/{webhook_endpoint}/recover")
async def recover_endpoint(request: web.Request) -> web.Response:
    payload = await read_params(request)
    _check_keys(payload, frozenset({"since", "until", "expand"}), NO_PARAMS, "")
    _required(payload, "since", "")
    since = unix_time(payload, "since") or 0
    until = unix_time(payload, "until")
    if until is not None and until <= since:
        raise InvalidParameter("until must be later than since.", param="until")
    endpoint_id = endpoint_path_id(request)
    async with pool_of(request).acquire() as conn, conn.transaction():
        endpoint = await endpoint_row(conn, request, endpoint_id, lock=True)
        status = await conn.execute(SQL_RECOVER, endpoint_id, since, MAX_UNIX if until is None else until)
    wake(request)
    body = {
        "object": "webhook_endpoint_recovery",
        "webhook_endpoint": endpoint["id"],
        "since": since,
        "until": until,
        "deliveries": int(status.split()[-1]),
    }
    return json_response(200, msgspec.json.encode(body))


@routes.post("/v1/webhook_endpoints/{webhook_endpoint}/roll_secret")
async def roll_secret(request: web.Request) -> web.Response:
    payload = await read_params(request)
    _check_keys(payload, frozenset({"expire_previous_in", "expand"}), NO_PARAMS, "")
    overlap = 0 if _unset(payload.get("expire_previous_in")) else _integer(payload["expire_previous_in"], "expire_previous_in")
    if not 0 <= overlap <= MAX_SECRET_OVERLAP_S:
        raise InvalidParameter(
            f"Invalid expire_previous_in: 0 to {MAX_SECRET_OVERLAP_S} seconds.", param="expire_previous_in"
        )
    endpoint_id = endpoint_path_id(request)
    async with pool_of(request).acquire() as conn, conn.transaction():
        await endpoint_row(conn, request, endpoint_id, lock=True)
        row = await conn.fetchrow(
            """UPDATE webhook_endpoints SET previous_secret = secret, secret = $2,
                   previous_secret_expires_at = now() + make_interval(secs => $3), updated_at = now()
               WHERE id = $1 RETURNING *""",
            endpoint_id, new_secret(), float(overlap),
        )
    return json_response(200, msgspec.json.encode(render_endpoint(row, with_secret=True)))


def unix_or_none(moment: dt.datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def render_attempt(row: Any) -> dict[str, Any]:
    return {
        "id": f"{ATTEMPT_PREFIX}{row['id']}",
        "object": "webhook_attempt",
        "created": int(row["at"].timestamp()),
        "event": row["event_id"],
        "webhook_endpoint": row["endpoint_id"],
        "status_code": row["status_code"],
        "error": row["error"],
        "latency_ms": row["latency_ms"],
        "response": bytes(row["response"]).decode("utf-8", "replace"),
        "next_attempt_at": unix_or_none(row["next_attempt_at"]),
        "manual": row["manual"],
    }


def attempt_cursor(payload: dict[str, Any]) -> int | None:
    raw = payload.get("starting_after")
    if _unset(raw):
        return None
    text = _opt_string(raw, "starting_after") or ""
    number = text.removeprefix(ATTEMPT_PREFIX)
    if not text.startswith(ATTEMPT_PREFIX) or not number.isdigit() or len(number) > 18:
        raise InvalidParameter(f"No such webhook attempt: '{text[:40]}'", param="starting_after", code="resource_missing")
    return int(number)


async def attempts_page(request: web.Request, column: str, value: str, url: str) -> web.Response:
    payload = await read_params(request)
    _check_keys(payload, frozenset({"limit", "starting_after", "expand"}), NO_PARAMS, "")
    limit = _limit(payload)
    cursor = attempt_cursor(payload)
    rows = await pool_of(request).fetch(
        f"""SELECT * FROM webhook_attempts WHERE {column} = $1 AND ($2::bigint IS NULL OR id < $2)
            ORDER BY id DESC LIMIT $3""",
        value, cursor, limit + 1,
    )
    items = [render_attempt(row) for row in rows[:limit]]
    return json_response(200, list_body(url, items, len(rows) > limit))


@routes.get("/v1/webhook_endpoints/{webhook_endpoint}/attempts")
async def endpoint_attempts(request: web.Request) -> web.Response:
    endpoint_id = endpoint_path_id(request)
    await endpoint_row(pool_of(request), request, endpoint_id)
    return await attempts_page(request, "endpoint_id", endpoint_id, f"/v1/webhook_endpoints/{endpoint_id}/attempts")


@routes.get("/v1/events/{event}/attempts")
async def event_attempts(request: web.Request) -> web.Response:
    row = await find_event(request, path_id(request, "event", "id"))
    return await attempts_page(request, "event_id", row["id"], f"/v1/events/{row['id']}/attempts")
