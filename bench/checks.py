"""Lost-update checks on the hot customer: after each hot cell (balance = sum of its balance transactions =
count x amount = its BalanceAdjusted events, every 2xx committed), and once with a fixed number of awaited
requests so that the 2xx count is exact."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from bench.database import sql
from bench.results import Cell, Results
from bench.services import api_headers, new_hot_customer
from bench.settings import AMOUNT, log
from bench.state import Setup


async def quiesce(setup: Setup, customer_id: str) -> int:
    """Wait until the customer's stream stops moving (requests wrk abandoned at its deadline finish)."""
    last, stable = -1, 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        version = await sql(
            setup.url, "SELECT version FROM streams WHERE stream_id = $1", customer_id, fetch="fetchval"
        )
        stable = stable + 1 if version == last else 0
        last = version
        if stable >= 3:
            break
        await asyncio.sleep(0.15)
    return int(last)


async def check_hot(setup: Setup, customer_id: str, acknowledged: int, cell: Cell | None) -> dict[str, Any]:
    version = await quiesce(setup, customer_id)
    row = await sql(
        setup.url,
        """SELECT c.balance,
                  (SELECT coalesce(sum(amount), 0) FROM balance_transactions WHERE customer_id = c.id) AS total,
                  (SELECT count(*) FROM balance_transactions WHERE customer_id = c.id) AS n,
                  (SELECT count(*) FROM events WHERE stream_id = c.id AND event_type = 'BalanceAdjusted') AS ev
           FROM customers c WHERE c.id = $1""",
        customer_id,
        fetch="fetchrow",
    )
    balance, total, n, ev = int(row["balance"]), int(row["total"]), int(row["n"]), int(row["ev"])
    errors = cell.errors if cell else 0
    clients = cell.clients if cell else 0
    in_flight = n - acknowledged
    check = {
        "customer": customer_id,
        "clients": clients,
        "rep": cell.rep if cell else None,
        "balance": balance,
        "sum_of_transactions": total,
        "transactions": n,
        "events": ev,
        "stream_version": version,
        "acknowledged_2xx": acknowledged,
        "committed_not_acknowledged": in_flight,
        "balance_equals_sum": balance == total,
        "balance_equals_count_x_amount": balance == n * AMOUNT and ev == n,
        # Every 2xx was committed; at most one request per connection (plus ones wrk timed out or
        # dropped) was still in flight when wrk stopped at its deadline and committed afterwards.
        "acknowledged_all_committed": 0 <= in_flight <= clients + errors,
    }
    check["ok"] = bool(
        check["balance_equals_sum"]
        and check["balance_equals_count_x_amount"]
        and check["acknowledged_all_committed"]
    )
    return check


async def final_hot_check(setup: Setup, results: Results) -> None:
    """Fixed-count hot run through HTTP (aiohttp), every request awaited: the 2xx count is exact."""
    import aiohttp

    clients = max(setup.settings.clients)
    per_client = setup.settings.verify_per_client
    customer = await new_hot_customer(setup)
    url = f"http://127.0.0.1:{setup.port}/v1/customers/{customer}/balance_transactions"
    statuses: Counter[int] = Counter()
    body = f"amount={AMOUNT}&currency=usd&description=verify"
    t0 = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def worker() -> None:
            for _ in range(per_client):
                try:
                    async with session.post(url, data=body, headers=api_headers(setup, True)) as response:
                        await response.read()
                        statuses[response.status] += 1
                except (aiohttp.ClientError, OSError):
                    statuses[0] += 1

        await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.monotonic() - t0
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    check = await check_hot(setup, customer, ok, None)
    check.update(
        clients=clients,
        requests=clients * per_client,
        statuses={str(k): v for k, v in statuses.items()},
        wall_s=wall,
        exact=check["balance"] == ok * AMOUNT and check["transactions"] == ok,
    )
    check["ok"] = check["ok"] and check["exact"]
    results.final_check = check
    log(
        f"hot verification: {ok}/{clients * per_client} 2xx, balance {check['balance']}"
        f" = {ok} x {AMOUNT}: {'OK' if check['exact'] else 'MISMATCH'}"
    )
