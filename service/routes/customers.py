"""/v1/customers: create, search, list, retrieve (also `as_of`), update, delete."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

from ledgerd.domain.customer import DeleteCustomer, ledgers
from ledgerd.projections import reads
from ledgerd.projections.objects import as_json, render_customer, render_deleted_customer
from ledgerd.projections.sql import Rows
from ledgerd.service import expand, params, pointintime, search
from ledgerd.service.appkeys import ACCOUNT, CONFIG, LIVEMODE, list_pool_of, pool_of
from ledgerd.service.errors import json_response
from ledgerd.service.fidelity import settings_of
from ledgerd.service.ids import new_id
from ledgerd.service.routes import paging
from ledgerd.service.routes.plumbing import (
    Renderer,
    caller_now_us,
    customer_missing,
    expanded_list,
    expansion_of,
    list_expansion,
    path_id,
    pop_as_of,
    read_only_expand,
    read_params,
    run_command,
)

CUSTOMER_LIST_FILTERS = frozenset({"email", "created", "test_clock"})

routes = web.RouteTableDef()


def customer_object(row: Mapping[str, Any], tree: expand.Tree) -> dict[str, Any]:
    """The customer object of a `customers` row, with what `tree` expands (the deleted stub if deleted)."""
    if row["deleted"]:
        return render_deleted_customer(row["id"])
    return expand.expand_customer(render_customer(row), tree, as_json(row["balances"]))


def customer_renderer(tree: expand.Tree) -> Renderer:
    def render(rows: Rows) -> dict[str, Any]:
        [row] = (row for (table, _), row in rows.items() if table == "customers")
        return customer_object(row, tree)

    return render


async def find_customer(request: web.Request, customer_id: str) -> Any:
    """The request's account's `customers` row of this id (deleted or not), or None."""
    return await reads.find_customer(pool_of(request), request[ACCOUNT], request[LIVEMODE], customer_id)


def customer_loader(request: web.Request) -> expand.CustomerLoader:
    """The customer object of this account by id (each loaded once per request)."""
    loaded: dict[str, tuple[dict[str, Any], Mapping[str, int]] | None] = {}

    async def load(customer_id: str) -> tuple[dict[str, Any], Mapping[str, int]] | None:
        if customer_id not in loaded:
            row = await find_customer(request, customer_id)
            loaded[customer_id] = (
                None if row is None else (customer_object(row, {}), as_json(row["balances"]))
            )
        return loaded[customer_id]

    return load


def invoice_prefix() -> str:
    return secrets.token_hex(4).upper()


@routes.post("/v1/customers")
async def create_customer(request: web.Request) -> web.Response:
    payload = await read_params(request)
    tree = expansion_of(payload, expand.CUSTOMER)
    command = params.customer_create(
        payload,
        customer_id=new_id("cus_", 14),
        transaction_id=new_id("cbtxn_", 24),
        invoice_prefix=invoice_prefix(),
        occurred_at_us=caller_now_us(request),
        account=request[ACCOUNT],
        livemode=request[LIVEMODE],
        default_currency=settings_of(request).default_currency,
    )
    return await run_command(request, command, payload, customer_renderer(tree))


@routes.get("/v1/customers/search")  # before /v1/customers/{customer}: routes match in order
async def search_customers(request: web.Request) -> web.Response:
    options = params.search_params(await read_params(request))
    tree = list_expansion(request, options.expand, expand.CUSTOMER_LIST, search=True)
    lag_s = request.app[CONFIG].search_lag_s
    found = await search.find(
        pool_of(request),
        request[ACCOUNT],
        request[LIVEMODE],
        search.parse(options.query),
        # eventually consistent, like Stripe's: a customer written in the last lag_s is not found yet
        written_before_s=caller_now_us(request) / 1_000_000 - lag_s if lag_s else None,
        page=search.decode_page(options.page) if options.page else None,
        limit=options.limit,
        with_total_count="total_count" in tree,  # every match, whatever the page
    )
    body = {
        "object": "search_result",
        "data": [customer_object(row, tree.get("data", {})) for row in found.rows],
        "has_more": found.has_more,
        "next_page": found.next_page,
        "url": "/v1/customers/search",
    }
    return await expanded_list(body, tree, None, found.total_count)


@routes.get("/v1/customers")
async def list_customers(request: web.Request) -> web.Response:
    options = params.list_params(await read_params(request), filters=CUSTOMER_LIST_FILTERS)
    tree = list_expansion(request, options.expand, expand.CUSTOMER_LIST)
    where = [
        request[ACCOUNT],
        request[LIVEMODE],
        *paging.created_bounds(options.created),
        options.test_clock is not None,  # no customer belongs to a test clock (test_clock is always null)
        options.email,
        request.app[CONFIG].strict,  # Stripe matches the list filter `email` case-sensitively
    ]
    page = await paging.fetch_page(
        list_pool_of(request), reads.CUSTOMERS, options, where, with_total_count="total_count" in tree
    )
    items = [customer_object(row, tree.get("data", {})) for row in page.rows]
    body = {"object": "list", "data": items, "has_more": page.has_more, "url": "/v1/customers"}
    return await expanded_list(body, tree, None, page.total_count)


@routes.get("/v1/customers/{customer}")
async def retrieve_customer(request: web.Request) -> web.Response:
    payload, tree = await read_only_expand(request, expand.CUSTOMER, allow=frozenset({"as_of"}))
    customer_id = path_id(request, "customer", "id")
    as_of = pop_as_of(payload)
    if as_of is not None:
        async with pool_of(request).acquire() as conn:
            past = await pointintime.customer_state_as_of(
                conn, request[ACCOUNT], request[LIVEMODE], customer_id, as_of
            )
        if past is None:
            raise customer_missing(customer_id)
        then = expand.expand_customer(pointintime.render_state(past), tree, ledgers(past))
        return json_response(200, msgspec.json.encode(then))
    row = await find_customer(request, customer_id)
    if row is None:
        raise customer_missing(customer_id)
    return json_response(200, msgspec.json.encode(customer_object(row, tree)))


@routes.post("/v1/customers/{customer}")
async def update_customer(request: web.Request) -> web.Response:
    payload = await read_params(request)
    tree = expansion_of(payload, expand.CUSTOMER)
    command = params.customer_update(
        payload,
        customer_id=path_id(request, "customer", "id"),
        transaction_id=new_id("cbtxn_", 24),
        occurred_at_us=caller_now_us(request),
        default_currency=settings_of(request).default_currency,
    )
    return await run_command(request, command, payload, customer_renderer(tree))


@routes.delete("/v1/customers/{customer}")
async def delete_customer(request: web.Request) -> web.Response:
    payload, _ = await read_only_expand(request, expand.CUSTOMER)  # a deleted stub expands nothing
    command = DeleteCustomer(
        customer_id=path_id(request, "customer", "id"), occurred_at=caller_now_us(request)
    )
    return await run_command(request, command, payload, customer_renderer({}))
