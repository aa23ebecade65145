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
import secrets
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import asyncpg
import pytest
import pytest_asyncio


def _with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` instead (keeps host, port, user, socket and other parameters)."""
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("dbname", "database")
    ]
    return parts._replace(path="/" + quote(database, safe=""), query=urlencode(query, safe="/")).geturl()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _random_name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


async def _create_database(admin: asyncpg.Connection, name: str, template: str) -> None:
    # FILE_COPY (PostgreSQL 15+) clones a small database several times faster than the default WAL_LOG.
    strategy = " STRATEGY FILE_COPY" if admin.get_server_version().major >= 15 else ""
    await admin.execute(f"CREATE DATABASE {_quote_ident(name)} TEMPLATE {_quote_ident(template)}{strategy}")


async def _drop_database(admin: asyncpg.Connection, name: str) -> None:
    await admin.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")


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

    name = _random_name("ledger_tmpl_")
    await _create_database(admin_conn, name, "template0")
    try:
        conn = await asyncpg.connect(_with_database(database_url, name))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        yield name
    finally:
        await _drop_database(admin_conn, name)


@pytest_asyncio.fixture(loop_scope="session")
async def db_url(admin_conn: asyncpg.Connection, database_url: str, template_db: str) -> AsyncIterator[str]:
    """URL of a fresh database with all migrations applied, private to the test."""
    name = _random_name("ledger_t_")
    await _create_database(admin_conn, name, template_db)
    try:
        yield _with_database(database_url, name)
    finally:
        await _drop_database(admin_conn, name)


@pytest_asyncio.fixture(loop_scope="session")
async def empty_db_url(admin_conn: asyncpg.Connection, database_url: str) -> AsyncIterator[str]:
    """URL of a fresh database without any migrations (for migration tests)."""
    name = _random_name("ledger_e_")
    await _create_database(admin_conn, name, "template0")
    try:
        yield _with_database(database_url, name)
    finally:
        await _drop_database(admin_conn, name)


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
