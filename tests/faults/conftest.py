"""Fixtures of the fault tests: the `server` of the e2e tests, `ledgerd serve` processes a test may SIGKILL and
restart (`spawn_service`), and an HTTP client session. The helpers (retrying clients, load, the log checks)
are in tests/support/faults.py.

Everything here starts its own processes and databases: the DATABASE_URL server is only used for fresh
databases (never restarted); tests that restart PostgreSQL use a private embedded cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.support.faults import Service
from tests.support.server import Server
from tests.support.server import server_process as server_process


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(server_process: Server) -> Server:
    """Fault tests drive a real `ledgerd serve` process."""
    return server_process


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[Service]]:
    """Services a test started (via `spawn_service`); all stopped at the end of the test."""
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


@pytest.fixture
def spawn_service(services: list[Service], tmp_path: Path) -> Any:
    async def spawn(db_url: str, **env: str) -> Service:
        service = Service(db_url, tmp_path / f"service-{len(services)}.log", dict(env))
        services.append(service)
        await service.start()
        return service

    return spawn


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # Each request on a new connection: a killed server must not leave clients on dead keep-alives
    # (the SDKs recover from those too, but here it only adds noise to the retry counts).
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session
