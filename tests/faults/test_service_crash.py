"""SIGKILL `ledgerd serve` at random (seeded) moments under load, several times, restarting it each time.

Clients retry like the SDKs (connection errors, 409, 5xx, Stripe-Should-Retry) with the same
Idempotency-Key until each request is acknowledged. Afterwards every acknowledged request is in the log
exactly once, nothing is appended twice, the hash chains verify and every balance equals the sum of the
customer's acknowledged adjustments. Seed: LEDGER_FAULT_SEED (default 6); kills: LEDGER_FAULT_KILLS (default 3;
raise it for a soak, e.g. LEDGER_FAULT_KILLS=30).
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import aiohttp

from tests.support.faults import Load, call, check_log, new_key

SEED = int(os.environ.get("LEDGER_FAULT_SEED", "6"))
KILLS = int(os.environ.get("LEDGER_FAULT_KILLS", "3"))


async def test_sigkill_under_load_loses_and_duplicates_nothing(
    db_url: str, spawn_service, http: aiohttp.ClientSession
) -> None:
    key = await new_key(db_url)
    service = await spawn_service(db_url)
    rng = random.Random(SEED)
    load = Load(http, service.base_url, key, seed=SEED, workers=6, deadline_s=60 + 5 * KILLS)
    load.start()
    kills: list[tuple[float, int]] = []  # (seconds into the run, acknowledged requests so far)
    started = time.monotonic()
    for _ in range(KILLS):
        await asyncio.sleep(rng.uniform(0.4, 1.6))
        kills.append((round(time.monotonic() - started, 2), sum(op.acked for op in load.ops)))
        service.kill()
        await asyncio.sleep(rng.uniform(0.0, 0.3))  # new connections wait in the held socket's backlog
        await service.start()
    await asyncio.sleep(0.5)  # some traffic on the last incarnation
    await load.stop()

    summary = load.summary()
    unacknowledged = [(op.key, op.final.status if op.final else None) for op in load.ops if not op.acked]
    assert not unacknowledged, f"requests never acknowledged: {unacknowledged[:5]} ({summary})"
    statuses = {reply.status for op in load.ops for reply in op.replies}
    assert statuses <= {200, 409, 429, 503}, f"unexpected statuses {statuses}: {service.log_tail()}"
    assert summary["connection_errors"] > 0, f"no request was cut off by a kill: {summary}, kills {kills}"
    assert service.starts == KILLS + 1

    logged = await check_log(db_url, load.ops)
    # The API agrees with the log (read through the last incarnation of the service).
    expected: dict[str, int] = {}
    for op in load.ops:
        expected[op.customer_id or ""] = expected.get(op.customer_id or "", 0) + op.amount
    for customer, balance in expected.items():
        reply = await call(http, service.base_url, "GET", f"/v1/customers/{customer}", key)
        assert reply.status == 200 and reply.json["balance"] == balance, (customer, reply.body)
    print(f"\nseed {SEED}: kills at {kills}; {summary}; {logged}")
