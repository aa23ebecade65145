"""/v1/events: list and retrieve (the feed projection, with the webhook delivery counts)."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from ledgerd.domain.errors import ResourceMissing
from ledgerd.projections import reads
from ledgerd.projections.objects import render_event
from ledgerd.service import expand, params
from ledgerd.service.appkeys import ACCOUNT, LIVEMODE, list_pool_of, pool_of
from ledgerd.service.errors import json_response
from ledgerd.service.routes import paging
from ledgerd.service.routes.plumbing import list_body, path_id, read_only_expand, read_params
from ledgerd.service.webhooks import events as webhook_events

EVENT_LIST_FILTERS = frozenset({"type", "types", "created", "delivery_success"})

routes = web.RouteTableDef()


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    options = params.list_params(await read_params(request), filters=EVENT_LIST_FILTERS)
    expand.parse(options.expand, expand.EVENT_LIST)
    prefix = options.type is not None and options.type.endswith("*")  # `type=customer.*`
    where: list[Any] = [
        request[ACCOUNT],
        request[LIVEMODE],
        None if prefix else options.type,
        options.type[:-1] if prefix and options.type is not None else None,
        None if options.types is None else list(options.types),
        options.delivery_success,  # webhooks: still pending or failed to some endpoint, or not
        *paging.created_bounds(options.created),
    ]
    page = await paging.fetch_page(list_pool_of(request), reads.EVENTS, options, where)
    events = await webhook_events.with_pending(pool_of(request), [render_event(row) for row in page.rows])
    return json_response(200, list_body("/v1/events", events, page.has_more))


async def find_event(request: web.Request, event_id: str) -> asyncpg.Record:
    """The account's (and mode's) feed row of an event, or a 404."""
    row = await reads.find_event(pool_of(request), request[ACCOUNT], request[LIVEMODE], event_id)
    if row is None:
        raise ResourceMissing(f"No such event: '{event_id}'", param="id")
    return row


@routes.get("/v1/events/{event}")
async def retrieve_event(request: web.Request) -> web.Response:
    await read_only_expand(request, expand.NOTHING)
    row = await find_event(request, path_id(request, "event", "id"))
    [event] = await webhook_events.with_pending(pool_of(request), [render_event(row)])
    return json_response(200, msgspec.json.encode(event))
