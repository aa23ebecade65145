"""`ledgerd listen --forward-to URL`: forward webhooks, like `stripe listen`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from ledgerd.service.cli.common import DEV_ACCOUNT, database_url


def command_listen(args: argparse.Namespace) -> int:
    from ledgerd.service.webhooks.listen import listen

    with contextlib.suppress(KeyboardInterrupt):  # ^C is how it ends
        asyncio.run(listen(database_url(), args.forward_to, args.events, args.account, args.live))
    return 0


def register(commands: Any) -> None:
    listen_cmd = commands.add_parser("listen", help="forward webhooks to a local URL, like `stripe listen`")
    listen_cmd.add_argument("--forward-to", required=True, metavar="URL")
    listen_cmd.add_argument("--events", default="*", help="comma-separated event types (default: all)")
    listen_cmd.add_argument("--account", default=DEV_ACCOUNT, help=f"whose events (default {DEV_ACCOUNT})")
    listen_cmd.add_argument("--live", action="store_true", help="live-mode events (default test mode)")
    listen_cmd.set_defaults(run=command_listen)
