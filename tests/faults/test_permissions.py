"""The service's database role (migrations/0005_service_role.sql): connected as a login member of
`ledger_service`, as operators are told to run it, the whole API works, and the log cannot be rewritten:
UPDATE, DELETE and TRUNCATE on `events` are refused by PostgreSQL's privilege check (permission denied),
before the append-only triggers are even reached, as is every way around them."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from ledgerd.service.app import prune_idempotency_keys
from ledgerd.service.migrate import bundled_migrations
from tests.support.databases import create_database, drop_database, random_name, with_database
from tests.support.faults import call, check_chains, load_events, new_key


def as_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}").geturl()


@pytest_asyncio.fixture(loop_scope="session")
async def app_url(db_url: str) -> AsyncIterator[str]:
    """URL of a throwaway login role that is a member of ledger_service (and nothing else)."""
    user, password = f"ledger_app_{secrets.token_hex(4)}", secrets.token_hex(12)
    admin = await asyncpg.connect(db_url)
    try:
        await admin.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}' IN ROLE ledger_service")
        yield as_user(db_url, user, password)
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {user}")  # its sessions are gone: the service stopped
        await admin.close()


async def refused(conn: asyncpg.Connection, sql: str) -> str:
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as caught:
        await conn.execute(sql)
    return str(caught.value)


async def test_as_the_service_role_the_api_works_and_the_log_cannot_be_rewritten(
    db_url: str, app_url: str, spawn_service, http: aiohttp.ClientSession
) -> None:
    key = await new_key(db_url)
    service = await spawn_service(app_url)
    base = service.base_url

    async def ok(
        method: str, path: str, form: dict[str, object] | None = None, idem: str | None = None
    ) -> dict:
        reply = await call(http, base, method, path, key, form, idem)
        assert reply.status == 200, (method, path, reply.body)
        body: dict = reply.json
        return body

    # Every endpoint, writes and reads, through the role's privileges.
    jenny = await ok(
        "POST",
        "/v1/customers",
        {"email": "jenny@example.com", "balance": 100, "currency": "usd", "external_id": "ext-1"},
        "perm-create",
    )
    cid = jenny["id"]
    again = await call(
        http,
        base,
        "POST",
        "/v1/customers",
        key,
        {"email": "jenny@example.com", "balance": 100, "currency": "usd", "external_id": "ext-1"},
        "perm-create",
    )
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert (await ok("POST", "/v1/customers", {"external_id": "ext-1", "name": "Jenny"}))["id"] == cid
    assert (await ok("POST", f"/v1/customers/{cid}", {"balance": 50, "metadata[plan]": "pro"}))[
        "balance"
    ] == 50
    txn = await ok("POST", f"/v1/customers/{cid}/balance_transactions", {"amount": -30, "currency": "usd"})
    assert txn["ending_balance"] == 20
    await ok("POST", f"/v1/customers/{cid}/balance_transactions/{txn['id']}", {"description": "goodwill"})
    await ok("GET", f"/v1/customers/{cid}/balance_transactions/{txn['id']}")
    assert len((await ok("GET", f"/v1/customers/{cid}/balance_transactions"))["data"]) == 3
    assert (await ok("GET", f"/v1/customers/{cid}"))["balance"] == 20
    assert [
        c["id"]
        for c in (await ok("GET", "/v1/customers/search?query=email%3A%27jenny%40example.com%27"))["data"]
    ] == [cid]
    assert (await ok("GET", "/v1/customers?limit=10"))["data"]
    events = (await ok("GET", "/v1/events?limit=100"))["data"]
    await ok("GET", f"/v1/events/{events[0]['id']}")
    other = await ok("POST", "/v1/customers", {"name": "to delete"})
    assert (await ok("DELETE", f"/v1/customers/{other['id']}"))["deleted"] is True
    assert (await call(http, base, "GET", "/readyz", key)).status == 200
    assert "unhandled_error" not in service.log_tail(200)

    app = await asyncpg.connect(app_url)
    owner = await asyncpg.connect(db_url)
    try:
        attributes = await app.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        assert tuple(attributes) == (False, False, False, False)
        assert await owner.fetchval("SELECT count(*) FROM events") > 0
        # The log: refused by the privilege check itself, not by the append-only trigger.
        for sql in ("UPDATE events SET data = data", "DELETE FROM events", "TRUNCATE events"):
            message = await refused(app, sql)
            assert message == "permission denied for table events", (sql, message)
        # ... and every way around it.
        for sql, expected in [
            ("ALTER TABLE events DISABLE TRIGGER USER", "must be owner of table events"),
            ("DROP TABLE events", "must be owner of table events"),
            ("SET session_replication_role = replica", "permission denied to set parameter"),
            ("SET ROLE postgres", "permission denied to set role"),
            ("UPDATE streams SET version = version", None),  # allowed: the version check (not refused)
            ("DELETE FROM streams", "permission denied for table streams"),
            ("TRUNCATE streams", "permission denied for table streams"),
            ("DELETE FROM stripe_events", "permission denied for table stripe_events"),
            ("UPDATE stripe_events SET data = data", "permission denied for table stripe_events"),
            ("DELETE FROM customers", "permission denied for table customers"),
            ("UPDATE idempotency_keys SET status = 200", "permission denied for table idempotency_keys"),
            (
                "INSERT INTO api_keys (id, account, livemode, prefix, secret_hash) "
                "VALUES ('k', 'a', false, 'p', decode(repeat('00', 32), 'hex'))",
                "permission denied for table api_keys",
            ),
            ("UPDATE api_keys SET revoked_at = NULL", "permission denied for table api_keys"),
            ("SELECT * FROM schema_migrations", "permission denied for table schema_migrations"),
            ("CREATE TABLE sneaky (x int)", "permission denied for schema public"),
            (
                "CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                "permission denied for schema public",
            ),
        ]:
            if expected is None:
                await app.execute(sql)
                continue
            message = await refused(app, sql)
            assert message.startswith(expected), (sql, message)
        # The owner, too, is stopped by the triggers (defence in depth).
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner.execute("DELETE FROM events")
        # Pruning idempotency records past the retention window is the one DELETE the role may do.
        pool = await asyncpg.create_pool(app_url, min_size=1, max_size=1)
        try:
            assert await prune_idempotency_keys(pool, 24) == 0
        finally:
            await pool.close()
        heads = {
            r["stream_id"]: (r["version"], bytes(r["head_hash"]))
            for r in await owner.fetch("SELECT * FROM streams")
        }
        check_chains(await load_events(owner), heads)
    finally:
        await app.close()
        await owner.close()


async def test_creating_the_role_is_safe_when_migrations_race(
    admin_conn: asyncpg.Connection, db_url: str
) -> None:
    """Roles are cluster-wide: databases migrating at once all try to create it. The migration's DO block,
    run for a fresh role name in four fresh databases: the first creates the role (uncommitted), the three
    others wait on it, then find it created and carry on."""
    name = f"ledger_race_{secrets.token_hex(4)}"
    sql = next(m.sql for m in bundled_migrations() if m.name == "0005_service_role.sql")
    block = sql[sql.index("DO $$") : sql.index("$$;") + 3].replace("ledger_service", name)
    databases = [random_name("ledger_race_") for _ in range(4)]
    conns: list[asyncpg.Connection] = []
    try:
        for database in databases:
            await create_database(admin_conn, database, "template0")
            conns.append(await asyncpg.connect(with_database(db_url, database)))
        first = conns[0].transaction()
        await first.start()
        await conns[0].execute(block)
        racers = [asyncio.create_task(conn.execute(block)) for conn in conns[1:]]
        pids = [conn.get_server_pid() for conn in conns[1:]]
        for _ in range(250):
            waiting = await admin_conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1) AND wait_event_type = 'Lock'", pids
            )
            if waiting == len(pids):
                break
            await asyncio.sleep(0.02)
        assert waiting == len(pids), "the racers did not wait on the first creator"
        await first.commit()
        await asyncio.gather(*racers)
        role = await admin_conn.fetchrow("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", name)
        assert role is not None and role["rolcanlogin"] is False
        for conn in conns:  # each database granted the role its schema
            assert await conn.fetchval("SELECT has_schema_privilege($1, 'public', 'USAGE')", name)
    finally:
        for conn in conns:
            await conn.close()
        for database in databases:
            await drop_database(admin_conn, database)
        await admin_conn.execute(f"DROP ROLE IF EXISTS {name}")


async def test_as_the_service_role_webhooks_are_fanned_out_delivered_and_recorded(
    db_url: str, app_url: str, spawn_service, http: aiohttp.ClientSession
) -> None:
    from tests.support.webhooks import receiving

    key = await new_key(db_url)
    service = await spawn_service(
        app_url, LEDGER_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8", LEDGER_WEBHOOK_RETRY_SCHEDULE="0.2", LEDGER_LOG_LEVEL="info"
    )
    async with receiving() as receiver:
        receiver.plan("/hook", 500)  # a failed attempt, then a retry: both paths of recording
        form = {"url": receiver.url(), "enabled_events[0]": "*"}
        created = await call(http, service.base_url, "POST", "/v1/webhook_endpoints", key, form, "perm-we")
        assert created.status == 200, created.body
        endpoint = created.json["id"]
        customer = await call(http, service.base_url, "POST", "/v1/customers", key, {"name": "hooked"})
        await receiver.wait_for(lambda got: len(got) >= 2)
        event = receiver.received[-1].event["id"]
        for path, form in ((f"/v1/webhook_endpoints/{endpoint}/roll_secret", {}),
                           (f"/v1/events/{event}/retry", {"webhook_endpoint": endpoint}),
                           (f"/v1/webhook_endpoints/{endpoint}/recover", {"since": 0}),
                           (f"/v1/webhook_endpoints/{endpoint}", {"disabled": "true"})):
            reply = await call(http, service.base_url, "POST", path, key, form)
            assert reply.status == 200, (path, reply.body)
        assert (await call(http, service.base_url, "DELETE", f"/v1/webhook_endpoints/{endpoint}", key)).status == 200
        assert customer.status == 200
    log = service.log_tail(400)
    for failure in ("webhook_dispatch_failed", "webhook_claim_failed", "webhook_settle_failed", "Traceback"):
        assert failure not in log, log
    app = await asyncpg.connect(app_url)
    try:
        await refused(app, "DELETE FROM webhook_attempts")
        await refused(app, "UPDATE webhook_attempts SET latency_ms = 0")
        await refused(app, "DELETE FROM webhook_subscriptions")
    finally:
        await app.close()
