"""HTTP mapping of the Stripe Customers, Customer Balance Transactions and Events endpoints.

Each write handler turns a request into one command and runs it through `service.commands.handle`;
the response body is rendered from the projection rows the command itself computed (and wrote). Handlers
hold no try/except: `service.errors.error_middleware` maps every failure.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from ledgerd.domain.customer import DeleteCustomer
from ledgerd.domain.errors import InvalidParameter, ResourceMissing
from ledgerd.projections.objects import render_balance_transaction, render_customer, render_deleted_customer
from ledgerd.projections.sql import Rows
from ledgerd.service import audit, forms, params, search
from ledgerd.service.commands.handle import handle
from ledgerd.service.commands.idempotency import IdempotencyRequest
from ledgerd.service.commands.plan import CommandRequest, Executable, Outcome, RequestContext, new_id
from ledgerd.service.errors import StripeError, domain_error_response, json_response
from ledgerd.service.store.postgres import PostgresEventStore
from ledgerd.service.webhooks import events as webhook_events

MAX_IDEMPOTENCY_KEY = 255
CUSTOMER_LIST_FILTERS = frozenset({"email", "created", "test_clock"})
TRANSACTION_LIST_FILTERS = frozenset({"created", "invoice"})
EVENT_LIST_FILTERS = frozenset({"type", "types", "created", "delivery_success"})

routes = web.RouteTableDef()

# ---------------------------------------------------------------------------------------------------
# request plumbing
# ---------------------------------------------------------------------------------------------------


def now_us() -> int:
    return time.time_ns() // 1000


def store_of(request: web.Request) -> PostgresEventStore:
    store: PostgresEventStore = request.app["store"]
    return store


def pool_of(request: web.Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app["pool"]
    return pool


async def read_params(request: web.Request) -> dict[str, Any]:
    if request.method in ("GET", "DELETE", "HEAD"):
        return forms.parse_query(request.rel_url.raw_query_string)
    body = await request.read()
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


async def read_only_expand(request: web.Request, *, allow: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Params of an endpoint that takes nothing but ``expand`` (retrieve, delete) and the names in `allow`:
    anything else is a 400."""
    payload = await read_params(request)
    for name in payload:
        if name != "expand" and name not in allow:
            raise InvalidParameter(
                f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
            )
    params.check_expand(payload)
    return payload


def context_of(request: web.Request) -> RequestContext:
    return RequestContext(
        account=request["account"],
        livemode=request["livemode"],
        occurred_at_us=now_us(),
        request_id=request["request_id"],
        api_key_id=request["api_key_id"],
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


def respond(outcome: Outcome, request: web.Request) -> web.Response:
    headers: dict[str, str] = {}
    key = request.headers.get("Idempotency-Key")
    if key:
        headers["Idempotency-Key"] = key.strip()
    if outcome.replayed:
        request["replayed"] = True
        request.app["metrics"].idempotent_replays.inc()
        headers["Idempotent-Replayed"] = "true"
        original = outcome.original_request_id
        if original:
            headers["Original-Request"] = original
        if outcome.status >= 400:
            headers["Stripe-Should-Retry"] = "false"
    else:
        request.app["metrics"].events_appended.inc(len(outcome.events))
    return json_response(outcome.status, outcome.response, headers)


Renderer = Callable[[Rows], dict[str, Any]]


async def run_command(
    request: web.Request, command: Executable, payload: dict[str, Any], render: Renderer
) -> web.Response:
    outcome = await handle(
        request.app["runner"],
        CommandRequest(
            command,
            context_of(request),
            idempotency_of(request, payload),
            render=render,
            render_error=domain_error_response,
        ),
    )
    return respond(outcome, request)


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
        request["account"],
        request["livemode"],
    )
    return row


def render_customer_of(rows: Rows) -> dict[str, Any]:
    [row] = (row for (table, _), row in rows.items() if table == "customers")
    if row["deleted"]:
        return render_deleted_customer(row["id"])
    return render_customer(row)


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
# customers
# ---------------------------------------------------------------------------------------------------


@routes.post("/v1/customers")
async def create_customer(request: web.Request) -> web.Response:
    payload = await read_params(request)
    command = params.customer_create(
        payload,
        customer_id=new_id("cus_", 14),
        transaction_id=new_id("cbtxn_", 24),
        invoice_prefix=invoice_prefix(),
        occurred_at_us=now_us(),
        account=request["account"],
        livemode=request["livemode"],
    )
    return await run_command(request, command, payload, render_customer_of)


@routes.get("/v1/customers/search")
async def search_customers(request: web.Request) -> web.Response:
    options = params.search_params(await read_params(request))
    where, values = search.compile(search.parse(options.query), first_param=3)
    sql = f"SELECT * FROM customers WHERE account = $1 AND livemode = $2 AND NOT deleted AND ({where})"
    arguments: list[Any] = [request["account"], request["livemode"], *values]
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
        "data": [render_customer(row) for row in rows],
        "has_more": has_more,
        "next_page": next_page,
        "url": "/v1/customers/search",
    }
    return json_response(200, msgspec.json.encode(body))


@routes.get("/v1/customers")
async def list_customers(request: web.Request) -> web.Response:
    options = params.list_params(await read_params(request), filters=CUSTOMER_LIST_FILTERS)
    query = PagedQuery("customers", "customer", request)
    query.where("NOT deleted")
    if options.email is not None:
        query.where("lower(email) = lower({})", options.email)
    if options.test_clock is not None:
        query.where("false")  # no customer belongs to a test clock (test_clock is always null)
    query.created(options.created)
    rows, has_more = await query.fetch(pool_of(request), options)
    return json_response(200, list_body("/v1/customers", [render_customer(row) for row in rows], has_more))


@routes.get("/v1/customers/{customer}")
async def retrieve_customer(request: web.Request) -> web.Response:
    payload = await read_only_expand(request, allow=frozenset({"as_of"}))
    customer_id = path_id(request, "customer", "id")
    as_of = pop_as_of(payload)
    if as_of is not None:
        async with pool_of(request).acquire() as conn:
            past = await audit.customer_as_of(
                conn, request["account"], request["livemode"], customer_id, as_of
            )
        if past is None:
            raise customer_missing(customer_id)
        return json_response(200, msgspec.json.encode(past))
    row = await customer_row(pool_of(request), request, customer_id)
    if row is None:
        raise customer_missing(customer_id)
    body = render_deleted_customer(customer_id) if row["deleted"] else render_customer(row)
    return json_response(200, msgspec.json.encode(body))


@routes.post("/v1/customers/{customer}")
async def update_customer(request: web.Request) -> web.Response:
    payload = await read_params(request)
    command = params.customer_update(
        payload,
        customer_id=path_id(request, "customer", "id"),
        transaction_id=new_id("cbtxn_", 24),
        occurred_at_us=now_us(),
    )
    return await run_command(request, command, payload, render_customer_of)


@routes.delete("/v1/customers/{customer}")
async def delete_customer(request: web.Request) -> web.Response:
    payload = await read_only_expand(request)
    command = DeleteCustomer(customer_id=path_id(request, "customer", "id"), occurred_at=now_us())
    return await run_command(request, command, payload, render_customer_of)


# ---------------------------------------------------------------------------------------------------
# balance transactions
# ---------------------------------------------------------------------------------------------------


@routes.post("/v1/customers/{customer}/balance_transactions")
async def create_balance_transaction(request: web.Request) -> web.Response:
    payload = await read_params(request)
    transaction_id = new_id("cbtxn_", 24)
    command = params.balance_transaction_create(
        payload,
        customer_id=path_id(request, "customer", "customer"),
        transaction_id=transaction_id,
        occurred_at_us=now_us(),
    )
    return await run_command(request, command, payload, transaction_renderer(transaction_id))


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
    if as_of is not None:
        return await balance_transactions_then(request, customer_id, as_of, options)
    await require_customer(request, customer_id)
    query = PagedQuery("balance_transactions", "customer balance transaction", request)
    query.where("customer_id = {}", customer_id)
    query.cursor_scope["customer_id"] = customer_id
    if options.invoice is not None:
        query.where("false")  # no transaction is linked to an invoice (invoice is always null)
    query.created(options.created)
    rows, has_more = await query.fetch(pool_of(request), options)
    url = f"/v1/customers/{customer_id}/balance_transactions"
    return json_response(200, list_body(url, [render_balance_transaction(row) for row in rows], has_more))


async def balance_transactions_then(
    request: web.Request, customer_id: str, as_of: int, options: params.ListParams
) -> web.Response:
    """The ledger as it stood at `as_of`, folded from the log (an extension); pages like the live list."""
    account, livemode = request["account"], request["livemode"]
    async with pool_of(request).acquire() as conn:
        customer = await audit.customer_as_of(conn, account, livemode, customer_id, as_of)
        if customer is None or customer.get("deleted"):
            raise customer_missing(customer_id, "customer")
        items = await audit.balance_transactions_as_of(conn, account, livemode, customer_id, as_of)
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
    return json_response(200, list_body(url, page, has_more))


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
    """Every event of the customer in order, with what each changed (an extension)."""
    await read_only_expand(request)
    customer_id = path_id(request, "customer", "id")
    async with pool_of(request).acquire() as conn:
        entries = await audit.customer_history(conn, request["account"], request["livemode"], customer_id)
    if not entries:
        raise customer_missing(customer_id)
    url = f"/v1/customers/{customer_id}/history"
    return json_response(200, list_body(url, entries, False))


@routes.get("/v1/customers/{customer}/balance_transactions/{transaction}")
async def retrieve_balance_transaction(request: web.Request) -> web.Response:
    await read_only_expand(request)
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
    return json_response(200, msgspec.json.encode(render_balance_transaction(row)))


@routes.post("/v1/customers/{customer}/balance_transactions/{transaction}")
async def update_balance_transaction(request: web.Request) -> web.Response:
    payload = await read_params(request)
    transaction_id = path_id(request, "transaction", "transaction")
    command = params.balance_transaction_update(
        payload,
        customer_id=path_id(request, "customer", "customer"),
        transaction_id=transaction_id,
        occurred_at_us=now_us(),
    )
    return await run_command(request, command, payload, transaction_renderer(transaction_id))


# ---------------------------------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------------------------------


def render_event(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "event",
        "account": row["account"],
        "api_version": None,
        "created": row["created"],
        "data": msgspec.json.decode(row["data"]),
        "livemode": row["livemode"],
        "pending_webhooks": 0,
        "request": msgspec.json.decode(row["request"]),
        "type": row["type"],
    }


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    options = params.list_params(await read_params(request), filters=EVENT_LIST_FILTERS)
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
        request["account"],
        request["livemode"],
    )
    if row is None:
        raise ResourceMissing(f"No such event: '{event_id}'", param="id")
    return row


@routes.get("/v1/events/{event}")
async def retrieve_event(request: web.Request) -> web.Response:
    await read_only_expand(request)
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
        self.values: list[Any] = [request["account"], request["livemode"]]
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
    await pool_of(request).fetchval("SELECT 1")
    return json_response(200, b'{"status":"ready"}')
