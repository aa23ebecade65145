"""Fixtures for integration tests against a real PostgreSQL server (never a mock).

The server comes from ``$DATABASE_URL`` (``make test`` always provides one: an embedded PostgreSQL 18, or
the URL you exported). Any database on the server will do; the fixtures create their own databases
next to it, so the role needs CREATEDB.

* ``database_url``   (session) the server URL as given.
* ``template_db``    (session) a database ``ledger_tmpl_<random>`` with all migrations applied via
                     ``service.migrate.apply_migrations``; dropped at the end of the session.
* ``db_url``         (function) URL of a fresh database cloned from the template, dropped afterwards.
* ``pool``           (function) an asyncpg pool (1..10 connections) on ``db_url``'s database.
* ``empty_db_url``   (function) URL of a fresh, empty database (no migrations), dropped afterwards.

Nothing here touches the database unless a test asks for one of these fixtures, so unit tests run
without ``DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import settings

from tests.support.databases import create_database, drop_database, fresh_database, random_name, with_database

# Hypothesis' 200 ms deadline measures the machine, not the code: on a loaded 2-core box (CI, or tests
# beside a benchmark) a first example that waits for the CPU fails as DeadlineExceeded. Tests that
# care about time say so themselves.
settings.register_profile("ledgerd", deadline=None)
settings.load_profile("ledgerd")


@pytest.fixture(scope="session")
def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        pytest.fail(
            "DATABASE_URL is not set: integration tests need a real PostgreSQL server. Run them through "
            "`make test` (which starts an embedded PostgreSQL 18), or `python -m ledgerd.service.pgserver run -- "
            "python -m pytest ...`, or export DATABASE_URL=postgresql://USER@HOST:PORT/DB (role needs CREATEDB).",
            pytrace=False,
        )
    return url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def admin_conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """Session connection used to create and drop the test databases."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def template_db(admin_conn: asyncpg.Connection, database_url: str) -> AsyncIterator[str]:
    """Name of a database holding the fully migrated schema, cloned for every test."""
    from ledgerd.service.migrate import apply_migrations  # imported lazily: unit tests must not need it

    name = random_name("ledger_tmpl_")
    await create_database(admin_conn, name, "template0")
    try:
        conn = await asyncpg.connect(with_database(database_url, name))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        yield name
    finally:
        await drop_database(admin_conn, name)


@pytest_asyncio.fixture(loop_scope="session")
async def db_url(admin_conn: asyncpg.Connection, database_url: str, template_db: str) -> AsyncIterator[str]:
    """URL of a fresh database with all migrations applied, private to the test."""
    async with fresh_database(admin_conn, database_url, template_db, "ledger_t_") as url:
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def empty_db_url(admin_conn: asyncpg.Connection, database_url: str) -> AsyncIterator[str]:
    """URL of a fresh database without any migrations (for migration tests)."""
    async with fresh_database(admin_conn, database_url, "template0", "ledger_e_") as url:
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    """asyncpg pool (min 1, max 10 connections) on the test's fresh, migrated database."""
    p = await asyncpg.create_pool(db_url, min_size=1, max_size=10)
    try:
        yield p
    finally:
        try:
            await asyncio.wait_for(p.close(), timeout=10)
        except TimeoutError:  # a test leaked an acquired connection
            p.terminate()
