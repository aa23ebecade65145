"""The `ledgerd` command.

ledgerd serve [--host H] [--port P] [--no-migrate]   serve the API (DATABASE_URL required)
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
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from ledgerd.domain.money import normalize_currency
from ledgerd.service import versions
from ledgerd.service.accounts import save_settings
from ledgerd.service.auth import create_key, hash_secret, revoke_key
from ledgerd.service.config import Config
from ledgerd.service.migrate import MigrationError, migrate

DEV_DIR = Path(".ledger")
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


def run_migrations(url: str, quiet: bool = False) -> None:
    try:
        applied = asyncio.run(migrate(url))
    except MigrationError as error:
        raise SystemExit(fail(str(error), 1)) from None
    if not quiet:
        for name in applied:
            print(f"applied {name}", file=sys.stderr)
        print(f"migrations up to date ({len(applied)} applied now)", file=sys.stderr)


def event_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def serve(config: Config, banner: str | None = None, *, reuse_port: bool = False) -> None:
    from ledgerd.service.app import create_app

    app = create_app(config)

    async def announce(_: web.Application) -> None:
        if banner:
            print(banner, flush=True)

    app.on_startup.append(announce)
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        shutdown_timeout=10,
        print=None,
        access_log=None,
        reuse_port=reuse_port,
        loop=event_loop(os.environ.get("LEDGER_UVLOOP", "1") != "0"),
    )


def serve_workers(args: argparse.Namespace, url: str) -> int:
    """N processes sharing the port (SO_REUSEPORT): the kernel spreads connections across them. This
    process supervises; SIGTERM/SIGINT stop every worker gracefully."""
    command = [sys.executable, "-m", "ledgerd.service.cli", "serve", "--host", args.host, "--port", str(args.port)]
    command += ["--workers", "1", "--reuse-port"] + (["--no-migrate"] if args.no_migrate else [])
    env = {**os.environ, "DATABASE_URL": url}
    workers = [subprocess.Popen(command, env=env) for _ in range(args.workers)]

    def stop(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = [worker.wait() for worker in workers]
    return max(codes, default=0)


def command_serve(args: argparse.Namespace) -> int:
    if args.ephemeral:
        from ledgerd.service.ephemeral import serve_ephemeral

        if args.workers > 1:  # its accounts, clocks and request log live in the one process
            return fail("--ephemeral serves from one process: leave out --workers")
        return serve_ephemeral(
            host=args.host,
            port=args.port,
            strict=args.strict,
            search_lag_s=args.search_lag,
            exit_with_parent=args.exit_with_parent,
        )
    if args.strict or args.search_lag or args.exit_with_parent:
        return fail("--strict, --search-lag and --exit-with-parent need --ephemeral")
    url = database_url()
    if args.workers > 1:
        return serve_workers(args, url)
    # Listening does not wait for the database: the app migrates (unless --no-migrate) and opens its
    # pool in the background, answering 503 until then (service/app.py, establish).
    config = Config.from_env(url, host=args.host, port=args.port, migrate_on_start=not args.no_migrate)
    serve(config, reuse_port=args.reuse_port)
    return 0


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


def command_migrate(args: argparse.Namespace) -> int:
    run_migrations(database_url())
    return 0


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


# --- audit -------------------------------------------------------------------------------------------


async def with_pool(url: str, action: Callable[[asyncpg.Pool], Awaitable[Any]]) -> Any:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2 + min(4, os.cpu_count() or 1))
    try:
        return await action(pool)
    finally:
        await pool.close()


def print_json(document: Any) -> None:
    import msgspec

    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n")
    sys.stdout.flush()


def load_digest(path: str | None) -> Any:
    from ledgerd.service.audit import Digest

    if path is None:
        return None
    try:
        return Digest.from_json(Path(path).read_bytes())
    except (OSError, ValueError) as error:  # msgspec errors are ValueErrors
        raise SystemExit(fail(f"cannot read the digest {path}: {error}")) from None


def command_verify(args: argparse.Namespace) -> int:
    from ledgerd.service.audit import verify, verify_export
    from ledgerd.service.cli_progress import TerminalProgress

    digest = load_digest(args.digest)
    if args.export is not None:
        try:
            with open(args.export, "rb") as lines:
                check = verify_export(lines, digest=digest)
        except OSError as error:
            return fail(f"cannot read {args.export}: {error}")
        if args.json:
            print_json(
                {
                    "ok": check.ok,
                    "events": check.events,
                    "streams": check.streams,
                    "anchored_streams": check.anchored,
                    "cursor": check.cursor,
                    "hash": check.hash,
                    "problems": [problem.to_dict() for problem in check.problems],
                    "digest": check.digest.to_dict() if check.digest is not None else None,
                }
            )
        else:
            print(
                f"export {args.export}: {check.events} events, {check.streams} streams "
                f"({check.anchored} start above version 1), hash {check.hash}"
            )
            for problem in check.problems + (check.digest.problems if check.digest else []):
                print(f"  - {problem.message}")
            print(f"verify: {'OK' if check.ok else 'FAILED'}")
        return 0 if check.ok else 1

    progress = TerminalProgress()
    try:
        report = asyncio.run(
            with_pool(
                database_url(),
                lambda pool: verify(pool, digest=digest, drift=not args.no_drift, progress=progress),
            )
        )
    finally:
        progress.finish()
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.summary())
    return 0 if report.ok else 1


def command_digest(args: argparse.Namespace) -> int:
    from ledgerd.service.audit import take_digest
    from ledgerd.service.cli_progress import TerminalProgress

    progress = TerminalProgress()
    try:
        digest = asyncio.run(
            with_connection(database_url(), lambda conn: take_digest(conn, progress=progress))
        )
    finally:
        progress.finish()
    document = digest.to_json()
    if args.output:
        Path(args.output).write_bytes(document)
        print(f"digest of {digest.events} events written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(document)
        sys.stdout.flush()
    return 0


def command_balance_at(args: argparse.Namespace) -> int:
    from ledgerd.service.pointintime import balance_at, parse_instant

    try:
        at_us = parse_instant(args.at)
    except ValueError as error:
        return fail(f"--at {args.at!r}: {error}")
    result = asyncio.run(
        with_connection(database_url(), lambda conn: balance_at(conn, args.customer_id, at_us))
    )
    if args.json:
        print_json(result.to_dict())
    elif not result.exists:
        return fail(f"customer {args.customer_id} did not exist at {result.to_dict()['at']}", 1)
    else:
        print(result.balance)
        deleted = ", deleted" if result.deleted else ""
        print(
            f"{args.customer_id} at {result.to_dict()['at']}: {result.balance} {result.currency or ''} "
            f"(version {result.version}, {result.entries} ledger entries{deleted})",
            file=sys.stderr,
        )
    return 0 if result.exists else 1


def command_export(args: argparse.Namespace) -> int:
    from ledgerd.service.audit import export_jsonl
    from ledgerd.service.cli_progress import TerminalProgress
    from ledgerd.service.pointintime import parse_instant

    try:
        since = parse_instant(args.since) if args.since else None
    except ValueError as error:
        return fail(f"--since {args.since!r}: {error}")
    progress = TerminalProgress()

    def run(out: Any) -> Any:
        return asyncio.run(
            with_connection(
                database_url(),
                lambda conn: export_jsonl(
                    conn, out, since_us=since, customer_id=args.customer, progress=progress
                ),
            )
        )

    try:
        if args.output:
            with open(args.output, "wb") as out:
                summary = run(out)
        else:
            summary = run(sys.stdout.buffer)
            sys.stdout.flush()
    finally:
        progress.finish()
    rate = summary.events / summary.seconds if summary.seconds else 0
    print(
        f"exported {summary.events} events up to {summary.cursor} in {summary.seconds:.2f} s "
        f"({rate:,.0f}/s); hash of their hashes {summary.hash}",
        file=sys.stderr,
    )
    return 0


def command_import(args: argparse.Namespace) -> int:
    from ledgerd.service.audit import ImportError_, import_jsonl

    try:
        with open(args.file, "rb") as lines:
            report = asyncio.run(with_pool(database_url(), lambda pool: import_jsonl(pool, lines)))
    except (OSError, ImportError_) as error:
        return fail(str(error), 1)
    print(
        f"imported {report.events} events, {report.streams} streams in {report.transactions} transactions "
        f"({report.seconds:.2f} s); run `ledgerd verify` to prove it",
        file=sys.stderr,
    )
    return 0


def command_listen(args: argparse.Namespace) -> int:
    from ledgerd.service.webhooks.listen import listen

    with contextlib.suppress(KeyboardInterrupt):  # ^C is how it ends
        asyncio.run(listen(database_url(), args.forward_to, args.events, args.account, args.live))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ledgerd", description="Event-sourced customer ledger service")
    commands = root.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="serve the HTTP API (reads DATABASE_URL)")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8080)
    serve_cmd.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations first")
    serve_cmd.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port via SO_REUSEPORT (default 1)"
    )
    serve_cmd.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    ephemeral = serve_cmd.add_argument_group("a throwaway ledger for test suites (README: Use it in your tests)")
    ephemeral.add_argument(
        "--ephemeral",
        action="store_true",
        help="embedded PostgreSQL in a temp dir, any sk_test_ key is its own account, /_ledger/ control API; "
        "prints LEDGER_URL=, LEDGER_KEY=, DATABASE_URL= and deletes everything on exit",
    )
    # --port 0 picks a free port (the LEDGER_URL= line names it)
    ephemeral.add_argument("--strict", action="store_true", help="refuse ledgerd's extensions, like Stripe")
    ephemeral.add_argument(
        "--search-lag", type=float, default=0.0, metavar="SECONDS", help="search finds a write only after this"
    )
    ephemeral.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the process that started it exits"
    )
    serve_cmd.set_defaults(run=command_serve)

    dev_cmd = commands.add_parser("dev", help="embedded PostgreSQL in ./.ledger, a dev key, then serve")
    dev_cmd.add_argument("--host", default="127.0.0.1")
    dev_cmd.add_argument("--port", type=int, default=8080)
    dev_cmd.set_defaults(run=command_dev)

    commands.add_parser("migrate", help="apply pending migrations").set_defaults(run=command_migrate)

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

    commands.add_parser("rebuild", help="replay the log into fresh projections").set_defaults(
        run=command_rebuild
    )

    verify_cmd = commands.add_parser(
        "verify",
        help="audit the log: hash chains, invariants, digest, replay vs projections (exit 0 = all hold)",
    )
    verify_cmd.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    verify_cmd.add_argument(
        "--digest", metavar="FILE", help="also prove the log up to this digest is unchanged"
    )
    verify_cmd.add_argument("--no-drift", action="store_true", help="skip the replay-vs-projections check")
    verify_cmd.add_argument(
        "--export", metavar="FILE", help="check an export file offline instead (no database)"
    )
    verify_cmd.set_defaults(run=command_verify)

    digest_cmd = commands.add_parser("digest", help="print a digest of the committed log (JSON)")
    digest_cmd.add_argument("--output", metavar="FILE", help="write it to FILE instead of stdout")
    digest_cmd.set_defaults(run=command_digest)

    balance_cmd = commands.add_parser("balance-at", help="a customer's balance at an instant, from the log")
    balance_cmd.add_argument("customer_id")
    balance_cmd.add_argument(
        "--at", required=True, help="ISO 8601 (e.g. 2026-11-01T00:00:00Z) or unix seconds"
    )
    balance_cmd.add_argument("--json", action="store_true")
    balance_cmd.set_defaults(run=command_balance_at)

    export_cmd = commands.add_parser("export", help="the log as JSON Lines in the gap-safe global order")
    export_cmd.add_argument(
        "--since", metavar="TIME", help="only events recorded at or after TIME (ISO 8601)"
    )
    export_cmd.add_argument("--customer", metavar="ID", help="only this customer's stream")
    export_cmd.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    export_cmd.set_defaults(run=command_export)

    import_cmd = commands.add_parser("import", help="load a full export into an empty store")
    import_cmd.add_argument("file")
    import_cmd.set_defaults(run=command_import)

    listen_cmd = commands.add_parser("listen", help="forward webhooks to a local URL, like `stripe listen`")
    listen_cmd.add_argument("--forward-to", required=True, metavar="URL")
    listen_cmd.add_argument("--events", default="*", help="comma-separated event types (default: all)")
    listen_cmd.add_argument("--account", default=DEV_ACCOUNT, help=f"whose events (default {DEV_ACCOUNT})")
    listen_cmd.add_argument("--live", action="store_true", help="live-mode events (default test mode)")
    listen_cmd.set_defaults(run=command_listen)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
