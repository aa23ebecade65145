"""The database fixtures give every test its own fresh database, with the migrations applied."""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.support.databases import fresh_database

_seen_databases: set[str] = set()


@pytest.mark.parametrize("attempt", [1, 2])
async def test_each_test_gets_a_fresh_database(pool: asyncpg.Pool, attempt: int) -> None:
    # Both runs create the same table: the second one would fail if databases were shared.
    name = await pool.fetchval("SELECT current_database()")
    assert name.startswith("ledger_t_")
    assert name not in _seen_databases
    _seen_databases.add(name)
    assert await pool.fetchval("SELECT to_regclass('harness_probe')") is None
    await pool.execute("CREATE TABLE harness_probe (attempt int NOT NULL)")
    await pool.execute("INSERT INTO harness_probe VALUES ($1)", attempt)
    assert await pool.fetchval("SELECT count(*) FROM harness_probe") == 1


async def test_migrations_are_applied(pool: asyncpg.Pool) -> None:
    assert await pool.fetchval("SELECT to_regclass('events')") is not None


async def test_pool_allows_ten_concurrent_connections(pool: asyncpg.Pool) -> None:
    conns = [await pool.acquire() for _ in range(10)]
    try:
        pids = {await c.fetchval("SELECT pg_backend_pid()") for c in conns}
        assert len(pids) == 10
    finally:
        for c in conns:
            await pool.release(c)


async def test_empty_database_has_no_migrations(empty_db_url: str) -> None:
    conn = await asyncpg.connect(empty_db_url)
    try:
        assert await conn.fetchval("SELECT current_database()") != "postgres"
        assert await conn.fetchval("SELECT to_regclass('events')") is None
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        assert tables == 0
    finally:
        await conn.close()


async def test_databases_of_earlier_tests_are_dropped(
    admin_conn: asyncpg.Connection, database_url: str, template_db: str
) -> None:
    """The `db_url` fixture's database (`fresh_database`) exists while the test runs and is gone after it,
    also when the test fails; so are the databases of the tests above, when they ran in this session."""

    async def exists(name: str) -> bool:
        return bool(await admin_conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name))

    async with fresh_database(admin_conn, database_url, template_db, "ledger_t_") as url:
        name = urlsplit(url).path.lstrip("/")
        assert name.startswith("ledger_t_") and await exists(name)
    assert not await exists(name)
    with pytest.raises(RuntimeError):
        async with fresh_database(admin_conn, database_url, template_db, "ledger_t_") as url:
            failed = urlsplit(url).path.lstrip("/")
            raise RuntimeError("the test failed")
    assert not await exists(failed)
    rows = await admin_conn.fetch(
        "SELECT datname FROM pg_database WHERE datname = any($1::text[])", sorted(_seen_databases)
    )
    assert rows == []
