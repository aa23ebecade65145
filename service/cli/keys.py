"""`ledgerd api-keys create|revoke`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import asyncpg

from ledgerd.domain.money import normalize_currency
from ledgerd.service import versions
from ledgerd.service.accounts import save_settings
from ledgerd.service.auth import create_key, revoke_key
from ledgerd.service.cli.common import database_url, fail, with_connection


def command_keys_create(args: argparse.Namespace) -> int:
    try:  # checked before anything is written
        api_version = None if args.api_version is None else versions.check_known(args.api_version)
        default_currency = None if args.default_currency is None else check_currency(args.default_currency)
    except ValueError as error:
        return fail(str(error))

    async def create(conn: asyncpg.Connection) -> str:
        async with conn.transaction():
            _, secret = await create_key(conn, args.account, livemode=args.live)
            if api_version is not None or default_currency is not None:
                await save_settings(
                    conn, args.account, api_version=api_version, default_currency=default_currency
                )
        return secret

    print(asyncio.run(with_connection(database_url(), create)))
    return 0


def check_currency(code: str) -> str:
    currency = normalize_currency(code)
    if currency is None:
        raise ValueError(f"--default-currency: {code!r} is not a three-letter ISO 4217 code such as usd")
    return currency


def command_keys_revoke(args: argparse.Namespace) -> int:
    async def revoke(conn: asyncpg.Connection) -> str:
        return await revoke_key(conn, args.key)

    try:
        key_id = asyncio.run(with_connection(database_url(), revoke))
    except ValueError as error:
        return fail(str(error), 1)
    print(f"revoked {key_id} (running services refuse it within 1 s)", file=sys.stderr)
    return 0


def register(commands: Any) -> None:
    keys = commands.add_parser("api-keys", help="manage secret API keys").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser("create", help="create a key and print it (only the key) on stdout")
    create.add_argument("--account", required=True)
    create.add_argument("--live", action="store_true", help="a live-mode key (sk_live_…); default test mode")
    create.add_argument(
        "--api-version",
        metavar="V",
        help=f"the account's default Stripe API version (default: the latest, {versions.LATEST})",
    )
    create.add_argument(
        "--default-currency", metavar="C", help="the account's default currency, e.g. usd (default: none)"
    )
    create.set_defaults(run=command_keys_create)
    revoke = keys.add_parser(
        "revoke",
        help="revoke a key by id (key_…) or by a prefix of the secret; a running service refuses it within "
        "1 s (each process caches a key lookup that long)",
    )
    revoke.add_argument("key")
    revoke.set_defaults(run=command_keys_revoke)
