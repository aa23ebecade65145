"""A real `ledgerd serve` process on a fresh migrated database, with API keys for two accounts in both
modes: the `server` fixture (one per test module) of the e2e and fault tests, and the helpers it uses."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest_asyncio
import stripe

from ledgerd.service.auth import create_key
from tests.support.databases import fresh_database


@dataclass(frozen=True)
class Server:
    base_url: str
    db_url: str
    key: str  # account A, test mode
    live_key: str  # account A, live mode
    other_key: str  # account B, test mode
    process: subprocess.Popen[bytes]

    def client(self, key: str | None = None, retries: int = 0) -> stripe.StripeClient:
        return stripe.StripeClient(
            key or self.key, base_addresses={"api": self.base_url}, max_network_retries=retries
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(db_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": db_url, "LEDGER_LOG_LEVEL": "warning"}
    return subprocess.Popen(
        [sys.executable, "-m", "ledgerd.service.cli", "serve", "--port", str(port), "--no-migrate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def healthy(port: int) -> bool:
    """GET /healthz on a new connection answered 200 (a raw request: no client library in the way)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        status = await reader.readline()
        writer.close()
    except OSError:
        return False
    return b" 200 " in status


async def wait_until_healthy(port: int, process: subprocess.Popen[bytes], limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"ledgerd serve exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        if await healthy(port):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("ledgerd serve did not become healthy")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(
    admin_conn: asyncpg.Connection, database_url: str, template_db: str
) -> AsyncIterator[Server]:
    """A real `ledgerd serve` per test module, on a fresh migrated database with keys for two accounts."""
    async with fresh_database(admin_conn, database_url, template_db, "ledger_e2e_") as db_url:
        conn = await asyncpg.connect(db_url)
        try:
            _, key = await create_key(conn, "acct_a", livemode=False)
            _, live_key = await create_key(conn, "acct_a", livemode=True)
            _, other_key = await create_key(conn, "acct_b", livemode=False)
        finally:
            await conn.close()
        port = free_port()
        process = start_server(db_url, port)
        try:
            await wait_until_healthy(port, process)
            yield Server(f"http://127.0.0.1:{port}", db_url, key, live_key, other_key, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
