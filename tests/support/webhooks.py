"""Webhook test harness: a real aiohttp receiver on 127.0.0.1 that records every request (exact body bytes
and headers) and answers as planned, and the ledgerd app served in-process with chosen LEDGER_WEBHOOK_*
settings (so tests can await both sides in one event loop)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
import msgspec
from aiohttp import web

from ledgerd.service.app import create_app
from ledgerd.service.config import Config
from tests.support.server import create_keys, listening_socket, port_of


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> Any:
        return msgspec.json.decode(self.body)


# A planned answer: a status, or a dict {"status": 200, "sleep": 2.0, "headers": {...}}.
Answer = int | dict[str, Any]


@dataclass
class Receiver:
    sock: socket.socket = field(default_factory=listening_socket)
    received: list[Received] = field(default_factory=list)
    plans: dict[str, list[Answer]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def port(self) -> int:
        return port_of(self.sock)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def plan(self, path: str, *answers: Answer) -> None:
        self.plans[path] = list(answers)

    def at(self, path: str) -> list[Received]:
        return [item for item in self.received if item.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.path, dict(request.headers), body, time.monotonic()))
        self.arrived.set()
        queue = self.plans.get(request.path)
        answer: Answer = queue.pop(0) if queue else 200
        if isinstance(answer, int):
            answer = {"status": answer}
        if answer.get("sleep"):
            await asyncio.sleep(answer["sleep"])
        return web.Response(status=answer.get("status", 200), text=answer.get("text", "ok"), headers=answer.get("headers"))

    async def wait_for(self, predicate: Callable[[list[Received]], bool], within: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + within
        while not predicate(self.received):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"receiver: condition not met within {within} s; got {len(self.received)}")
            self.arrived.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), min(left, 0.2))
        return self.received


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, receiver.sock).start()  # the site closes the socket on cleanup
    try:
        yield receiver
    finally:
        await runner.cleanup()


@dataclass
class Api:
    base_url: str
    db_url: str
    key: str  # acct_a, test mode
    live_key: str  # acct_a, live mode
    other_key: str  # acct_b, test mode
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, form: dict[str, Any] | None = None, key: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        data = None
        url = self.base_url + path
        if form is not None and method in ("GET", "DELETE"):
            url += "?" + urlencode(form, doseq=True)
        elif form is not None:
            data = urlencode(form, doseq=True)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        async with self.http.request(method, url, data=data, headers=headers) as response:
            return response.status, msgspec.json.decode(await response.read())

    async def ok(self, method: str, path: str, form: dict[str, Any] | None = None, key: str | None = None) -> Any:
        status, body = await self.call(method, path, form, key)
        assert status == 200, (status, body)
        return body

    async def endpoint(self, url: str, events: tuple[str, ...] = ("*",), key: str | None = None, **extra: Any) -> Any:
        form: dict[str, Any] = {"url": url, **extra}
        for index, name in enumerate(events):
            form[f"enabled_events[{index}]"] = name
        return await self.ok("POST", "/v1/webhook_endpoints", form, key)

    async def customer(self, key: str | None = None, **form: Any) -> Any:
        return await self.ok("POST", "/v1/customers", form or {"name": "Jenny"}, key)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.db_url)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows
        finally:
            await conn.close()

    async def wait_pending_zero(self, event_id: str, within: float = 20.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            event = await self.ok("GET", f"/v1/events/{event_id}")
            if event["pending_webhooks"] == 0 or time.monotonic() > deadline:
                return event
            await asyncio.sleep(0.1)


WEBHOOK_ENV = ("LEDGER_WEBHOOK_ALLOW_CIDRS", "LEDGER_WEBHOOK_RETRY_SCHEDULE", "LEDGER_WEBHOOK_TIMEOUT_S",
               "LEDGER_WEBHOOK_DISABLE_AFTER_HOURS", "LEDGER_WEBHOOK_CONCURRENCY", "LEDGER_WEBHOOKS")


@asynccontextmanager
async def serving(db_url: str, **env: str) -> AsyncIterator[Api]:
    """The app on a free port with these LEDGER_WEBHOOK_* settings (the rest of the environment unset)."""
    key, live_key, other_key = await create_keys(db_url)
    saved = {name: os.environ.pop(name) for name in WEBHOOK_ENV if name in os.environ}
    os.environ.update(env)
    try:
        app = create_app(Config(database_url=db_url, access_log=False, log_level="warning", group_commit_lanes=0))
    finally:
        for name in env:
            os.environ.pop(name, None)
        os.environ.update(saved)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = listening_socket()
    port = port_of(sock)
    await web.SockSite(runner, sock).start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Api(f"http://127.0.0.1:{port}", db_url, key, live_key, other_key, http)
    finally:
        await runner.cleanup()
