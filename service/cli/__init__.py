"""The `ledgerd` command.

ledgerd serve [--host H] [--port P] [--no-migrate]   serve the API (DATABASE_URL required)
ledgerd serve --fd N                                  ... on the listening socket inherited as fd N
ledgerd serve --ephemeral [--port 0] [--strict]       a throwaway ledger for tests (prints LEDGER_URL=...)
ledgerd dev [--host H] [--port P]                     embedded PostgreSQL in ./.ledger + dev key + serve
ledgerd migrate                                       apply pending migrations
ledgerd api-keys create --account NAME [--live]       print a new secret key (only the key) on stdout
        [--api-version V] [--default-currency C]      ... and set the account's default version/currency
ledgerd api-keys revoke KEY_PREFIX_OR_ID              revoke one key (running services refuse it within 1 s)
ledgerd rebuild                                       replay the log into fresh projections, swap atomically
ledgerd verify [--json] [--digest FILE] [--no-drift]  audit: hash chains, invariants, digest, replay vs projections
ledgerd verify --export FILE [--digest FILE] [--json] check an export file offline (no database)
ledgerd digest [--output FILE]                        print a digest of the committed log (keep it elsewhere)
ledgerd balance-at CUSTOMER_ID --at ISO8601 [--json]  the customer's balance at that instant, from the log
ledgerd export [--since TIME] [--customer ID] [--output FILE]   the log as JSON Lines, gap-safe order
ledgerd import FILE                                   load an export into an empty store (then verify)
ledgerd listen --forward-to URL [--events T1,T2] [--account A] [--live]   forward webhooks, like `stripe listen`
"""

from __future__ import annotations

import argparse

from ledgerd.service.cli import audit, database, dev, keys, listen, serve


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ledgerd", description="Event-sourced customer ledger service")
    commands = root.add_subparsers(dest="command", required=True)
    for register in (
        serve.register,
        dev.register,
        database.register_migrate,
        keys.register,
        database.register_rebuild,
        audit.register,
        listen.register,
    ):
        register(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.run(args)
    return result
