"""The services under test: `ledgerd serve` (migrated, with an API key), the bare aiohttp + asyncpg
baseline app, and a second `ledgerd serve` with group commit off; and creating customers through HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time

from bench.cpu import server_loop
from bench.processes import free_port, wait_listening
from bench.results import Results
from bench.settings import ACCOUNT, ROOT, STRIPE_HEADERS, log
from bench.state import Setup
from bench.tools import ledger_command


async def start_services(setup: Setup, results: Results) -> None:
    t0 = time.monotonic()
    env = {**os.environ, "DATABASE_URL": setup.url}
    migrate = [*ledger_command(), "migrate"]
    subprocess.run(migrate, env=env, check=True, capture_output=True, cwd=ROOT)  # noqa: ASYNC221 - a step
    setup.key = subprocess.run(  # noqa: ASYNC221
        [*ledger_command(), "api-keys", "create", "--account", ACCOUNT],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    serve = [*ledger_command(), "serve", "--host", "127.0.0.1", "--port"]
    setup.port = free_port()
    workers = ["--workers", str(setup.settings.workers)] if setup.settings.workers else []
    setup.server = await start_server(setup, "server", [*serve, str(setup.port), *workers], setup.port, env)
    results.info["server_loop"] = server_loop(setup.server.pid)
    setup.bare_port = free_port()
    bare_app = [sys.executable, "-m", "bench.baselines.bare_app", "--port", str(setup.bare_port)]
    bare_args = [*bare_app, "--database-url", setup.url, "--account", ACCOUNT]
    setup.bare = await start_server(setup, "bare", bare_args, setup.bare_port)
    setup.solo_port = free_port()
    solo_env = {**env, "LEDGER_GROUP_COMMIT_LANES": "0"}
    solo_args = [*serve, str(setup.solo_port), "--no-migrate"]
    setup.solo = await start_server(setup, "solo", solo_args, setup.solo_port, solo_env)
    results.timings["services"] = time.monotonic() - t0
    log(
        f"ledgerd serve pid {setup.server.pid} on 127.0.0.1:{setup.port}; bare app on :{setup.bare_port};"
        f" group commit off: pid {setup.solo.pid} on :{setup.solo_port}"
    )


async def start_server(
    setup: Setup, name: str, args: list[str], port: int, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Starts one HTTP server, its stderr kept in `<name>.stderr`; the access log on stdout (one JSON line
    per request) is produced, not kept."""
    stderr_file = setup.tmp / f"{name}.stderr"
    stderr = open(stderr_file, "wb")  # noqa: SIM115, ASYNC230 - closed with the process
    proc = setup.children.popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    await wait_listening(proc, port, stderr_file)
    return proc


def api_headers(setup: Setup, post: bool) -> dict[str, str]:
    headers = {**STRIPE_HEADERS, "Authorization": f"Bearer {setup.key}"}
    if post:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers["Idempotency-Key"] = os.urandom(16).hex()
    return headers


async def create_customers(
    setup: Setup, count: int, concurrency: int = 32, prefix: str = "seed"
) -> list[str]:
    import aiohttp

    ids: list[str] = []
    failures: list[str] = []
    numbers = iter(range(count))
    url = f"http://127.0.0.1:{setup.port}/v1/customers"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            for n in numbers:
                body = (
                    f"email={prefix}{n}%40example.com&name=Bench+Customer&currency=usd"
                    "&description=load+test&metadata%5Bplan%5D=pro"
                )
                for _attempt in range(5):
                    async with session.post(url, data=body, headers=api_headers(setup, True)) as response:
                        payload = await response.read()
                        if response.status == 200:
                            ids.append(json.loads(payload)["id"])
                            break
                        failures.append(f"{response.status} {payload[:200]!r}")
                else:
                    raise RuntimeError(f"cannot create customers: {failures[-3:]}")

        await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return ids


async def new_hot_customer(setup: Setup) -> str:
    return (await create_customers(setup, 1, 1, prefix=f"hot{random.randrange(10**9)}_"))[0]
