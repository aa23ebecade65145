"""Issue 17, tried as an attacker and as an unlucky operator would, against real `ledgerd serve` processes:

* decompression bombs: /healthz keeps answering in milliseconds while four 1 MB deflate bodies (1 GiB
  inflated) are in flight, each refused with a 415 from its headers;
* start-up without the database: listening at once, /readyz 503 with the reason, API calls 503 with
  Retry-After; then the database becomes reachable and the same process migrates, becomes ready and writes;
* a customer with 20,000 events: its history pages in bounded time while another tenant keeps its latency;
* a client hanging up mid-body is a 499, never a 503; a stalled body is a 408; a malformed request is one
  JSON log line; duplicate JSON keys are a 400 naming the key.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgspec
import pytest
import pytest_asyncio

from ledgerd.domain.customer import BalanceAdjusted
from ledgerd.domain.log import EventMetadata, StreamHeader, prepare
from ledgerd.service.auth import create_key, revoke_key
from ledgerd.service.store.postgres import PostgresEventStore
from tests.support.appending import append_to
from tests.support.databases import create_database as _create_database
from tests.support.databases import drop_database as _drop_database
from tests.support.databases import random_name as _random_name
from tests.support.databases import with_database as _with_database
from tests.support.faults import Service, call, new_key
from tests.support.server import Server, listening_socket, serve_command
from tests.support.server import port_of as socket_port

FORM = "application/x-www-form-urlencoded"


async def raw_exchange(port: int, request: bytes, *, read_timeout: float = 10.0) -> bytes:
    """Send bytes on a fresh connection; everything the server answers until it closes (or the timeout)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        chunks = []
        deadline = time.monotonic() + read_timeout
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()


async def timed_healthz(port: int) -> float:
    started = time.perf_counter()
    reply = await raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    elapsed = time.perf_counter() - started
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    return elapsed


def port_of(server: Server) -> int:
    return int(urlsplit(server.base_url).port or 0)


def metric(text: str, route: str, status: int) -> float:
    pattern = re.compile(
        r'^ledger_http_requests_total\{method="POST",route="'
        + re.escape(route)
        + r'",status="'
        + str(status)
        + r'"\} (\S+)$',
        re.M,
    )
    found = pattern.search(text)
    return float(found.group(1)) if found else 0.0


# ---------------------------------------------------------------------------------------------------
# 1. decompression bombs
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """The issue's body: `name=` and 1 GiB of 'x', deflated (about 1 MB)."""
    compressor = zlib.compressobj(9)
    block = b"x" * (1 << 20)
    body = compressor.compress(b"name=") + b"".join(compressor.compress(block) for _ in range(1024))
    body += compressor.flush()
    assert len(body) < 1_100_000
    return body


async def send_bomb(port: int, body: bytes, key: str | None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"POST /v1/customers HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: {FORM}\r\n"
        f"Content-Encoding: deflate\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        for start in range(0, len(body), 16384):  # as a client on a fast link sends it
            writer.write(body[start : start + 16384])
            try:
                await writer.drain()
            except ConnectionError:  # refused from its headers, the rest is not read
                break
        return await asyncio.wait_for(reader.read(65536), 10)
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def test_healthz_answers_in_milliseconds_while_four_bombs_are_in_flight(
    server: Server, bomb: bytes
) -> None:
    port = port_of(server)
    idle = min([await timed_healthz(port) for _ in range(5)])
    for key in (None, server.key):  # without a key (the attack) and with one
        bombs = [asyncio.create_task(send_bomb(port, bomb, key)) for _ in range(4)]
        latencies = []
        while not all(task.done() for task in bombs) or len(latencies) < 10:
            latencies.append(await timed_healthz(port))
        replies = await asyncio.gather(*bombs)
        print(
            f"healthz idle {idle * 1000:.1f} ms, max during 4 bombs ({'with' if key else 'without'} a key) {max(latencies) * 1000:.1f} ms"
        )
        assert max(latencies) < 0.1, (idle, latencies)
        for reply in replies:
            if reply:  # a connection reset before the 415 was read counts as refused, too
                assert reply.startswith(b"HTTP/1.1 415"), reply[:300]
                body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
                assert body["error"]["type"] == "invalid_request_error"
                assert "Content-Encoding" in body["error"]["message"]
        assert any(replies), "at least one 415 must have been read"


# ---------------------------------------------------------------------------------------------------
# 2. start-up without the database
# ---------------------------------------------------------------------------------------------------


class Proxy:
    """A TCP port that forwards to the PostgreSQL server once `open()` has been called (nothing listens
    on it before): the database 'becomes reachable' without the service being restarted."""

    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        query = parse_qs(parts.query)
        self.unix_dir = query["host"][0] if parts.hostname is None and "host" in query else None
        self.target_host = parts.hostname or "127.0.0.1"
        self.target_port = (
            int(query.get("port", [parts.port or 5432])[0]) if self.unix_dir else (parts.port or 5432)
        )
        # bound, not listening: connections are refused until open() (the port stays ours all along)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = socket_port(self.sock)
        self.server: asyncio.Server | None = None

    def url_for(self, database_url: str, database: str) -> str:
        parts = urlsplit(database_url)
        user = parts.username or "postgres"
        password = f":{parts.password}" if parts.password else ""
        return urlunsplit(("postgresql", f"{user}{password}@127.0.0.1:{self.port}", f"/{database}", "", ""))

    async def open(self) -> None:
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while chunk := await reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
            if self.unix_dir:
                path = f"{self.unix_dir}/.s.PGSQL.{self.target_port}"
                reader, writer = await asyncio.open_unix_connection(path)
            else:
                reader, writer = await asyncio.open_connection(self.target_host, self.target_port)
            await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))

        self.server = await asyncio.start_server(forward, sock=self.sock)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.sock.close()


async def get(
    session: aiohttp.ClientSession, url: str, key: str | None = None
) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with session.get(url, headers=headers) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


def spawn_serve(db_url: str, sock: socket.socket, log_path: Path) -> subprocess.Popen[bytes]:
    """`ledgerd serve` without --no-migrate: it migrates as soon as the database answers."""
    env = {**os.environ, "DATABASE_URL": db_url, "LEDGER_LOG_LEVEL": "info"}
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            serve_command(sock),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
        )


async def test_serve_starts_without_the_database_and_becomes_ready_when_it_appears(
    admin_conn: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    name = _random_name("ledger_down_")
    await _create_database(admin_conn, name, "template0")  # empty: `serve` migrates it once it can
    proxy = Proxy(database_url)
    sock = listening_socket()
    port = socket_port(sock)
    log_path = tmp_path / "serve.log"
    process = spawn_serve(proxy.url_for(database_url, name), sock, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            started = time.monotonic()
            # serving at once: /healthz answers without the database (the first request waits in the
            # socket's backlog until the process accepts)
            status, _, _ = await get(session, f"{base}/healthz")
            assert time.monotonic() - started < 10, log_path.read_text()
            assert process.poll() is None, log_path.read_text()
            assert status == 200
            status, headers, body = await get(session, f"{base}/readyz")
            assert status == 503 and body["error"]["type"] == "api_error"
            assert "not reachable" in body["error"]["message"], body
            status, headers, body = await get(session, f"{base}/v1/customers", key="sk_test_whatever")
            assert (
                status == 503 and headers["Retry-After"] == "1" and headers["Stripe-Should-Retry"] == "true"
            )
            assert body["error"]["type"] == "api_error" and body["error"]["code"] == "service_unavailable"
            await asyncio.sleep(1.0)  # a few rounds of backoff, still serving
            assert process.poll() is None
            assert (await get(session, f"{base}/readyz"))[0] == 503

            await proxy.open()
            deadline = time.monotonic() + 20
            while (await get(session, f"{base}/readyz"))[0] != 200:
                assert time.monotonic() < deadline, log_path.read_text()
                await asyncio.sleep(0.1)
            conn = await asyncpg.connect(_with_database(database_url, name))
            try:
                migrated = await conn.fetchval("SELECT count(*) FROM schema_migrations")
                _, key = await create_key(conn, "acct_late", livemode=False)
            finally:
                await conn.close()
            assert migrated > 0  # `serve` (without --no-migrate) migrated once the database answered
            headers = {"Authorization": f"Bearer {key}", "Content-Type": FORM}
            async with session.post(f"{base}/v1/customers", data="name=late", headers=headers) as response:
                assert response.status == 200, await response.text()
                created = await response.json()
            status, _, fetched = await get(session, f"{base}/v1/customers/{created['id']}", key=key)
            assert status == 200 and fetched["name"] == "late"
        assert process.poll() is None  # the same process, never restarted
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 15)  # the proxy keeps forwarding while it shuts down
        await proxy.close()
        sock.close()
        await _drop_database(admin_conn, name)
    lines = log_path.read_text().splitlines()
    assert any('"database_unreachable"' in line for line in lines)
    assert not any("Traceback" in line for line in lines), "\n".join(lines[-20:])


# ---------------------------------------------------------------------------------------------------
# 3. a 20,000-event customer
# ---------------------------------------------------------------------------------------------------

BIG_STREAM = 20_000


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def big_customer(server: Server) -> str:
    """A customer created over HTTP, then 19,999 balance adjustments appended through the store's real
    write (1,000 events a statement, chained like any command's)."""
    async with aiohttp.ClientSession() as session:
        reply = await call(session, server.base_url, "POST", "/v1/customers", server.key, {"name": "big"})
    assert reply.status == 200
    cid: str = reply.json["id"]
    pool = await asyncpg.create_pool(server.db_url, min_size=1, max_size=2)
    try:
        store = PostgresEventStore(pool)
        head = await pool.fetchrow("SELECT version, recorded_at FROM streams WHERE stream_id = $1", cid)
        version = head["version"]
        at = int(head["recorded_at"].timestamp() * 1_000_000)
        header = StreamHeader(stream_id=cid, stream_type="customer", account="acct_a", livemode=False)
        metadata = EventMetadata(account="acct_a", livemode=False, request_id="req_bulk")
        balance = 0
        while version < BIG_STREAM:
            at += 1_000
            pending = []
            for _ in range(min(1_000, BIG_STREAM - version - len(pending))):
                balance += 1
                event = BalanceAdjusted(
                    customer_id=cid,
                    transaction_id=f"cbtxn_big{version + len(pending):08d}",
                    amount=1,
                    currency="usd",
                    type="adjustment",
                    ending_balance=balance,
                    created=at // 1_000_000,
                )
                pending.append(prepare(event, f"evt_big{version + len(pending):08d}{cid[-6:]}"))
            async with store.connection() as connection:
                await append_to(connection, header, version, pending, metadata, at)
            version += len(pending)
    finally:
        await pool.close()
    return cid


async def test_the_history_of_a_20k_event_customer_pages_in_bounded_time(
    server: Server, big_customer: str
) -> None:
    url = f"{server.base_url}/v1/customers/{big_customer}/history"
    headers = {"Authorization": f"Bearer {server.key}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(url, headers=headers) as response:
            first = await response.json()
        assert response.status == 200
        assert [entry["version"] for entry in first["data"]] == list(range(1, 11))  # default limit 10
        assert first["has_more"] is True and first["object"] == "list"
        assert first["data"][0]["type"] == "CustomerCreated"
        versions: list[int] = []
        slowest = 0.0
        cursor = None
        pages = 0
        while True:
            query = "limit=100" + (f"&starting_after={cursor}" if cursor else "")
            started = time.perf_counter()
            async with session.get(f"{url}?{query}", headers=headers) as response:
                page = await response.json()
            slowest = max(slowest, time.perf_counter() - started)
            assert response.status == 200, page
            assert len(page["data"]) <= 100
            versions += [entry["version"] for entry in page["data"]]
            pages += 1
            if not page["has_more"]:
                break
            cursor = page["data"][-1]["id"]
        print(f"history of {BIG_STREAM} events: {pages} pages, slowest {slowest * 1000:.0f} ms")
        assert versions == list(range(1, BIG_STREAM + 1))
        assert pages == BIG_STREAM // 100
        assert slowest < 2.0, slowest  # each page folds its own 100 events (was: 11 MB, 0.7 s, all at once)
        last = page["data"][-1]
        assert last["changes"]["balance"] == {"before": BIG_STREAM - 2, "after": BIG_STREAM - 1}
        # backwards from the end, and a cursor that is not an entry of this customer
        async with session.get(f"{url}?limit=3&ending_before={last['id']}", headers=headers) as response:
            before = await response.json()
        assert [entry["version"] for entry in before["data"]] == [
            BIG_STREAM - 3,
            BIG_STREAM - 2,
            BIG_STREAM - 1,
        ]
        assert before["has_more"] is True
        async with session.get(f"{url}?starting_after=evt_nope", headers=headers) as response:
            missing = await response.json()
        assert response.status == 400 and missing["error"]["param"] == "starting_after"
        for bad in ("limit=0", "limit=101", "limit=x", "bogus=1"):
            async with session.get(f"{url}?{bad}", headers=headers) as response:
                assert response.status == 400, bad
        async with session.get(url, headers={"Authorization": f"Bearer {server.other_key}"}) as response:
            assert response.status == 404  # another tenant's customer


async def test_deep_history_and_as_of_folds_do_not_stall_another_tenant(
    server: Server, big_customer: str
) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        other = await call(
            session, server.base_url, "POST", "/v1/customers", server.other_key, {"name": "other"}
        )
        other_url = f"{server.base_url}/v1/customers/{other.json['id']}"
        other_headers = {"Authorization": f"Bearer {server.other_key}"}
        big_headers = {"Authorization": f"Bearer {server.key}"}

        async def other_latency() -> float:
            started = time.perf_counter()
            async with session.get(other_url, headers=other_headers) as response:
                assert response.status == 200
                await response.read()
            return time.perf_counter() - started

        baseline = statistics.median([await other_latency() for _ in range(20)])
        history = f"{server.base_url}/v1/customers/{big_customer}/history"
        heavy = []
        for index in range(4):  # deep cursors (each folds up to its version) and as_of folds of the stream
            # below the checkpoints the paging test left (the latest 64 pages): folds from the start
            cursor = f"evt_big{13_000 - 997 * index - 3:08d}{big_customer[-6:]}"
            heavy.append(f"{history}?limit=100&starting_after={cursor}")
            heavy.append(f"{server.base_url}/v1/customers/{big_customer}?as_of={int(time.time()) + 3600}")
        as_of = f"as_of={int(time.time()) + 3600}&limit=100"
        heavy.append(f"{server.base_url}/v1/customers/{big_customer}/balance_transactions?{as_of}")

        async def run(url: str) -> int:
            async with session.get(url, headers=big_headers) as response:
                await response.read()
                return int(response.status)

        tasks = [asyncio.create_task(run(url)) for url in heavy * 2]
        during = []
        while not all(task.done() for task in tasks) or not during:
            during.append(await other_latency())
        statuses = await asyncio.gather(*tasks)
    print(
        f"other tenant: median {baseline * 1000:.1f} ms idle, median {statistics.median(during) * 1000:.1f} ms / "
        f"max {max(during) * 1000:.1f} ms during {len(tasks)} deep history and as_of reads"
    )
    assert set(statuses) == {200}, statuses
    # Folds run in a worker thread (sharing the GIL with the loop), a chunk at a time: the other tenant
    # is slowed, never stalled (the issue measured 5 s with 8 history calls; here typically < 0.3 s, the
    # bound leaves room for a box shared with other work).
    assert max(during) < 1.0, (baseline, sorted(during)[-5:])


# ---------------------------------------------------------------------------------------------------
# 5. hang-ups, stalled bodies, malformed requests, duplicate JSON keys
# ---------------------------------------------------------------------------------------------------


async def test_a_client_hanging_up_mid_body_is_a_499_never_a_503(server: Server) -> None:
    port = port_of(server)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.base_url}/metrics") as response:
            before = await response.text()
        for _ in range(5):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                (
                    f"POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.key}\r\n"
                    f"Content-Type: {FORM}\r\nContent-Length: 1000\r\n\r\nname="
                ).encode()
                + b"x" * 400
            )
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.close()
        deadline = time.monotonic() + 5
        while True:
            async with session.get(f"{server.base_url}/metrics") as response:
                after = await response.text()
            if metric(after, "/v1/customers", 499) - metric(before, "/v1/customers", 499) >= 5:
                break
            assert time.monotonic() < deadline, after
            await asyncio.sleep(0.1)
    assert metric(after, "/v1/customers", 503) == metric(before, "/v1/customers", 503)


async def test_a_stalled_body_is_a_408_after_the_configured_timeout(db_url: str, spawn_service: Any) -> None:
    service: Service = await spawn_service(db_url, LEDGER_BODY_TIMEOUT_SECONDS="0.5")
    key = await new_key(db_url)
    started = time.monotonic()
    reply = await raw_exchange(
        service.port,
        (
            f"POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {FORM}\r\nContent-Length: 100\r\n\r\nname=slo"
        ).encode(),
    )
    elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408"), reply[:300]
    assert 0.4 < elapsed < 5, elapsed  # answered, and the connection closed, soon after the timeout
    body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "request_timeout"
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM events") == 0
    finally:
        await conn.close()


async def test_a_malformed_request_is_one_json_log_line(db_url: str, spawn_service: Any) -> None:
    service: Service = await spawn_service(db_url)
    offset = len(service.log_path.read_bytes())
    garbage = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/customers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /v1/customers HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    ]
    for request in garbage:
        reply = await raw_exchange(service.port, request, read_timeout=5)
        assert re.match(rb"HTTP/1\.[01] 400 ", reply), reply[:200]  # aiohttp's parser answers, in plain text
    await asyncio.sleep(0.3)
    lines = service.log_path.read_bytes()[offset:].decode().splitlines()
    assert len(lines) >= len(garbage), lines
    for line in lines:
        entry = json.loads(line)  # every line is one JSON object: no traceback lines
        assert "Traceback" not in line
        if entry["logger"] == "aiohttp.server":
            assert entry["event"].startswith("Error handling request") and entry["error"]


async def test_duplicate_json_keys_are_a_400_naming_the_key(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"}
        for body, param in (
            (b'{"name": "a", "name": "b"}', "name"),
            (b'{"metadata": {"k": "1", "k": "2"}}', "k"),
        ):
            async with session.post(
                f"{server.base_url}/v1/customers", data=body, headers=headers
            ) as response:
                reply = msgspec.json.decode(await response.read())
            assert response.status == 400, reply
            assert reply["error"]["param"] == param and f"'{param}'" in reply["error"]["message"]
        async with session.post(
            f"{server.base_url}/v1/customers",
            data=b'{"name": "a", "metadata": {"name": "x"}}',
            headers=headers,
        ) as response:
            assert response.status == 200  # the same key in two objects is no duplicate


async def test_a_revoked_key_is_refused_within_the_stated_second(server: Server) -> None:
    conn = await asyncpg.connect(server.db_url)
    try:
        key_id, secret = await create_key(conn, "acct_revoked", livemode=False)
        async with aiohttp.ClientSession() as session:
            assert (
                await call(session, server.base_url, "GET", "/v1/customers", secret)
            ).status == 200  # cached
            await revoke_key(conn, key_id)
            revoked_at = time.monotonic()
            statuses = []
            for _ in range(60):  # every 50 ms for 3 s
                statuses.append((await call(session, server.base_url, "GET", "/v1/customers", secret)).status)
                if statuses[-1] != 200:
                    break
                await asyncio.sleep(0.05)
            refused_after = time.monotonic() - revoked_at
    finally:
        await conn.close()
    assert statuses[-1] == 401, statuses
    assert refused_after <= 1.5, refused_after  # the cache bound stated next to `api-keys revoke`: 1 s
