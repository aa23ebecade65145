"""Framework ceiling: the thinnest aiohttp + asyncpg app doing what the service's endpoints do at the
bottom, with the same stack as `ledgerd serve` (aiohttp, asyncpg pool min 2 / max 20 with its default
reset, the default asyncio loop, msgspec), and nothing else: no auth, no logging, no metrics.

    POST /insert/{id}      one INSERT per request (a durable commit), answers a small JSON object
    POST /crud/{id}        what a team would write instead of an event-sourced ledger: one transaction
                           per request, INSERT the ledger entry, UPSERT the balance; answers the entry
    GET  /customers/{id}   the service's retrieve query (same table, same WHERE), row encoded as JSON

    python -m bench.baselines.bare_app --port P --database-url URL --account ACCOUNT
"""

from __future__ import annotations

import argparse
import time

import asyncpg
import msgspec
from aiohttp import web

SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_bare_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id   text NOT NULL,
    data        jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
)
"""
CRUD_SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_bare_entries (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id text NOT NULL,
    amount      bigint NOT NULL,
    currency    text NOT NULL,
    description text,
    created     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bench_bare_balances (
    id      text PRIMARY KEY,
    balance bigint NOT NULL,
    version bigint NOT NULL
)
"""
CRUD_ENTRY = """INSERT INTO bench_bare_entries (customer_id, amount, currency, description)
VALUES ($1, $2, $3, $4) RETURNING id, extract(epoch FROM created)::bigint AS created"""
CRUD_BALANCE = """INSERT INTO bench_bare_balances (id, balance, version) VALUES ($1, $2, 1)
ON CONFLICT (id) DO UPDATE SET balance = bench_bare_balances.balance + excluded.balance,
                               version = bench_bare_balances.version + 1
RETURNING balance"""
POOL: web.AppKey[asyncpg.Pool] = web.AppKey("pool")
INSERT = "INSERT INTO bench_bare_events (stream_id, data) VALUES ($1, $2::jsonb) RETURNING id"
SELECT = "SELECT * FROM customers WHERE id = $1 AND account = $2 AND livemode = $3"


def build(database_url: str, account: str) -> web.Application:
    app = web.Application()

    async def pool_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        pool = await asyncpg.create_pool(database_url, min_size=2, max_size=20)
        async with pool.acquire() as conn:
            await conn.execute(SCHEMA)
            await conn.execute(CRUD_SCHEMA)
        app[POOL] = pool
        yield
        await pool.close()

    async def insert(request: web.Request) -> web.Response:
        body = await request.read()
        data = msgspec.json.encode({"body": body.decode(), "at": time.time_ns() // 1000})
        new_id = await request.app[POOL].fetchval(INSERT, request.match_info["id"], data.decode())
        return web.Response(body=msgspec.json.encode({"id": new_id}), content_type="application/json")

    async def crud(request: web.Request) -> web.Response:
        form = await request.post()
        customer_id = request.match_info["id"]
        amount = int(str(form["amount"]))
        async with request.app[POOL].acquire() as conn, conn.transaction():
            entry = await conn.fetchrow(
                CRUD_ENTRY, customer_id, amount, str(form["currency"]), str(form.get("description", ""))
            )
            balance = await conn.fetchval(CRUD_BALANCE, customer_id, amount)
        body = {
            "id": entry["id"],
            "object": "customer_balance_transaction",
            "amount": amount,
            "created": entry["created"],
            "currency": form["currency"],
            "customer": customer_id,
            "ending_balance": balance,
        }
        return web.Response(body=msgspec.json.encode(body), content_type="application/json")

    async def select(request: web.Request) -> web.Response:
        row = await request.app[POOL].fetchrow(SELECT, request.match_info["id"], account, False)
        if row is None:
            return web.Response(status=404, body=b'{"error":"missing"}', content_type="application/json")
        return web.Response(body=msgspec.json.encode(dict(row)), content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    app.cleanup_ctx.append(pool_ctx)
    app.router.add_post("/insert/{id}", insert)
    app.router.add_post("/crud/{id}", crud)
    app.router.add_get("/customers/{id}", select)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--account", required=True)
    args = parser.parse_args()
    web.run_app(
        build(args.database_url, args.account), host=args.host, port=args.port, print=None, access_log=None
    )


if __name__ == "__main__":
    main()
