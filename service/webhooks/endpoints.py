"""HTTP mapping of Stripe's Webhook Endpoints API (/v1/webhook_endpoints), form-encoded or JSON.

Endpoints are configuration, kept in ordinary tables (migrations/0012_webhooks.sql). Every change to
what an endpoint receives (enabled_events, disabled, delete) also appends a row to
`webhook_subscriptions`, so the dispatcher sends each event to the endpoints subscribed when the event
was recorded. `secret` is only in the create response. Subscriptions are dated by the caller's clock
(routes.plumbing.caller_now_us: an ephemeral ledger's account clock), the clock that dates the account's events, so an
endpoint created under a frozen test clock receives the events that follow.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from ledgerd.domain.customer import merge_metadata
from ledgerd.domain.errors import InvalidParameter, ResourceMissing
from ledgerd.projections.reads import Listing
from ledgerd.service import expand, params
from ledgerd.service.appkeys import ACCOUNT, LIVEMODE, WEBHOOK_CONFIG, list_pool_of, pool_of
from ledgerd.service.errors import json_response
from ledgerd.service.ids import random_token
from ledgerd.service.routes import paging
from ledgerd.service.routes.plumbing import caller_now_us, list_body, read_only_expand, read_params
from ledgerd.service.store.postgres import to_timestamp
from ledgerd.service.webhooks import idempotent
from ledgerd.service.webhooks import params as endpoint_params
from ledgerd.service.webhooks.config import WebhookConfig
from ledgerd.service.webhooks.signing import new_secret
from ledgerd.service.webhooks.sql import statements

routes = web.RouteTableDef()
ENDPOINTS = Listing("webhook endpoint", statements, "endpoint_cursor", "endpoints_page")

NO_FILTERS: frozenset[str] = frozenset()
SQL_SUBSCRIBE = """
INSERT INTO webhook_subscriptions (endpoint_id, valid_from, enabled_events, active) VALUES ($1, $2, $3, $4)
"""


def render_endpoint(row: Any, *, with_secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row["id"],
        "object": "webhook_endpoint",
        "api_version": row["api_version"],
        "application": None,
        "created": row["created"],
        "description": row["description"],
        "enabled_events": list(row["enabled_events"]),
        "livemode": row["livemode"],
        "metadata": msgspec.json.decode(row["metadata"]) if isinstance(row["metadata"], str) else row["metadata"],
        "status": row["status"],
        "url": row["url"],
    }
    if with_secret:
        body["secret"] = row["secret"]
    return body


def config_of(request: web.Request) -> WebhookConfig:
    config: WebhookConfig = request.app[WEBHOOK_CONFIG]
    return config


def endpoint_path_id(request: web.Request) -> str:
    value = request.match_info["webhook_endpoint"]
    if "\x00" in value:
        shown = value.replace("\x00", "\\x00")
        raise ResourceMissing(f"No such webhook endpoint: '{shown}'", param="id")
    return value


async def endpoint_row(conn: Any, request: web.Request, endpoint_id: str, *, lock: bool = False) -> Any:
    row = await conn.fetchrow(
        "SELECT * FROM webhook_endpoints WHERE id = $1 AND account = $2 AND livemode = $3 AND NOT deleted"
        + (" FOR UPDATE" if lock else ""),
        endpoint_id,
        request[ACCOUNT],
        request[LIVEMODE],
    )
    if row is None:
        raise ResourceMissing(f"No such webhook endpoint: '{endpoint_id}'", param="id")
    return row


@routes.post("/v1/webhook_endpoints")
async def create_endpoint(request: web.Request) -> web.Response:
    payload = await read_params(request)
    config = config_of(request)
    spec = endpoint_params.endpoint_create(payload, livemode=request[LIVEMODE], allow=config.allow_cidrs)
    endpoint_id = "we_" + random_token(24)
    secret = new_secret()
    at_us = caller_now_us(request)
    account, livemode = request[ACCOUNT], request[LIVEMODE]
    async with pool_of(request).acquire() as conn, conn.transaction():
        key, replayed = await idempotent.begin(conn, request, payload)
        if replayed is not None:
            return replayed
        # One creator at a time per account and mode, so the limit holds under concurrent creates.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"webhooks:{account}:{livemode}")
        count = await conn.fetchval(
            "SELECT count(*) FROM webhook_endpoints WHERE account = $1 AND livemode = $2 AND NOT deleted",
            account,
            livemode,
        )
        if count >= endpoint_params.MAX_ENDPOINTS:
            raise InvalidParameter(
                f"You have reached the maximum of {endpoint_params.MAX_ENDPOINTS} webhook endpoints in this "
                "mode; delete one before creating another.",
                param="url",
                code="webhook_endpoint_limit_reached",
            )
        row = await conn.fetchrow(
            """INSERT INTO webhook_endpoints
                   (id, account, livemode, url, enabled_events, description, metadata, api_version, secret, created)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10) RETURNING *""",
            endpoint_id,
            account,
            livemode,
            spec.url,
            list(spec.enabled_events),
            spec.description,
            msgspec.json.encode(spec.metadata).decode(),
            spec.api_version,
            secret,
            at_us // 1_000_000,
        )
        await conn.execute(SQL_SUBSCRIBE, endpoint_id, to_timestamp(at_us), list(spec.enabled_events), True)
        return await idempotent.finish(conn, request, key, msgspec.json.encode(render_endpoint(row, with_secret=True)))


@routes.get("/v1/webhook_endpoints")
async def list_endpoints(request: web.Request) -> web.Response:
    options = params.list_params(await read_params(request), filters=NO_FILTERS)
    expand.parse(options.expand, expand.EVENT_LIST)  # a list of endpoints: nothing is expandable
    where = [request[ACCOUNT], request[LIVEMODE]]
    page = await paging.fetch_page(list_pool_of(request), ENDPOINTS, options, where)
    items = [render_endpoint(row) for row in page.rows]
    return json_response(200, list_body("/v1/webhook_endpoints", items, page.has_more))


@routes.get("/v1/webhook_endpoints/{webhook_endpoint}")
async def retrieve_endpoint(request: web.Request) -> web.Response:
    await read_only_expand(request, expand.NOTHING)
    row = await endpoint_row(pool_of(request), request, endpoint_path_id(request))
    return json_response(200, msgspec.json.encode(render_endpoint(row)))


@routes.post("/v1/webhook_endpoints/{webhook_endpoint}")
async def update_endpoint(request: web.Request) -> web.Response:
    payload = await read_params(request)
    endpoint_id = endpoint_path_id(request)
    change = endpoint_params.endpoint_update(
        payload, livemode=request[LIVEMODE], allow=config_of(request).allow_cidrs
    )
    at_us = caller_now_us(request)
    async with pool_of(request).acquire() as conn, conn.transaction():
        key, replayed = await idempotent.begin(conn, request, payload)
        if replayed is not None:
            return replayed
        row = await endpoint_row(conn, request, endpoint_id, lock=True)
        values: dict[str, Any] = {
            "url": row["url"],
            "enabled_events": list(row["enabled_events"]),
            "description": row["description"],
            "metadata": msgspec.json.decode(row["metadata"]),
            "status": row["status"],
            "disabled_reason": row["disabled_reason"],
            "failing_since": row["failing_since"],
        }
        if not isinstance(change.url, msgspec.UnsetType):
            values["url"] = change.url
        if not isinstance(change.enabled_events, msgspec.UnsetType):
            values["enabled_events"] = list(change.enabled_events)
        if not isinstance(change.description, msgspec.UnsetType):
            values["description"] = change.description
        if not isinstance(change.metadata, msgspec.UnsetType):
            values["metadata"] = merge_metadata(values["metadata"], change.metadata)
        if not isinstance(change.disabled, msgspec.UnsetType):
            if change.disabled:
                values["status"], values["disabled_reason"] = "disabled", "manual"
            elif row["status"] == "disabled":  # re-enabled: pending retries resume, the failure clock restarts
                values["status"], values["disabled_reason"], values["failing_since"] = "enabled", None, None
        updated = await conn.fetchrow(
            """UPDATE webhook_endpoints SET url = $2, enabled_events = $3, description = $4, metadata = $5::jsonb,
                   status = $6, disabled_reason = $7, failing_since = $8, updated_at = now()
               WHERE id = $1 RETURNING *""",
            endpoint_id,
            values["url"],
            values["enabled_events"],
            values["description"],
            msgspec.json.encode(values["metadata"]).decode(),
            values["status"],
            values["disabled_reason"],
            values["failing_since"],
        )
        if values["enabled_events"] != list(row["enabled_events"]) or values["status"] != row["status"]:
            await conn.execute(
                SQL_SUBSCRIBE, endpoint_id, to_timestamp(at_us), values["enabled_events"], values["status"] == "enabled"
            )
        return await idempotent.finish(conn, request, key, msgspec.json.encode(render_endpoint(updated)))


@routes.delete("/v1/webhook_endpoints/{webhook_endpoint}")
async def delete_endpoint(request: web.Request) -> web.Response:
    payload, _ = await read_only_expand(request, expand.NOTHING)
    endpoint_id = endpoint_path_id(request)
    at_us = caller_now_us(request)
    async with pool_of(request).acquire() as conn, conn.transaction():
        key, replayed = await idempotent.begin(conn, request, payload)
        if replayed is not None:
            return replayed
        row = await endpoint_row(conn, request, endpoint_id, lock=True)
        await conn.execute("UPDATE webhook_endpoints SET deleted = true, updated_at = now() WHERE id = $1", endpoint_id)
        await conn.execute(SQL_SUBSCRIBE, endpoint_id, to_timestamp(at_us), list(row["enabled_events"]), False)
        await conn.execute(
            "UPDATE webhook_deliveries SET state = 'canceled' WHERE endpoint_id = $1 AND state = 'pending'", endpoint_id
        )
        body = {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}
        return await idempotent.finish(conn, request, key, msgspec.json.encode(body))
