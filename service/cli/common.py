"""What the subcommands share: error exit, DATABASE_URL, one connection or pool per command, JSON output."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from ledgerd.service.migrate import MigrationError, migrate

DEV_ACCOUNT = "acct_dev"


def fail(message: str, code: int = 2) -> int:
    print(f"ledgerd: {message}", file=sys.stderr)
    return code


def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        raise SystemExit(
            fail("DATABASE_URL is not set (or use `ledgerd dev` / `make serve` for a local database)")
        )
    return url


async def with_connection(url: str, action: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await action(conn)
    finally:
        await conn.close()


async def with_pool(url: str, action: Callable[[asyncpg.Pool], Awaitable[Any]]) -> Any:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2 + min(4, os.cpu_count() or 1))
    try:
        return await action(pool)
    finally:
        await pool.close()


def run_migrations(url: str, quiet: bool = False) -> None:
    try:
        applied = asyncio.run(migrate(url))
    except MigrationError as error:
        raise SystemExit(fail(str(error), 1)) from None
    if not quiet:
        for name in applied:
            print(f"applied {name}", file=sys.stderr)
        print(f"migrations up to date ({len(applied)} applied now)", file=sys.stderr)


def print_json(document: Any) -> None:
    import msgspec

    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n")
    sys.stdout.flush()
