"""/v1/customers/{customer}/balance_transactions: create, list (also `as_of`), retrieve, update."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from ledgerd.domain.errors import ResourceMissing
from ledgerd.projections import reads
from ledgerd.projections.objects import render_balance_transaction
from ledgerd.projections.sql import Rows
from ledgerd.service import expand, params, pointintime
from ledgerd.service.appkeys import ACCOUNT, LIVEMODE, list_pool_of, pool_of
from ledgerd.service.errors import json_response
from ledgerd.service.ids import new_id
from ledgerd.service.routes import paging
from ledgerd.service.routes.customers import customer_loader, find_customer
from ledgerd.service.routes.plumbing import (
    Expander,
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

TRANSACTION_LIST_FILTERS = frozenset({"created", "invoice"})
NOUN = "customer balance transaction"

routes = web.RouteTableDef()


def transaction_missing(transaction_id: str) -> ResourceMissing:
    return ResourceMissing(f"No such {NOUN}: '{transaction_id}'", param="transaction")


def transaction_renderer(transaction_id: str) -> Renderer:
    def render(rows: Rows) -> dict[str, Any]:
        row = rows.get(("balance_transactions", transaction_id))
        if row is None:  # decided on a ledger entry that does not exist: rejected before rendering
            raise transaction_missing(transaction_id)
        return render_balance_transaction(row)

    return render


def transaction_expander(request: web.Request, tree: expand.Tree) -> Expander | None:
    if not tree:
        return None
    load = customer_loader(request)

    async def run(body: dict[str, Any]) -> dict[str, Any]:
        return await expand.expand_transaction(body, tree, load)

    return run


async def require_customer(request: web.Request, customer_id: str) -> None:
    row = await find_customer(request, customer_id)
    if row is None or row["deleted"]:
        raise customer_missing(customer_id, "customer")


@routes.post("/v1/customers/{customer}/balance_transactions")
async def create_balance_transaction(request: web.Request) -> web.Response:
    payload = await read_params(request)
    tree = expansion_of(payload, expand.BALANCE_TRANSACTION)
    transaction_id = new_id("cbtxn_", 24)
    command = params.balance_transaction_create(
        payload,
        customer_id=path_id(request, "customer", "customer"),
        transaction_id=transaction_id,
        occurred_at_us=caller_now_us(request),
    )
    expander = transaction_expander(request, tree)
    return await run_command(request, command, payload, transaction_renderer(transaction_id), expander)


@routes.get("/v1/customers/{customer}/balance_transactions")
async def list_balance_transactions(request: web.Request) -> web.Response:
    customer_id = path_id(request, "customer", "customer")
    payload = await read_params(request)
    as_of = pop_as_of(payload)
    options = params.list_params(payload, filters=TRANSACTION_LIST_FILTERS)
    tree = list_expansion(request, options.expand, expand.BALANCE_TRANSACTION_LIST)
    if as_of is not None:
        return await balance_transactions_then(request, customer_id, as_of, options, tree)
    await require_customer(request, customer_id)
    where = [
        request[ACCOUNT],
        request[LIVEMODE],
        customer_id,
        *paging.created_bounds(options.created),
        options.invoice is not None,  # no transaction is linked to an invoice (invoice is always null)
    ]
    page = await paging.fetch_page(
        list_pool_of(request),
        reads.BALANCE_TRANSACTIONS,
        options,
        where,
        (customer_id,),
        with_total_count="total_count" in tree,
    )
    url = f"/v1/customers/{customer_id}/balance_transactions"
    items = [render_balance_transaction(row) for row in page.rows]
    body = {"object": "list", "data": items, "has_more": page.has_more, "url": url}
    expander = transaction_expander(request, tree.get("data", {}))
    return await expanded_list(body, tree, expander, page.total_count)


async def balance_transactions_then(
    request: web.Request, customer_id: str, as_of: int, options: params.ListParams, tree: expand.Tree
) -> web.Response:
    """The ledger as it stood at `as_of`, folded from the log (an extension); pages like the live list."""
    account, livemode = request[ACCOUNT], request[LIVEMODE]
    async with pool_of(request).acquire() as conn:
        customer = await pointintime.customer_as_of(conn, account, livemode, customer_id, as_of)
        if customer is None or customer.get("deleted"):
            raise customer_missing(customer_id, "customer")
        items = await pointintime.balance_transactions_as_of(conn, account, livemode, customer_id, as_of)
    page, has_more, matched = paging.page_of_items(items, options, NOUN)
    url = f"/v1/customers/{customer_id}/balance_transactions"
    body = {"object": "list", "data": page, "has_more": has_more, "url": url}
    total_count = matched if "total_count" in tree else None
    return await expanded_list(body, tree, transaction_expander(request, tree.get("data", {})), total_count)


@routes.get("/v1/customers/{customer}/balance_transactions/{transaction}")
async def retrieve_balance_transaction(request: web.Request) -> web.Response:
    _, tree = await read_only_expand(request, expand.BALANCE_TRANSACTION)
    customer_id = path_id(request, "customer", "customer")
    transaction_id = path_id(request, "transaction", "transaction")
    await require_customer(request, customer_id)
    row = await reads.find_balance_transaction(pool_of(request), customer_id, transaction_id)
    if row is None:
        raise transaction_missing(transaction_id)
    body = render_balance_transaction(row)
    expander = transaction_expander(request, tree)
    return json_response(200, msgspec.json.encode(body if expander is None else await expander(body)))


@routes.post("/v1/customers/{customer}/balance_transactions/{transaction}")
async def update_balance_transaction(request: web.Request) -> web.Response:
    payload = await read_params(request)
    tree = expansion_of(payload, expand.BALANCE_TRANSACTION)
    transaction_id = path_id(request, "transaction", "transaction")
    command = params.balance_transaction_update(
        payload,
        customer_id=path_id(request, "customer", "customer"),
        transaction_id=transaction_id,
        occurred_at_us=caller_now_us(request),
    )
    expander = transaction_expander(request, tree)
    return await run_command(request, command, payload, transaction_renderer(transaction_id), expander)
