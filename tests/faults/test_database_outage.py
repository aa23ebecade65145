"""PostgreSQL restarted under load, on a private embedded cluster (durable: fsync and synchronous_commit
on), never the DATABASE_URL server.

While the database is away every request is answered at once with a 503 carrying `Retry-After` and
`Stripe-Should-Retry: true` (never a 500, never a half-written command); when it is back the same service
process serves again within seconds, without a restart. Twice: a fast shutdown (SIGINT: sessions are
terminated, 57P01) and an immediate one (SIGQUIT: no checkpoint, crash recovery on the next start).
Afterwards the log holds every acknowledged request exactly once and nothing else.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest_asyncio

from ledgerd.service.migrate import migrate
from ledgerd.service.pgserver import EmbeddedPostgres
from tests.support.faults import Load, Reply, call, check_log, new_key

RECOVERY_LIMIT_S = 5.0
OUTAGE_S = 1.0


@dataclass
class Cluster:
    server: EmbeddedPostgres
    url: str

    async def fast_restart(self) -> float:
        """Stop (fast shutdown), stay down OUTAGE_S, start. Returns when it accepts connections again."""
        await asyncio.to_thread(self.server.stop)
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(self.server.start)
        return time.monotonic()

    async def crash_restart(self) -> float:
        """Immediate shutdown (as after a crash: recovery replays the WAL), stay down, start."""
        await asyncio.to_thread(self.crash)
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(self.server.start)
        return time.monotonic()

    def crash(self) -> None:
        self.server.shutdown("immediate")  # pg_ctl stop -m immediate: SIGQUIT, no checkpoint


@pytest_asyncio.fixture(loop_scope="session")
async def cluster() -> AsyncIterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="ledger-faults-pg-"))
    server = EmbeddedPostgres(root, durable=True)
    try:
        await asyncio.to_thread(server.start)
        await asyncio.to_thread(server.ensure_database, "ledger")
        url = server.url("ledger")
        await migrate(url)
        yield Cluster(server, url)
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(root, ignore_errors=True)


async def first_success_after(http: aiohttp.ClientSession, base_url: str, key: str, since: float) -> float:
    """Seconds from `since` until the service answers a read and a write with 2xx again."""
    deadline = since + 30
    while time.monotonic() < deadline:
        try:
            read = await call(http, base_url, "GET", "/v1/customers?limit=1", key)
            if read.status == 200:
                write = await call(http, base_url, "POST", "/v1/customers", key, {"name": "probe"}, None)
                if write.status == 200:
                    return time.monotonic() - since
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the service did not recover within 30 s")


def assert_clean_unavailable(reply: Reply) -> None:
    assert reply.status == 503, (reply.status, reply.body)
    assert reply.headers.get("Retry-After") == "1", reply.headers
    assert reply.headers.get("Stripe-Should-Retry") == "true", reply.headers
    assert reply.headers.get("Content-Type", "").startswith("application/json")
    error = reply.json["error"]
    assert error["type"] == "api_error" and error["code"] == "service_unavailable", error
    assert "Request-Id" in reply.headers


async def test_postgres_restarts_under_load_are_503s_and_the_service_recovers_by_itself(
    cluster: Cluster, spawn_service, http: aiohttp.ClientSession
) -> None:
    key = await new_key(cluster.url)
    # Short acquire wait: a request finding no database fails fast instead of queueing for 5 s.
    service = await spawn_service(cluster.url, LEDGER_POOL_TIMEOUT_S="2")
    pid = service.process.pid
    probe_path = "/v1/customers?limit=3"
    reads: list[Reply] = []
    stop_reading = asyncio.Event()

    async def reader() -> None:  # GETs run through pool.fetch…, not the event store's sessions
        while not stop_reading.is_set():
            try:
                reads.append(await call(http, service.base_url, "GET", probe_path, key))
            except aiohttp.ClientError as error:  # the service never goes away: no connection errors
                raise AssertionError(f"connection error from a live service: {error!r}") from error
            await asyncio.sleep(0.02)

    load = Load(http, service.base_url, key, seed=7, workers=4, deadline_s=60)
    load.start()
    reading = asyncio.create_task(reader())
    recoveries: list[float] = []
    for restart in (cluster.fast_restart, cluster.crash_restart):
        await asyncio.sleep(0.8)
        before = len(reads)
        back_at = await restart()
        during = reads[before:]
        recoveries.append(await first_success_after(http, service.base_url, key, back_at))
        assert any(reply.status == 503 for reply in during), [reply.status for reply in during]
    await asyncio.sleep(0.5)
    stop_reading.set()
    await reading
    await load.stop()

    assert service.alive() and service.process.pid == pid, "the service was restarted or died"
    assert all(seconds < RECOVERY_LIMIT_S for seconds in recoveries), recoveries
    replies = reads + [reply for op in load.ops for reply in op.replies]
    statuses = sorted({reply.status for reply in replies})
    assert 500 not in statuses, (
        [reply.body for reply in replies if reply.status == 500][:3],
        service.log_tail(),
    )
    for reply in replies:
        if reply.status != 200:
            assert_clean_unavailable(reply)
    assert not [op.key for op in load.ops if not op.acked], load.summary()
    assert load.summary()["503"] > 0

    # Acknowledged exactly once, nothing half-written, chains and projections intact (the recovery
    # probes' customers were created without an Idempotency-Key: they are the log's only unkeyed events).
    logged = await check_log(cluster.url, load.ops, allow_unkeyed=True)
    print(f"\nrecovered after {[round(s, 2) for s in recoveries]} s; {load.summary()}; {logged}")
