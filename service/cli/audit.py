"""The audit commands: `ledgerd verify`, `digest`, `balance-at`, `export`, `import`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from ledgerd.service.cli.common import database_url, fail, print_json, with_connection, with_pool


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
    from ledgerd.service.cli.progress import TerminalProgress

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
    from ledgerd.service.cli.progress import TerminalProgress

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
    from ledgerd.service.cli.progress import TerminalProgress
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


def register(commands: Any) -> None:
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
