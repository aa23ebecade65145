"""Hostile input on the write endpoints tests/e2e/test_http.py does not already cover that way (it covers
customer creation, list/search parameters, paths, bodies and encodings): customer updates and balance
transactions, in both encodings, with huge integers and floats, non-numbers, invalid UTF-8, NUL and control
characters, deep nesting and 10,000 parameters. Each is a Stripe-shaped 400 naming the parameter, and
nothing is written (checked in the log)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from tests.support.server import Server

BIG = "9" * 40

# (case id, body: form string/bytes or a JSON document, expected param; None: any param will do; NO_PARAM:
# the request as a whole is refused, e.g. for carrying too many parameters)
NO_PARAM = ""
AMOUNT_CASES: list[tuple[str, Any, str | None]] = [
    ("form-huge", f"amount={BIG}&currency=usd", "amount"),
    ("form-negative-huge", f"amount=-{BIG}&currency=usd", "amount"),
    ("form-over-max", "amount=100000000000000&currency=usd", "amount"),
    ("form-float", "amount=1.0&currency=usd", "amount"),
    ("form-exponent", "amount=1e2&currency=usd", "amount"),
    ("form-nan", "amount=NaN&currency=usd", "amount"),
    ("form-inf", "amount=Infinity&currency=usd", "amount"),
    ("form-hex", "amount=0x10&currency=usd", "amount"),
    ("form-spaces", "amount=+1%20&currency=usd", "amount"),
    ("form-array", "amount[]=1&currency=usd", "amount"),
    ("form-object", "amount[x]=1&currency=usd", "amount"),
    ("json-huge", {"amount": int(BIG), "currency": "usd"}, "amount"),
    ("json-float", {"amount": 1.5, "currency": "usd"}, "amount"),
    ("json-big-float", {"amount": 1e300, "currency": "usd"}, "amount"),
    ("json-integral-float", {"amount": 100.0, "currency": "usd"}, "amount"),
    ("json-bool", {"amount": True, "currency": "usd"}, "amount"),
    ("json-null", {"amount": None, "currency": "usd"}, "amount"),
    ("json-list", {"amount": [1], "currency": "usd"}, "amount"),
    ("json-unknown-currency", {"amount": 1, "currency": "xxx"}, "currency"),
    ("json-currency-number", {"amount": 1, "currency": 840}, "currency"),
    ("form-currency-sql", "amount=1&currency=usd'%3B--", "currency"),
    ("form-currency-upper-unicode", "amount=1&currency=%C3%BCsd", "currency"),
    ("form-description-nul", "amount=1&currency=usd&description=a%00b", "description"),
    ("form-description-utf8", b"amount=1&currency=usd&description=%FF", "description"),
    ("form-metadata-nul-key", "amount=1&currency=usd&metadata[%00]=v", None),
    ("form-deep", "amount=1&currency=usd&metadata[a][b][c][d][e]=1", None),
    ("form-many", "amount=1&currency=usd&" + "&".join(f"metadata[k{i}]=v" for i in range(10_000)), NO_PARAM),
    ("form-unknown", "amount=1&currency=usd&customer=cus_other", "customer"),
]

UPDATE_CASES: list[tuple[str, Any, str | None]] = [
    ("balance-huge", f"balance={BIG}&currency=usd", "balance"),
    ("balance-json-huge", {"balance": -int(BIG)}, "balance"),
    ("balance-json-float", {"balance": 2.5}, "balance"),
    ("balance-over-js-range", "balance=9007199254740993", "balance"),
    ("next-invoice-sequence-huge", f"next_invoice_sequence={BIG}", "next_invoice_sequence"),
    ("name-nul", "name=a%00", "name"),
    ("name-utf8", b"name=%C3%28", "name"),
    ("email-utf8-raw", b"email=\xff@example.com", "email"),
    ("metadata-value-nul", "metadata[k]=%00", None),
    ("address-deep", "address[line1][x][y]=1", None),
    ("json-name-number", {"name": 12}, "name"),
    ("json-metadata-nested", {"metadata": {"a": {"b": "c"}}}, None),
    ("json-deep", {"metadata": json.loads("[" * 60 + "]" * 60)}, None),
    ("many", "&".join(f"metadata[k{i}]=v" for i in range(10_000)), NO_PARAM),
    ("unknown", "source=tok_visa", "source"),
    ("preferred-locales-object", "preferred_locales[a]=en", None),
]

TXN_UPDATE_CASES: list[tuple[str, Any, str | None]] = [
    ("amount-not-updatable", "amount=5", "amount"),
    ("description-nul", "description=%00", "description"),
    ("description-utf8", b"description=%FF%FE", "description"),
    ("description-json-number", {"description": 5}, "description"),
    ("metadata-json-int", {"metadata": {"a": 1}}, None),
    ("many", "&".join(f"metadata[k{i}]=v" for i in range(10_000)), NO_PARAM),
]


class Client:
    def __init__(self, session: aiohttp.ClientSession, server: Server) -> None:
        self.session = session
        self.server = server

    async def post(self, path: str, body: Any, key: str | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {key or self.server.key}"}
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        else:
            data = body.encode() if isinstance(body, str) else body
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        async with self.session.post(self.server.base_url + path, data=data, headers=headers) as response:
            return response.status, json.loads(await response.read())


@pytest_asyncio.fixture(loop_scope="session")
async def client(server: Server) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, server)


@pytest_asyncio.fixture(loop_scope="session")
async def target(client: Client) -> dict[str, str]:
    status, customer = await client.post("/v1/customers", "name=target&balance=10&currency=usd")
    assert status == 200, customer
    status, txn = await client.post(
        f"/v1/customers/{customer['id']}/balance_transactions", "amount=5&currency=usd"
    )
    assert status == 200, txn
    return {"customer": customer["id"], "txn": txn["id"]}


async def snapshot(db_url: str, customer: str) -> tuple[Any, ...]:
    conn = await asyncpg.connect(db_url)
    try:
        return (
            await conn.fetchval("SELECT count(*) FROM events"),
            await conn.fetchval("SELECT count(*) FROM idempotency_keys"),
            tuple(await conn.fetchrow("SELECT * FROM customers WHERE id = $1", customer)),
        )
    finally:
        await conn.close()


async def assert_rejected(
    client: Client,
    server: Server,
    customer: str,
    path: str,
    body: Any,
    param: str | None,
) -> None:
    before = await snapshot(server.db_url, customer)
    status, reply = await client.post(path, body)
    assert status == 400, reply
    error = reply["error"]
    assert error["type"] == "invalid_request_error" and error["message"], error
    if param is None:
        assert error.get("param"), error
    elif param != NO_PARAM:
        assert error.get("param") == param, error
    assert await snapshot(server.db_url, customer) == before


@pytest.mark.parametrize(("case", "body", "param"), AMOUNT_CASES, ids=[c[0] for c in AMOUNT_CASES])
async def test_balance_transaction_create_rejects_hostile_input(
    client: Client,
    server: Server,
    target: dict[str, str],
    case: str,
    body: Any,
    param: str | None,
) -> None:
    path = f"/v1/customers/{target['customer']}/balance_transactions"
    await assert_rejected(client, server, target["customer"], path, body, param)


@pytest.mark.parametrize(("case", "body", "param"), UPDATE_CASES, ids=[c[0] for c in UPDATE_CASES])
async def test_customer_update_rejects_hostile_input(
    client: Client,
    server: Server,
    target: dict[str, str],
    case: str,
    body: Any,
    param: str | None,
) -> None:
    await assert_rejected(
        client, server, target["customer"], f"/v1/customers/{target['customer']}", body, param
    )


@pytest.mark.parametrize(("case", "body", "param"), TXN_UPDATE_CASES, ids=[c[0] for c in TXN_UPDATE_CASES])
async def test_balance_transaction_update_rejects_hostile_input(
    client: Client,
    server: Server,
    target: dict[str, str],
    case: str,
    body: Any,
    param: str | None,
) -> None:
    path = f"/v1/customers/{target['customer']}/balance_transactions/{target['txn']}"
    await assert_rejected(client, server, target["customer"], path, body, param)
