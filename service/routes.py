"""HTTP mapping of the Stripe Customers, Customer Balance Transactions and Events endpoints.

Each write handler turns a request into one command and runs it through `service.commands.handle`;
the response body is rendered from the projection rows the command itself computed (and wrote). Handlers
hold no try/except: `service.errors.error_middleware` maps every failure.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from ledgerd.domain.customer import DeleteCustomer, ledgers
from ledgerd.domain.errors import InvalidParameter, ResourceMissing
from ledgerd.projections.objects import (
    as_json,
    render_balance_transaction,
    render_customer,
    render_deleted_customer,
    render_event,
)
from ledgerd.projections.sql import Rows
from ledgerd.service import expand, forms, history, params, pointintime, search, versions
from ledgerd.service.appkeys import (
    ACCOUNT,
    API_KEY_ID,
    CONFIG,
    DATABASE,
    LIVEMODE,
    METRICS,
    POOL,
    REPLAYED,
    REQUEST_ID,
    RUNNER,
    STORE,
    TEST_MODE,
)
from ledgerd.service.commands.handle import handle
from ledgerd.service.commands.idempotency import IdempotencyRequest
from ledgerd.service.commands.requests import CommandRequest, Executable, Outcome, RequestContext
from ledgerd.service.errors import StripeError, domain_error_response, json_response, unavailable
from ledgerd.service.fidelity import api_version_of, settings_of, versioned_params
from ledgerd.service.ids import new_id
from ledgerd.service.store.postgres import PostgresEventStore
from ledgerd.service.transport import read_body
from ledgerd.service.webhooks import events as webhook_events

MAX_IDEMPOTENCY_KEY = 255
CUSTOMER_LIST_FILTERS = frozenset({"email", "created", "test_clock"})
TRANSACTION_LIST_FILTERS = frozenset({"created", "invoice"})
EVENT_LIST_FILTERS = frozenset({"type", "types", "created", "delivery_success"})

routes = web.RouteTableDef()

# ---------------------------------------------------------------------------------------------------
# request plumbing
# ---------------------------------------------------------------------------------------------------


def now_us(request: web.Request) -> int:
    """The caller's clock: the wall clock, or the account's test clock on an ephemeral ledger."""
    test_mode = request.app.get(TEST_MODE)
    if test_mode is not None:
        now: int = test_mode.now_us(request[ACCOUNT])
        return now
    return time.time_ns() // 1000


def store_of(request: web.Request) -> PostgresEventStore:
    store: PostgresEventStore = request.app[STORE]
    return store


def pool_of(request: web.Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app[POOL]
    return pool


async def read_params(request: web.Request) -> dict[str, Any]:
    return versioned_params(request, await parsed_params(request))  # params named as this version names them


async def parsed_params(request: web.Request) -> dict[str, Any]:
    if request.method in ("GET", "DELETE", "HEAD"):
        return forms.parse_query(request.rel_url.raw_query_string)
    body = await read_body(request)
    if not body:
        return forms.parse_query(request.rel_url.raw_query_string) if request.method == "DELETE" else {}
    if request.content_type == "application/json":
        return forms.parse_json(body)
    return forms.parse_form(body)


def pop_as_of(payload: dict[str, Any]) -> int | None:
    """The `as_of` extension: unix seconds; the object as it was at the end of that second."""
    raw = payload.pop("as_of", None)
    if raw is None:
        return None
    if not isinstance(raw, str | int) or isinstance(raw, bool) or not str(raw).isdigit():
        raise InvalidParameter(f"Invalid integer: {raw}", param="as_of", code="parameter_invalid_integer")
    value = int(raw)
    if value >= 2**53:
        raise InvalidParameter("as_of must be a unix time in seconds.", param="as_of")
    return value


async def read_only_expand(
    request: web.Request, root: expand.Node, *, allow: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], expand.Tree]:
    """Params of an endpoint that takes nothing but ``expand`` (retrieve, delete) and the names in `allow`:
    anything else is a 400. Returns the params and the expansion `root` allows."""
    payload = await read_params(request)
    for name in payload:
        if name != "expand" and name not in allow:
            raise InvalidParameter(
                f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
            )
    return payload, expansion_of(payload, root)


def context_of(request: web.Request) -> RequestContext:
    return RequestContext(
        account=request[ACCOUNT],
        livemode=request[LIVEMODE],
        occurred_at_us=now_us(request),
        request_id=request[REQUEST_ID],
        api_key_id=request[API_KEY_ID],
        # The database's clock (plan.py, recording_time), except on an ephemeral ledger: one process owns its
        # database there, and the account's test clock (frozen or advanced by the test) must date its events.
        store_clock=request.app.get(TEST_MODE) is None,
    )


def idempotency_of(request: web.Request, payload: dict[str, Any]) -> IdempotencyRequest | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not (key.isascii() and key.isprintable()):
        raise StripeError(
            400,
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters.",
            code="idempotency_key_invalid",
            param="Idempotency-Key",
        )
    return IdempotencyRequest(key=key, method=request.method, path=request.path, params=payload)


def respond(outcome: Outcome, request: web.Request, body: bytes | None = None) -> web.Response:
    headers: dict[str, str] = {}
    key = request.headers.get("Idempotency-Key")
    if key:
        headers["Idempotency-Key"] = key.strip()
    if outcome.replayed:
        request[REPLAYED] = True
        request.app[METRICS].idempotent_replays.inc()
        headers["Idempotent-Replayed"] = "true"
        original = outcome.original_request_id
        if original:
            headers["Original-Request"] = original
        if outcome.status >= 400:
            headers["Stripe-Should-Retry"] = "false"
    else:
        request.app[METRICS].events_appended.inc(len(outcome.events))
    return json_response(outcome.status, outcome.response if body is None else body, headers)


Renderer = Callable[[Rows], dict[str, Any]]
Expander = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def run_command(
    request: web.Request,
    command: Executable,
    payload: dict[str, Any],
    render: Renderer,
    expander: Expander | None = None,
) -> web.Response:
    outcome = await handle(
        request.app[RUNNER],
        CommandRequest(
            command,
            context_of(request),
            idempotency_of(request, payload),
            render=render,
            render_error=domain_error_response,
        ),
    )
    if expander is None or outcome.status != 200:
        return respond(outcome, request)
    expanded = await expander(msgspec.json.decode(outcome.response))  # the stored response stays unexpanded
    return respond(outcome, request, msgspec.json.encode(expanded))


PATH_NOUNS = {"customer": "customer", "transaction": "customer balance transaction", "event": "event"}


def path_id(request: web.Request, name: str, param: str) -> str:
    """A path segment naming an object. PostgreSQL text cannot hold NUL, so such an id names nothing."""
    value = request.match_info[name]
    if "\x00" in value:
        shown = value.replace("\x00", "\\x00")
        raise ResourceMissing(f"No such {PATH_NOUNS[name]}: '{shown}'", param=param)
    return value


def customer_missing(customer_id: str, param: str = "id") -> ResourceMissing:
    return ResourceMissing(f"No such customer: '{customer_id}'", param=param)


async def customer_row(conn: Any, request: web.Request, customer_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM customers WHERE id = $1 AND account = $2 AND livemode = $3",
        customer_id,
        request[ACCOUNT],
        request[LIVEMODE],
    )
    return row


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


def transaction_renderer(transaction_id: str) -> Renderer:
    def render(rows: Rows) -> dict[str, Any]:
        row = rows.get(("balance_transactions", transaction_id))
        if row is None:  # decided on a ledger entry that does not exist: rejected before rendering
            raise ResourceMissing(f"No such customer balance transaction: '{transaction_id}'", param="transaction")
        return render_balance_transaction(row)

    return render


def invoice_prefix() -> str:
    return secrets.token_hex(4).upper()


def list_body(url: str, items: list[dict[str, Any]], has_more: bool) -> bytes:
    return msgspec.json.encode({"object": "list", "data": items, "has_more": has_more, "url": url})


# ---------------------------------------------------------------------------------------------------
# expand[] (issue 13): what each response may expand is declared in service/expand.py
# ---------------------------------------------------------------------------------------------------


def expansion_of(payload: dict[str, Any], root: expand.Node) -> expand.Tree:
    """The paths of `expand` as a tree; a 400 naming `expand` for one `root` cannot expand."""
    return expand.parse(params.check_expand(payload), root)


def customer_loader(request: web.Request) -> expand.CustomerLoader:
    """The customer object of this account by id (each loaded once per request)."""
    loaded: dict[str, tuple[dict[str, Any], Mapping[str, int]] | None] = {}

    async def load(customer_id: str) -> tuple[dict[str, Any], Mapping[str, int]] | None:
        if customer_id not in loaded:
            row = await customer_row(pool_of(request), request, customer_id)
            loaded[customer_id] = None if row is None else (customer_object(row, {}), as_json(row["balances"]))
        return loaded[customer_id]

    return load


def transaction_expander(request: web.Request, tree: expand.Tree) -> Expander | None:
    if not tree:
        return None
    load = customer_loader(request)

    async def run(body: dict[str, Any]) -> dict[str, Any]:
        return await expand.expand_transaction(body, tree, load)

    return run


def list_expansion(
    request: web.Request, paths: tuple[str, ...], root: expand.Node, *, search: bool = False
) -> expand.Tree:
    tree = expand.parse(paths, root)
    if "total_count" in tree and not search and not versions.list_total_count_allowed(api_version_of(request)):
        raise InvalidParameter(
            "total_count can no longer be expanded on lists (API version 2025-03-31.basil and later); "
            "page with has_more instead.",
            param="expand",
            code="property_forbidden",
        )
    return tree


async def expanded_list(
    body: dict[str, Any], tree: expand.Tree, expander: Expander | None, total_count: int | None
) -> web.Response:
    if expander is not None and "data" in tree:
        body = dict(body, data=[await expander(item) for item in body["data"]])
    if total_count is not None:
        body["total_count"] = total_count
    return json_response(200, msgspec.json.encode(body))


# ---------------------------------------------------------------------------------------------------
# customers
# ---------------------------------------------------------------------------------------------------


@routes.post("/v1/customers")
async def create_customer(request: web.Request) -> web.Response:
    payload = await read_params(request)
    tree = expansion_of(payload, expand.CUSTOMER)
    command = params.customer_create(
        payload,
        customer_id=new_id("cus_", 14),
        transaction_id=new_id("cbtxn_", 24),
        invoice_prefix=invoice_prefix(),
        occurred_at_us=now_us(request),
        account=request[ACCOUNT],
        livemode=request[LIVEMODE],
        default_currency=settings_of(request).default_currency,
    )
    return await run_command(request, command, payload, customer_renderer(tree))


@routes.get("/v1/customers/search")
async def search_customers(request: web.Request) -> web.Response:
    options = params.search_params(await read_params(request))
    tree = list_expansion(request, options.expand, expand.CUSTOMER_LIST, search=True)
    where, values = search.compile(search.parse(options.query), first_param=3)
    sql = f"SELECT * FROM customers WHERE account = $1 AND livemode = $2 AND NOT deleted AND ({where})"
    arguments: list[Any] = [request[ACCOUNT], request[LIVEMODE], *values]
    lag_s = request.app[CONFIG].search_lag_s
    if lag_s:  # eventually consistent, like Stripe's: a customer written in the last lag_s is not found yet
        arguments.append(now_us(request) / 1_000_000 - lag_s)
        sql += (
            " AND NOT EXISTS (SELECT FROM events e WHERE e.stream_id = customers.id"
            f" AND e.recorded_at > to_timestamp(${len(arguments)}))"
        )
    total_count = None
    if "total_count" in tree:  # every match, whatever the page
        count_sql = sql.replace("SELECT *", "SELECT count(*)", 1)
        total_count = int(await pool_of(request).fetchval(count_sql, *arguments))
    if options.page:
        arguments.append(search.decode_page(options.page))
        sql += f" AND position < ${len(arguments)}"
    arguments.append(options.limit + 1)
    sql += f" ORDER BY position DESC LIMIT ${len(arguments)}"
    rows = await pool_of(request).fetch(sql, *arguments)
    has_more = len(rows) > options.limit
    rows = rows[: options.limit]
    next_page = search.encode_page(rows[-1]["position"]) if has_more and rows else None
    body = {
        "object": "search_result",
        "data": [customer_object(row, tree.get("data", {})) for row in rows],
        "has_more": has_more,
        "next_page": next_page,
        "url": "/v1/customers/search",
    }
    return await expanded_list(body, tree, None, total_count)


@routes.get("/v1/customers")
async def list_customers(request: web.Request) -> web.Response:
    options = params.list_params(await read_params(request), filters=CUSTOMER_LIST_FILTERS)
    tree = list_expansion(request, options.expand, expand.CUSTOMER_LIST)
    query = PagedQuery("customers", "customer", request)
    query.where("NOT deleted")
    if options.email is not None:
        if request.app[CONFIG].strict:  # Stripe matches the list filter `email` case-sensitively
            query.where("email = {}", options.email)
        else:
            query.where("lower(email) = lower({})", options.email)
    if options.test_clock is not None:
        query.where("false")  # no customer belongs to a test clock (test_clock is always null)
    query.created(options.created)
    total_count = await query.count(pool_of(request)) if "total_count" in tree else None
    rows, has_more = await query.fetch(pool_of(request), options)
    items = [customer_object(row, tree.get("data", {})) for row in rows]
    body = {"object": "list", "data": items, "has_more": has_more, "url": "/v1/customers"}
    return await expanded_list(body, tree, None, total_count)


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
    row = await customer_row(pool_of(request), request, customer_id)
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
        occurred_at_us=now_us(request),
        default_currency=settings_of(request).default_currency,
    )
    return await run_command(request, command, payload, customer_renderer(tree))


@routes.delete("/v1/customers/{customer}")
async def delete_customer(request: web.Request) -> web.Response:
    payload, _ = await read_only_expand(request, expand.CUSTOMER)  # a deleted stub expands nothing
    command = DeleteCustomer(customer_id=path_id(request, "customer", "id"), occurred_at=now_us(request))
    return await run_command(request, command, payload, customer_renderer({}))


# ---------------------------------------------------------------------------------------------------
# balance transactions
# ---------------------------------------------------------------------------------------------------


@routes.post("/v1/customers/{customer}/balance_transactions")
async def create_balance_transaction(request: web.Request) -> web.Response:
    payload = await read_params(request)
    tree = expansion_of(payload, expand.BALANCE_TRANSACTION)
    transaction_id = new_id("cbtxn_", 24)
    command = params.balance_transaction_create(
        payload,
        customer_id=path_id(request, "customer", "customer"),
        transaction_id=transaction_id,
        occurred_at_us=now_us(request),
    )
    expander = transaction_expander(request, tree)
    return await run_command(request, command, payload, transaction_renderer(transaction_id), expander)


async def require_customer(request: web.Request, customer_id: str) -> None:
    row = await customer_row(pool_of(request), request, customer_id)
    if row is None or row["deleted"]:
        raise customer_missing(customer_id, "customer")


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
    query = PagedQuery("balance_transactions", "customer balance transaction", request)
    query.where("customer_id = {}", customer_id)
    query.cursor_scope["customer_id"] = customer_id
    if options.invoice is not None:
        query.where("false")  # no transaction is linked to an invoice (invoice is always null)
    query.created(options.created)
    total_count = await query.count(pool_of(request)) if "total_count" in tree else None
    rows, has_more = await query.fetch(pool_of(request), options)
    url = f"/v1/customers/{customer_id}/balance_transactions"
    items = [render_balance_transaction(row) for row in rows]
    body = {"object": "list", "data": items, "has_more": has_more, "url": url}
    return await expanded_list(body, tree, transaction_expander(request, tree.get("data", {})), total_count)


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
    if options.created is not None:
        items = [item for item in items if within(item["created"], options.created)]
    ids = [item["id"] for item in items]
    start, stop = 0, len(items)
    if options.starting_after is not None:
        start = cursor_index(ids, options.starting_after, "starting_after") + 1
    elif options.ending_before is not None:
        stop = cursor_index(ids, options.ending_before, "ending_before")
        start = max(0, stop - options.limit)
    page = items[start : start + options.limit] if options.ending_before is None else items[start:stop]
    has_more = (start + len(page) < len(items)) if options.ending_before is None else start > 0
    url = f"/v1/customers/{customer_id}/balance_transactions"
    body = {"object": "list", "data": page, "has_more": has_more, "url": url}
    total_count = len(items) if "total_count" in tree else None
    return await expanded_list(body, tree, transaction_expander(request, tree.get("data", {})), total_count)


def within(created: int, bounds: params.CreatedRange) -> bool:
    return (
        (bounds.gt is None or created > bounds.gt)
        and (bounds.gte is None or created >= bounds.gte)
        and (bounds.lt is None or created < bounds.lt)
        and (bounds.lte is None or created <= bounds.lte)
    )


def cursor_index(ids: list[str], cursor: str, param: str) -> int:
    if cursor not in ids:
        raise InvalidParameter(
            f"No such customer balance transaction: '{cursor}'", param=param, code="resource_missing"
        )
    return ids.index(cursor)


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


@routes.get("/v1/customers/{customer}/balance_transactions/{transaction}")
async def retrieve_balance_transaction(request: web.Request) -> web.Response:
    _, tree = await read_only_expand(request, expand.BALANCE_TRANSACTION)
    customer_id = path_id(request, "customer", "customer")
    transaction_id = path_id(request, "transaction", "transaction")
    await require_customer(request, customer_id)
    row = await pool_of(request).fetchrow(
        "SELECT * FROM balance_transactions WHERE id = $1 AND customer_id = $2", transaction_id, customer_id
    )
    if row is None:
        raise ResourceMissing(
            f"No such customer balance transaction: '{transaction_id}'", param="transaction"
        )
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
        occurred_at_us=now_us(request),
    )
    expander = transaction_expander(request, tree)
    return await run_command(request, command, payload, transaction_renderer(transaction_id), expander)


# ---------------------------------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------------------------------


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    options = params.list_params(await read_params(request), filters=EVENT_LIST_FILTERS)
    expand.parse(options.expand, expand.EVENT_LIST)
    query = PagedQuery("stripe_events", "event", request)
    if options.type is not None:
        if options.type.endswith("*"):
            query.where("starts_with(type, {})", options.type[:-1])
        else:
            query.where("type = {}", options.type)
    if options.types is not None:
        query.where("type = ANY({}::text[])", list(options.types))
    if options.delivery_success is not None:  # webhooks: still pending or failed to some endpoint, or not
        query.where(("" if options.delivery_success is False else "NOT ") + webhook_events.UNDELIVERED)
    query.created(options.created)
    rows, has_more = await query.fetch(pool_of(request), options)
    events = await webhook_events.with_pending(pool_of(request), [render_event(row) for row in rows])
    return json_response(200, list_body("/v1/events", events, has_more))


async def event_row(request: web.Request, event_id: str) -> asyncpg.Record:
    """The account's (and mode's) feed row of an event, or a 404."""
    row: asyncpg.Record | None = await pool_of(request).fetchrow(
        "SELECT * FROM stripe_events WHERE id = $1 AND account = $2 AND livemode = $3",
        event_id,
        request[ACCOUNT],
        request[LIVEMODE],
    )
    if row is None:
        raise ResourceMissing(f"No such event: '{event_id}'", param="id")
    return row


@routes.get("/v1/events/{event}")
async def retrieve_event(request: web.Request) -> web.Response:
    await read_only_expand(request, expand.NOTHING)
    row = await event_row(request, path_id(request, "event", "id"))
    [event] = await webhook_events.with_pending(pool_of(request), [render_event(row)])
    return json_response(200, msgspec.json.encode(event))


# ---------------------------------------------------------------------------------------------------
# cursor pagination shared by the lists: newest first, ordered by log position (then seq for events)
# ---------------------------------------------------------------------------------------------------


class PagedQuery:
    def __init__(self, table: str, noun: str, request: web.Request) -> None:
        self.table = table
        self.noun = noun
        self.order = "position, seq" if table == "stripe_events" else "position"
        self.conditions = ["account = $1", "livemode = $2"]
        self.values: list[Any] = [request[ACCOUNT], request[LIVEMODE]]
        self.cursor_scope: dict[str, Any] = {}  # a cursor must be an object of this list, not just any

    def where(self, condition: str, *values: Any) -> None:
        placeholders = []
        for value in values:
            self.values.append(value)
            placeholders.append(f"${len(self.values)}")
        self.conditions.append(condition.format(*placeholders))

    def created(self, created: params.CreatedRange | None) -> None:
        if created is None:
            return
        for name, operator in (("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<=")):
            bound = getattr(created, name)
            if bound is not None:
                self.where(f"created {operator} {{}}", bound)

    async def count(self, pool: asyncpg.Pool) -> int:
        """How many objects the filters match, whatever the page (`expand[]=total_count`); before fetch."""
        sql = f"SELECT count(*) FROM {self.table} WHERE {' AND '.join(self.conditions)}"
        return int(await pool.fetchval(sql, *self.values))

    async def cursor(self, pool: asyncpg.Pool, object_id: str, param: str) -> None:
        scope = "".join(f" AND {column} = ${index}" for index, column in enumerate(self.cursor_scope, 4))
        row = await pool.fetchrow(
            f"SELECT {self.order} FROM {self.table} WHERE id = $1 AND account = $2 AND livemode = $3{scope}",
            object_id,
            self.values[0],
            self.values[1],
            *self.cursor_scope.values(),
        )
        if row is None:
            raise InvalidParameter(
                f"No such {self.noun}: '{object_id}'", param=param, code="resource_missing"
            )
        self.cursor_values = tuple(row)

    async def fetch(
        self, pool: asyncpg.Pool, options: params.ListParams
    ) -> tuple[list[asyncpg.Record], bool]:
        backwards = options.ending_before is not None and options.starting_after is None
        cursor_id = options.ending_before if backwards else options.starting_after
        if cursor_id is not None:
            await self.cursor(pool, cursor_id, "ending_before" if backwards else "starting_after")
            placeholders = []
            for value in self.cursor_values:
                self.values.append(value)
                placeholders.append(f"${len(self.values)}")
            comparison = ">" if backwards else "<"
            self.conditions.append(f"({self.order}) {comparison} ({', '.join(placeholders)})")
        direction = "ASC" if backwards else "DESC"
        order_by = ", ".join(f"{column.strip()} {direction}" for column in self.order.split(","))
        self.values.append(options.limit + 1)
        sql = (
            f"SELECT * FROM {self.table} WHERE {' AND '.join(self.conditions)} "
            f"ORDER BY {order_by} LIMIT ${len(self.values)}"
        )
        rows = list(await pool.fetch(sql, *self.values))
        has_more = len(rows) > options.limit
        rows = rows[: options.limit]
        if backwards:
            rows.reverse()
        return rows, has_more


# ---------------------------------------------------------------------------------------------------
# operations
# ---------------------------------------------------------------------------------------------------


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
