"""The ledgerd API on a fresh migrated database, with API keys for two accounts in both modes, one per test
module: `server` serves `create_app(config)` in this process (the e2e tests), `server_process` is a real
`ledgerd serve` (the fault tests, and e2e modules where the process matters). Both listen on a real
loopback socket, so the official SDKs reach them over HTTP with only the base URL changed."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest_asyncio
import stripe
from aiohttp import web

from ledgerd.service.app import create_app
from ledgerd.service.auth import create_key
from ledgerd.service.config import Config
from tests.support.databases import fresh_database


@dataclass(frozen=True)
class Server:
    base_url: str
    db_url: str
    key: str  # account A, test mode
    live_key: str  # account A, live mode
    other_key: str  # account B, test mode
    process: subprocess.Popen[bytes] | None = None  # None: served in this process

    def client(self, key: str | None = None, retries: int = 0) -> stripe.StripeClient:
        return stripe.StripeClient(
            key or self.key, base_addresses={"api": self.base_url}, max_network_retries=retries
        )


def listening_socket() -> socket.socket:
    """A TCP socket on 127.0.0.1, on a port the OS picked, already listening. The test holds it for as long
    as it needs the port (across server restarts too) and hands it to the server (`serve_command`, or
    aiohttp's `web.SockSite`), so the port is never free for another process to take: no bind-and-release
    race. Connections made before the server accepts wait in the backlog."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def serve_command(sock: socket.socket, *args: str) -> list[str]:
    """`ledgerd serve` on the inherited socket `sock` (start it with `pass_fds=(sock.fileno(),)`)."""
    return [sys.executable, "-m", "ledgerd.service.cli", "serve", "--fd", str(sock.fileno()), *args]


def start_server(db_url: str, sock: socket.socket) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": db_url, "LEDGER_LOG_LEVEL": "warning"}
    return subprocess.Popen(
        serve_command(sock, "--no-migrate"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=(sock.fileno(),),
    )


async def healthy(port: int, timeout_s: float = 1.0) -> bool:
    """GET /healthz on a new connection answered 200 within `timeout_s` (a raw request: no client library in
    the way). The timeout matters when the test holds the listening socket: a connection then waits in the
    backlog until a server accepts it."""

    async def probe() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()

    try:
        status = await asyncio.wait_for(probe(), timeout_s)
    except (OSError, TimeoutError):
        return False
    return b" 200 " in status


async def wait_until_healthy(
    port: int, process: subprocess.Popen[bytes] | None = None, limit_s: float = 20.0
) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"ledgerd serve exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        if await healthy(port):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("ledgerd serve did not become healthy")


async def create_keys(db_url: str) -> tuple[str, str, str]:
    """Secret keys: account A test mode, account A live mode, account B test mode."""
    conn = await asyncpg.connect(db_url)
    try:
        _, key = await create_key(conn, "acct_a", livemode=False)
        _, live_key = await create_key(conn, "acct_a", livemode=True)
        _, other_key = await create_key(conn, "acct_b", livemode=False)
    finally:
        await conn.close()
    return key, live_key, other_key


class InProcessServer:
    """`create_app(config)` served by aiohttp (`AppRunner` + `SockSite` on a `listening_socket()`, as
    `web.run_app` serves it, handler cancellation off) on an event loop in a background thread: synchronous
    tests (the stripe SDK) and the test's own event loop both reach it over HTTP while it runs."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sock = listening_socket()
        self.port = port_of(self.sock)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=f"ledgerd-{self.port}", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None or not self._ready.is_set():
            self.stop()
            raise RuntimeError(f"the in-process ledgerd did not start: {self._error!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.sock.close()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(create_app(self.config), access_log=None, shutdown_timeout=2)
        try:
            await runner.setup()
            await web.SockSite(runner, self.sock).start()
        except BaseException as error:
            self._error = error
            self._ready.set()
            await runner.cleanup()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(
    admin_conn: asyncpg.Connection, database_url: str, template_db: str
) -> AsyncIterator[Server]:
    """The app served in this process per test module, on a fresh migrated database with keys for two
    accounts; configured as `ledgerd serve --no-migrate` configures it (Config.from_env)."""
    async with fresh_database(admin_conn, database_url, template_db, "ledger_e2e_") as db_url:
        key, live_key, other_key = await create_keys(db_url)
        config = Config.from_env(db_url, migrate_on_start=False, log_level="warning")
        served = InProcessServer(config)
        await asyncio.to_thread(served.start)
        try:
            await wait_until_healthy(served.port)
            yield Server(f"http://127.0.0.1:{served.port}", db_url, key, live_key, other_key)
        finally:
            await asyncio.to_thread(served.stop)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server_process(
    admin_conn: asyncpg.Connection, database_url: str, template_db: str
) -> AsyncIterator[Server]:
    """A real `ledgerd serve` per test module, on a fresh migrated database with keys for two accounts."""
    async with fresh_database(admin_conn, database_url, template_db, "ledger_e2e_") as db_url:
        key, live_key, other_key = await create_keys(db_url)
        with listening_socket() as sock:
            port = port_of(sock)
            process = start_server(db_url, sock)
            try:
                await wait_until_healthy(port, process)
                yield Server(f"http://127.0.0.1:{port}", db_url, key, live_key, other_key, process)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
