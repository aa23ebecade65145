"""`ledgerd migrate` and `ledgerd rebuild`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import asyncpg

from ledgerd.service.cli.common import database_url, run_migrations


def command_migrate(args: argparse.Namespace) -> int:
    run_migrations(database_url())
    return 0


def command_rebuild(args: argparse.Namespace) -> int:
    from ledgerd.service.rebuild import rebuild

    async def run() -> Any:
        pool = await asyncpg.create_pool(database_url(), min_size=1, max_size=2)
        try:
            return await rebuild(pool)
        finally:
            await pool.close()

    report = asyncio.run(run())
    print(report, file=sys.stderr)
    return 0


def register_migrate(commands: Any) -> None:
    commands.add_parser("migrate", help="apply pending migrations").set_defaults(run=command_migrate)


def register_rebuild(commands: Any) -> None:
    commands.add_parser("rebuild", help="replay the log into fresh projections").set_defaults(
        run=command_rebuild
    )
