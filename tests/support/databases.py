"""Test databases on the DATABASE_URL server: fresh ones cloned from a migrated template (or from
template0), always dropped afterwards. The fixtures of tests/conftest.py are built on these."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import asyncpg


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` instead (keeps host, port, user, socket and other parameters)."""
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("dbname", "database")
    ]
    return parts._replace(path="/" + quote(database, safe=""), query=urlencode(query, safe="/")).geturl()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def random_name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


async def create_database(admin: asyncpg.Connection, name: str, template: str) -> None:
    # FILE_COPY (PostgreSQL 15+) clones a small database several times faster than the default WAL_LOG.
    strategy = " STRATEGY FILE_COPY" if admin.get_server_version().major >= 15 else ""
    await admin.execute(f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(template)}{strategy}")


async def drop_database(admin: asyncpg.Connection, name: str) -> None:
    await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


@asynccontextmanager
async def fresh_database(
    admin: asyncpg.Connection, server_url: str, template: str, prefix: str
) -> AsyncIterator[str]:
    """URL of a new database `<prefix><random>` cloned from `template`; dropped on exit, even on failure."""
    name = random_name(prefix)
    await create_database(admin, name, template)
    try:
        yield with_database(server_url, name)
    finally:
        await drop_database(admin, name)
