"""Helpers of the fault tests: `ledgerd serve` processes we may SIGKILL and restart, clients that retry the
way the Stripe SDKs do, and the checks every fault must leave true of the log. The fixtures built on them are
in tests/faults/conftest.py."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
import msgspec

from ledgerd.domain.log import GENESIS_HASH, RecordedEvent, event_hash
from ledgerd.service.auth import create_key
from ledgerd.service.store.postgres import EVENT_COLUMNS, row_to_event
from tests.support.server import healthy, listening_socket, port_of, serve_command

HEALTHY_WITHIN_S = 20.0


# ---------------------------------------------------------------------------------------------------
# the service process
# ---------------------------------------------------------------------------------------------------


@dataclass
class Service:
    """One `ledgerd serve` on a fixed port; `kill()` + `start()` restart it on the same port. The port is a
    socket this object holds for its whole life and hands to every incarnation (`serve --fd`): never free
    for another process to take, and while no incarnation runs, new connections wait in its backlog."""

    db_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    sock: socket.socket = field(default_factory=listening_socket)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def port(self) -> int:
        return port_of(self.sock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        env = {**os.environ, "DATABASE_URL": self.db_url, "LEDGER_LOG_LEVEL": "warning", **self.env}
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                serve_command(self.sock, "--no-migrate"),
                env=env,
                pass_fds=(self.sock.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,  # structlog writes its JSON lines (errors included) to stdout
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    async def start(self) -> None:
        self.spawn()
        await self.wait_healthy()

    async def wait_healthy(self, limit_s: float = HEALTHY_WITHIN_S) -> None:
        assert self.process is not None
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ledgerd serve exited ({self.process.returncode}):\n{self.log_tail()}")
            if await healthy(self.port):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"ledgerd serve did not become healthy:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, in-flight requests and transactions are cut off."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the service for good (and release its port)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.sock.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def new_key(db_url: str, account: str = "acct_faults", livemode: bool = False) -> str:
    conn = await asyncpg.connect(db_url)
    try:
        _, secret = await create_key(conn, account, livemode)
    finally:
        await conn.close()
    return secret


# ---------------------------------------------------------------------------------------------------
# a client that retries like the SDKs
# ---------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    at: float  # monotonic time the reply arrived
    elapsed: float

    @property
    def json(self) -> Any:
        return msgspec.json.decode(self.body)


async def call(
    session: aiohttp.ClientSession,
    base_url: str,
    method: str,
    path: str,
    key: str,
    form: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Reply:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    data = None
    if form is not None:
        data = urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    started = time.monotonic()
    async with session.request(method, base_url + path, data=data, headers=headers) as response:
        body = await response.read()
        now = time.monotonic()
        return Reply(response.status, dict(response.headers), body, now, now - started)


def retryable(reply: Reply) -> bool:
    """What stripe-python retries: Stripe-Should-Retry decides when present, else 409 and 5xx."""
    should = reply.headers.get("Stripe-Should-Retry")
    if should is not None:
        return should == "true"
    return reply.status == 409 or reply.status >= 500


@dataclass
class Op:
    """One logical request and everything that happened while getting it acknowledged."""

    key: str
    kind: str  # "create" | "txn"
    path: str
    form: dict[str, Any]
    amount: int  # the balance change it makes (a create's initial balance, a transaction's amount)
    customer_id: str | None = None
    object_id: str | None = None  # the acknowledged customer or transaction id
    acked: bool = False
    replayed: bool = False
    attempts: int = 0
    connection_errors: int = 0
    replies: list[Reply] = field(default_factory=list)  # every HTTP reply (not connection errors)
    final: Reply | None = None


async def send_until_acknowledged(
    session: aiohttp.ClientSession,
    base_url: str,
    key: str,
    op: Op,
    *,
    deadline: float,
    rng: random.Random,
) -> Op:
    """POST `op` with its Idempotency-Key until a 2xx or a non-retryable answer (or the deadline)."""
    while time.monotonic() < deadline:
        op.attempts += 1
        try:
            reply = await call(session, base_url, "POST", op.path, key, op.form, op.key)
        except (TimeoutError, aiohttp.ClientError, OSError):
            op.connection_errors += 1
            await asyncio.sleep(rng.uniform(0.03, 0.1))
            continue
        op.replies.append(reply)
        if 200 <= reply.status < 300:
            op.acked, op.final = True, reply
            op.replayed = reply.headers.get("Idempotent-Replayed") == "true"
            op.object_id = reply.json["id"]
            if op.kind == "create":
                op.customer_id = op.object_id
            return op
        if not retryable(reply):
            op.final = reply
            return op
        await asyncio.sleep(rng.uniform(0.03, 0.15))  # Retry-After says 1 s; the test has no time for it
    return op


class Load:
    """Concurrent clients creating customers and posting balance transactions on them, each request
    sent until acknowledged with its own Idempotency-Key. `stop()` ends new work; in-flight requests
    still finish (they retry until acknowledged or the deadline)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        key: str,
        *,
        seed: int,
        workers: int = 6,
        deadline_s: float = 60.0,
        create_share: float = 0.2,
    ) -> None:
        self.session = session
        self.base_url = base_url
        self.key = key
        self.seed = seed
        self.workers = workers
        self.deadline = time.monotonic() + deadline_s
        self.create_share = create_share
        self.ops: list[Op] = []
        self.customers: list[str] = []
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self.worker(n)) for n in range(self.workers)]

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.gather(*self.tasks)

    def next_op(self, rng: random.Random, worker: int, n: int) -> Op:
        key = f"fault-{self.seed}-{worker}-{n}"
        if len(self.customers) < 3 or rng.random() < self.create_share:
            balance = rng.choice([0, 0, rng.randint(-5_000, 5_000) or 1])
            form: dict[str, Any] = {"name": f"w{worker}-{n}", "metadata[op]": key}
            if balance:
                form.update(balance=balance, currency="usd")
            return Op(key, "create", "/v1/customers", form, balance)
        customer = rng.choice(self.customers)
        amount = rng.randint(-1_000, 1_000) or 7
        form = {"amount": amount, "currency": "usd", "metadata[op]": key}
        return Op(key, "txn", f"/v1/customers/{customer}/balance_transactions", form, amount, customer)

    async def worker(self, worker: int) -> None:
        rng = random.Random(self.seed * 1000 + worker)
        n = 0
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            op = self.next_op(rng, worker, n)
            n += 1
            self.ops.append(op)
            await send_until_acknowledged(
                self.session, self.base_url, self.key, op, deadline=self.deadline, rng=rng
            )
            if op.acked and op.kind == "create":
                self.customers.append(op.object_id or "")

    def summary(self) -> dict[str, int]:
        replies = [reply for op in self.ops for reply in op.replies]
        return {
            "ops": len(self.ops),
            "acked": sum(op.acked for op in self.ops),
            "replayed": sum(op.replayed for op in self.ops),
            "connection_errors": sum(op.connection_errors for op in self.ops),
            "non_2xx": sum(not 200 <= reply.status < 300 for reply in replies),
            "503": sum(reply.status == 503 for reply in replies),
        }


# ---------------------------------------------------------------------------------------------------
# what must hold afterwards
# ---------------------------------------------------------------------------------------------------


async def load_events(conn: asyncpg.Connection) -> list[RecordedEvent]:
    rows = await conn.fetch(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY stream_id, stream_version")
    return [row_to_event(row) for row in rows]


def check_chains(events: list[RecordedEvent], heads: dict[str, tuple[int, bytes]]) -> None:
    """Recompute every stream's hash chain from the genesis hash; compare with the stream heads."""
    by_stream: dict[str, list[RecordedEvent]] = {}
    for event in events:
        by_stream.setdefault(event.stream_id, []).append(event)
    assert set(by_stream) == set(heads), "streams without events or events without a stream"
    for stream_id, stream in by_stream.items():
        previous = GENESIS_HASH
        for version, event in enumerate(stream, start=1):
            assert event.stream_version == version, f"{stream_id}: version gap at {version}"
            expected = event_hash(previous, event)
            assert event.hash == expected, f"{stream_id} v{version}: hash chain broken"
            previous = expected
        assert heads[stream_id] == (len(stream), previous), f"{stream_id}: stream head disagrees"


async def check_log(db_url: str, ops: list[Op], *, allow_unkeyed: bool = False) -> dict[str, int]:
    """The log after a fault: every acknowledged request is in it exactly once (one writing transaction
    under its Idempotency-Key, with the acknowledged ids and amounts), nothing else is, the hash chains
    and stream heads verify, `service.audit.verify` passes, and every balance is the sum of its customer's
    acknowledged adjustments, in the projection as in the log."""
    conn = await asyncpg.connect(db_url)
    try:
        events = await load_events(conn)
        heads = {
            row["stream_id"]: (row["version"], bytes(row["head_hash"]))
            for row in await conn.fetch("SELECT stream_id, version, head_hash FROM streams")
        }
        records = {
            row["key"]: row["status"] for row in await conn.fetch("SELECT key, status FROM idempotency_keys")
        }
        balances = {
            row["id"]: row["balance"] for row in await conn.fetch("SELECT id, balance FROM customers")
        }
    finally:
        await conn.close()

    by_key: dict[str | None, list[RecordedEvent]] = {}
    for event in events:
        by_key.setdefault(event.metadata.get("idempotency_key"), []).append(event)
    ours = {op.key: op for op in ops}
    if allow_unkeyed:
        by_key.pop(None, None)
    assert set(by_key) <= set(ours), f"events under unknown keys: {sorted(set(by_key) - set(ours))[:5]}"

    for key, logged in by_key.items():
        transactions = {event.tx_id for event in logged}
        assert len(transactions) == 1, f"{key}: appended by {len(transactions)} transactions"

    expected_balance: dict[str, int] = {}
    for op in ops:
        logged = by_key.get(op.key, [])
        if not op.acked:
            continue
        assert logged, f"{op.key}: acknowledged ({op.object_id}) but not in the log"
        assert records.get(op.key) == 200, f"{op.key}: idempotency record {records.get(op.key)}"
        adjustments = [event for event in logged if event.event_type == "BalanceAdjusted"]
        if op.kind == "create":
            assert logged[0].event_type == "CustomerCreated"
            assert {event.stream_id for event in logged} == {op.object_id}
            assert [event.data["amount"] for event in adjustments] == ([op.amount] if op.amount else [])
        else:
            assert [
                (event.stream_id, event.data["transaction_id"], event.data["amount"]) for event in logged
            ] == [(op.customer_id, op.object_id, op.amount)], f"{op.key}: logged {logged}"
        customer = op.customer_id or ""
        expected_balance[customer] = expected_balance.get(customer, 0) + op.amount

    for key, status in records.items():
        if key in ours and status == 200:  # every request of the loads appends
            assert key in by_key, f"{key}: idempotency record without its events (a half-written command)"

    check_chains(events, heads)
    for customer, balance in expected_balance.items():
        assert balances[customer] == balance, (
            f"{customer}: balance {balances[customer]}, acknowledged {balance}"
        )
        last = [e for e in events if e.stream_id == customer and e.event_type == "BalanceAdjusted"]
        assert (last[-1].data["ending_balance"] if last else 0) == balance

    await audit_verify(db_url)
    return {"events": len(events), "streams": len(heads), "keys": len(by_key)}


async def audit_verify(db_url: str) -> None:
    """`ledgerd verify`'s checks, when the audit module is there."""
    try:
        from ledgerd.service.audit import verify
    except ImportError:  # pragma: no cover - the audit module is optional for these tests
        return
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=3)
    try:
        report = await verify(pool)
    finally:
        await pool.close()
    assert report.ok, report.summary()
