"""Webhook delivery benchmark (issue 11), same-run ratios on this machine.

    python -m bench.webhooks_bench [--duration 8] [--clients 16] [--customers 200]

Against a fresh database cloned from DATABASE_URL's server, with `ledgerd serve` subprocesses and a local aiohttp
receiver on 127.0.0.1:
1. write throughput (AdjustBalance spread over customers, `--clients` concurrent clients, `--duration` s) with
   webhooks off (LEDGER_WEBHOOKS=off, no endpoint); with the dispatcher running but its one endpoint disabled
   (every event read and matched, nothing sent: the dispatcher's own cost, issue target <= 10 %); and delivering
   to one '*' endpoint from the same process (two webhooks per write);
2. delivery lag during (1, on): from the client receiving the 200 of a balance transaction to the receiver getting
   its customer_balance_transaction.created event, p50 / p99;
3. delivery throughput: a backlog appended with webhooks off, then a service with webhooks on drains it, with 1 and
   with 16 endpoints (deliveries per second, events per second).
Prints a Markdown table; paste it into bench/RESULTS.md with the date, commit and load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
import msgspec
from aiohttp import web

from ledgerd.service.auth import create_key
from ledgerd.service.migrate import apply_migrations

BASE_ENV = {"LEDGER_LOG_LEVEL": "warning", "LEDGER_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: dict[str, float] = {}  # data.object.id of a balance transaction event -> receipt time
        self.count = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.count += 1
        event = msgspec.json.decode(body)
        if event["type"] == "customer_balance_transaction.created":
            self.arrivals.setdefault(event["data"]["object"]["id"], time.monotonic())
        return web.Response(text="ok")

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


async def fresh_database(server_url: str) -> str:
    name = f"ledger_whbench_{os.getpid()}_{random.randrange(10**6)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = server_url.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return url


def spawn(db_url: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ledgerd.service.cli", "serve", "--port", str(port), "--no-migrate"],
        env={**os.environ, "DATABASE_URL": db_url, **BASE_ENV, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def serve(db_url: str, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = spawn(db_url, port, env)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            try:
                async with http.get(base + "/healthz") as response:
                    if response.status == 200:
                        return process, base
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("ledgerd serve did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=15)


async def post(http: aiohttp.ClientSession, base: str, key: str, path: str, form: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-www-form-urlencoded"}
    async with http.post(base + path, data=urlencode(form), headers=headers) as response:
        body = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
        return msgspec.json.decode(body)


async def customers(http: aiohttp.ClientSession, base: str, key: str, count: int) -> list[str]:
    found = []
    for start in range(0, count, 50):
        batch = [post(http, base, key, "/v1/customers", {"name": f"b{n}"}) for n in range(start, min(count, start + 50))]
        found += [customer["id"] for customer in await asyncio.gather(*batch)]
    return found


async def write_load(
    http: aiohttp.ClientSession, base: str, key: str, ids: list[str], clients: int, duration: float
) -> tuple[int, dict[str, float]]:
    """AdjustBalance spread over `ids` for `duration` s; the count and each transaction's 200 time."""
    done: dict[str, float] = {}
    deadline = time.monotonic() + duration

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            customer = rng.choice(ids)
            txn = await post(http, base, key, f"/v1/customers/{customer}/balance_transactions",
                             {"amount": rng.randint(1, 100), "currency": "usd"})
            done[txn["id"]] = time.monotonic()

    await asyncio.gather(*(client(n) for n in range(clients)))
    return len(done), done


async def endpoint(http: aiohttp.ClientSession, base: str, key: str, url: str) -> Any:
    return await post(http, base, key, "/v1/webhook_endpoints", {"url": url, "enabled_events[0]": "*"})


async def wait_for(predicate: Any, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return False


def lag(receiver: Receiver, done: dict[str, float]) -> str:
    lags = [receiver.arrivals[txn] - at for txn, at in done.items() if txn in receiver.arrivals]
    return (f"{1000 * statistics.median(lags):.1f} ms / {1000 * percentile(lags, 0.99):.1f} ms "
            f"({len(lags)} of {len(done)} received, {len(done) / max(1e-9, max(done.values()) - min(done.values())):.0f} writes/s)")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    server = os.environ.get("DATABASE_URL") or sys.exit("DATABASE_URL: a PostgreSQL server to create databases on")
    receiver = Receiver()
    runner = await receiver.start()
    rows: list[tuple[str, str]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        # 1 + 2: write throughput without and with webhooks, and delivery lag
        results = {}
        for mode in ("off", "dispatch", "on"):
            db_url = await fresh_database(server)
            conn = await asyncpg.connect(db_url)
            _, key = await create_key(conn, "acct_bench", livemode=False)
            await conn.close()
            process, base = await serve(db_url, LEDGER_WEBHOOKS="off" if mode == "off" else "on")
            try:
                ids = await customers(http, base, key, args.customers)
                if mode != "off":
                    created = await endpoint(http, base, key, f"http://127.0.0.1:{receiver.port}/one")
                if mode == "dispatch":  # the dispatcher reads and matches every event; nothing is sent
                    await post(http, base, key, f"/v1/webhook_endpoints/{created['id']}", {"disabled": "true"})
                receiver.arrivals.clear()
                count, done = await write_load(http, base, key, ids, args.clients, args.duration)
                results[mode] = count / args.duration
                if mode == "on":
                    await wait_for(lambda done=done: len(receiver.arrivals) >= len(done), 120)
                    rows.append((f"delivery lag p50 / p99 (200 to receipt), {args.clients} clients", lag(receiver, done)))
                    receiver.arrivals.clear()
                    _, light = await write_load(http, base, key, ids, 2, args.duration)
                    await wait_for(lambda done=light: len(receiver.arrivals) >= len(done), 60)
                    rows.append(("delivery lag p50 / p99 (200 to receipt), 2 clients", lag(receiver, light)))
            finally:
                stop(process)
        off = results["off"]
        rows.insert(0, ("write throughput: webhooks off", f"{off:.0f}/s"))
        rows.insert(1, ("write throughput: dispatcher only (endpoint disabled) / off",
                        f"{results['dispatch']:.0f}/s = {100 * results['dispatch'] / off:.0f} %"))
        rows.insert(2, ("write throughput: delivering to 1 endpoint (2 events per write) / off",
                        f"{results['on']:.0f}/s = {100 * results['on'] / off:.0f} %"))
        # 3: draining a backlog
        for endpoints in (1, 16):
            db_url = await fresh_database(server)
            conn = await asyncpg.connect(db_url)
            _, key = await create_key(conn, "acct_bench", livemode=False)
            await conn.close()
            process, base = await serve(db_url, LEDGER_WEBHOOKS="off")
            try:
                for n in range(endpoints):
                    await endpoint(http, base, key, f"http://127.0.0.1:{receiver.port}/e{n}")
                ids = await customers(http, base, key, args.backlog)
            finally:
                stop(process)
            before = receiver.count
            started = time.monotonic()
            process, base = await serve(db_url)
            try:
                expected = args.backlog * endpoints
                await wait_for(lambda expected=expected, before=before: receiver.count - before >= expected, 300)
                elapsed = time.monotonic() - started
                rows.append((f"drain a backlog of {args.backlog} events to {endpoints} endpoint(s)",
                             f"{expected / elapsed:.0f} deliveries/s, {args.backlog / elapsed:.0f} events/s "
                             f"({elapsed:.1f} s incl. start)"))
            finally:
                stop(process)
            assert ids
    await runner.cleanup()
    print(f"\n| measure ({args.clients} clients, {args.duration:g} s cells, load {os.getloadavg()[0]:.2f}) | result |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=1000)
    asyncio.run(main(parser.parse_args()))
