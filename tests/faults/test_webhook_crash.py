"""Webhooks through crashes: SIGKILL `ledgerd serve` repeatedly while writers append and deliveries are in
flight (slow and failing receivers), with a long-running transaction open during the load, restarting it
each time. Afterwards every event of the log was delivered at least once to every endpoint subscribed when
it was created, nothing else was, each (event, endpoint) was fanned out exactly once, and every event's
pending_webhooks is 0. Seed: LEDGER_FAULT_SEED (default 6); kills: LEDGER_FAULT_KILLS (default 3)."""

from __future__ import annotations

import asyncio
import os
import random
import time

import aiohttp
import asyncpg
import stripe

from tests.support.faults import Load, call, new_key
from tests.support.webhooks import receiving

SEED = int(os.environ.get("LEDGER_FAULT_SEED", "6"))
KILLS = int(os.environ.get("LEDGER_FAULT_KILLS", "3"))
ENV = {
    "LEDGER_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
    "LEDGER_WEBHOOK_RETRY_SCHEDULE": "0.3,0.5,1,1,2,2,3,3,3,3,3,3",
    "LEDGER_WEBHOOK_TIMEOUT_S": "1",
}


async def test_sigkill_during_delivery_loses_no_webhook(db_url: str, spawn_service, http: aiohttp.ClientSession) -> None:
    key = await new_key(db_url)
    service = await spawn_service(db_url, **ENV)
    rng = random.Random(SEED)
    async with receiving() as receiver:
        # Every fifth answer fails and some are slow, so retries and in-flight requests meet the kills.
        answers = [rng.choice([200, 200, 200, {"status": 200, "sleep": 0.4}, 500]) for _ in range(20_000)]
        receiver.plan("/all", *answers)
        receiver.plan("/created", *answers[::-1])
        endpoints = {}
        for path, events in (("/all", ["*"]), ("/created", ["customer.created"])):
            form = {"url": receiver.url(path), **{f"enabled_events[{i}]": e for i, e in enumerate(events)}}
            reply = await call(http, service.base_url, "POST", "/v1/webhook_endpoints", key, form)
            assert reply.status == 200, reply.body
            endpoints[path] = reply.json
        load = Load(http, service.base_url, key, seed=SEED, workers=4, deadline_s=60 + 5 * KILLS)
        load.start()
        # A long-running transaction with an xid, open across the first kill: the horizon stays behind it.
        long_running = await asyncpg.connect(db_url)
        transaction = long_running.transaction()
        await transaction.start()
        await long_running.fetchval("SELECT pg_current_xact_id()")
        for kill in range(KILLS):
            await asyncio.sleep(rng.uniform(0.6, 1.6))
            service.kill()
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            await service.start()
            if kill == 0:
                await asyncio.sleep(0.5)
                await transaction.commit()
                await long_running.close()
        await asyncio.sleep(0.5)
        await load.stop()
        assert all(op.acked for op in load.ops), load.summary()
        assert service.starts == KILLS + 1

        conn = await asyncpg.connect(db_url)
        try:
            feed = await conn.fetch("SELECT id, type FROM stripe_events")
        finally:
            await conn.close()
        expected = {(row["id"], "/all") for row in feed}
        expected |= {(row["id"], "/created") for row in feed if row["type"] == "customer.created"}
        assert len(feed) >= 10

        def delivered() -> set[tuple[str, str]]:
            return {(item.event["id"], item.path) for item in receiver.received}

        deadline = time.monotonic() + 90  # leases of killed workers expire (timeout + 10 s), retries run
        while not expected <= delivered() and time.monotonic() < deadline:  # noqa: ASYNC110 (polls another process)
            await asyncio.sleep(0.25)
        missing = expected - delivered()
        assert not missing, f"{len(missing)} of {len(expected)} never delivered: {sorted(missing)[:5]}"
        assert delivered() <= expected, "delivered to an endpoint that was not subscribed"
        secrets = {path: endpoint["secret"] for path, endpoint in endpoints.items()}
        for item in receiver.received:
            stripe.Webhook.construct_event(item.body, item.headers["Stripe-Signature"], secrets[item.path])

        conn = await asyncpg.connect(db_url)
        try:
            fanned = await conn.fetch("SELECT event_id, endpoint_id FROM webhook_deliveries")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and await conn.fetchval(  # noqa: ASYNC110 (polls the database)
                "SELECT count(*) FROM webhook_deliveries WHERE state <> 'succeeded'"
            ):
                await asyncio.sleep(0.25)
            recorded = await conn.fetchval("SELECT count(*) FROM webhook_attempts")
        finally:
            await conn.close()
        assert len(fanned) == len(expected) == len({tuple(row) for row in fanned})
        undelivered = await call(http, service.base_url, "GET", "/v1/events?delivery_success=false&limit=100", key)
        assert undelivered.status == 200 and undelivered.json["data"] == [], undelivered.body[:300]
        page = await call(http, service.base_url, "GET", "/v1/events?limit=100", key)
        assert page.json["data"] and all(event["pending_webhooks"] == 0 for event in page.json["data"])
        # Some requests reached the receiver but their attempt was never recorded: cut off by a kill, sent again.
        assert recorded < len(receiver.received), (recorded, len(receiver.received))
        print(f"\nseed {SEED}: {load.summary()}; {len(expected)} deliveries, {len(receiver.received)} requests "
              f"received, {recorded} attempts recorded")
