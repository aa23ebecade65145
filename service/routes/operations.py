"""Operational endpoints: /healthz, /readyz, and a customer's history (an extension)."""

from __future__ import annotations

from aiohttp import web

from ledgerd.service import expand, history, params
from ledgerd.service.appkeys import ACCOUNT, DATABASE, LIVEMODE, POOL, pool_of
from ledgerd.service.errors import json_response, unavailable
from ledgerd.service.routes.plumbing import customer_missing, list_body, path_id, read_params

routes = web.RouteTableDef()


@routes.get("/v1/customers/{customer}/history")
async def customer_history(request: web.Request) -> web.Response:
    """The customer's events in order, oldest first, with what each changed (an extension); paged
    like every list (`limit`, `starting_after` / `ending_before` an entry's id)."""
    options = params.list_params(await read_params(request), filters=frozenset())
    expand.parse(options.expand, expand.NOTHING)  # nothing in a history entry is expandable: a 400
    customer_id = path_id(request, "customer", "id")
    async with pool_of(request).acquire() as conn:
        page = await history.history_page(
            conn,
            request[ACCOUNT],
            request[LIVEMODE],
            customer_id,
            limit=options.limit,
            starting_after=options.starting_after,
            ending_before=options.ending_before,
        )
    if page is None:
        raise customer_missing(customer_id)
    url = f"/v1/customers/{customer_id}/history"
    return json_response(200, list_body(url, page.entries, page.has_more))


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response(200, b'{"status":"ok"}')


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    if request.app[POOL] is None:  # still connecting (or migrating) in the background
        problem = request.app[DATABASE].problem or "connecting to the database"
        raise unavailable(f"Not ready: {problem}.")
    await pool_of(request).fetchval("SELECT 1")
    return json_response(200, b'{"status":"ready"}')
