"""A list page's statement from the lists' pool vs inside a `SET LOCAL plan_cache_mode` transaction on the
command pool's settings (what list pages did before they had a pool of their own), interleaved rounds.

    .venv/bin/python -m bench.list_page_latency postgresql://postgres@127.0.0.1:5432/ledger_bench_NAME

Any database with events will do (e.g. one kept by `python -m bench.audit_bench --events 100000 --keep`)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from ledgerd.projections.sql import queries_of

COMMAND_POOL = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"}  # service/app.py


async def measure(url: str, rounds: int, calls: int) -> dict[str, list[float]]:
    command = await asyncpg.create_pool(url, min_size=1, max_size=1, server_settings=COMMAND_POOL)
    lists = await asyncpg.create_pool(
        url, min_size=1, max_size=1, server_settings={**COMMAND_POOL, "plan_cache_mode": "force_custom_plan"}
    )
    account, livemode = await command.fetchrow(
        "SELECT account, livemode FROM stripe_events GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1"
    )
    page = queries_of("stripe_events")["events_page"]
    args = [account, livemode, *([None] * 10), False, 11]  # the first page of 10, newest first

    async def in_transaction() -> list[Any]:
        async with command.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            return list(await conn.fetch(page, *args))

    async def lists_pool() -> list[Any]:
        async with lists.acquire() as conn:
            return list(await conn.fetch(page, *args))

    assert [r["id"] for r in await in_transaction()] == [r["id"] for r in await lists_pool()]
    ways: dict[str, Callable[[], Awaitable[list[Any]]]] = {
        "SET LOCAL in a transaction": in_transaction,
        "the lists' pool": lists_pool,
    }
    medians: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, call in ways.items():
            for _ in range(50):
                await call()
            times = []
            for _ in range(calls):
                started = time.perf_counter()
                await call()
                times.append(time.perf_counter() - started)
            medians[name].append(statistics.median(times) * 1e6)
    await command.close()
    await lists.close()
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    for name, medians in asyncio.run(measure(args.url, args.rounds, args.calls)).items():
        print(f"{name:28s} median µs per round: {[round(m) for m in medians]}")


if __name__ == "__main__":
    main()
