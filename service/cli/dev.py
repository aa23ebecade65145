"""`ledgerd dev` (`make serve`): embedded PostgreSQL in ./.ledger, a remembered dev key, then serve."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from ledgerd.service.auth import create_key, hash_secret
from ledgerd.service.cli.common import DEV_ACCOUNT, fail, run_migrations, with_connection
from ledgerd.service.cli.serve import serve
from ledgerd.service.config import Config

DEV_DIR = Path(".ledger")


def dev_key(url: str) -> str:
    """The development test-mode key: created once, kept in .ledger/dev_key, printed at every start.
    A key file whose key the database does not know (e.g. a reset database) is replaced."""
    path = DEV_DIR / "dev_key"
    remembered = path.read_text().strip() if path.exists() else ""

    async def ensure(conn: asyncpg.Connection) -> str:
        if remembered and await conn.fetchval(
            "SELECT 1 FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL", hash_secret(remembered)
        ):
            return remembered
        _, secret = await create_key(conn, DEV_ACCOUNT, livemode=False)
        return secret

    secret: str = asyncio.run(with_connection(url, ensure))
    if secret != remembered:
        path.write_text(secret + "\n")
        path.chmod(0o600)
    return secret


def dev_banner(secret: str, host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    return f"""
ledgerd is serving on {base}  (account {DEV_ACCOUNT}, test mode; Ctrl-C stops it and its database)

  secret key:  {secret}

  curl {base}/v1/customers -u {secret}: -d email=jenny@example.com -d "metadata[plan]=pro"

  import stripe
  client = stripe.StripeClient("{secret}", base_addresses={{"api": "{base}"}})
  customer = client.v1.customers.create({{"email": "jenny@example.com"}})
  client.v1.customers.balance_transactions.create(customer.id, {{"amount": -500, "currency": "usd"}})
"""


def command_dev(args: argparse.Namespace) -> int:
    from ledgerd.service.pgserver import EmbeddedPostgresMissing, resolve_database_url

    DEV_DIR.mkdir(exist_ok=True)
    try:
        url, stop = resolve_database_url(DEV_DIR)
    except EmbeddedPostgresMissing as missing:
        return fail(str(missing))
    try:
        run_migrations(url, quiet=True)
        secret = dev_key(url)
        serve(Config.from_env(url, host=args.host, port=args.port), dev_banner(secret, args.host, args.port))
    finally:
        stop()
    return 0


def register(commands: Any) -> None:
    dev_cmd = commands.add_parser("dev", help="embedded PostgreSQL in ./.ledger, a dev key, then serve")
    dev_cmd.add_argument("--host", default="127.0.0.1")
    dev_cmd.add_argument("--port", type=int, default=8080)
    dev_cmd.set_defaults(run=command_dev)
