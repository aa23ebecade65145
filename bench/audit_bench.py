"""Audit benchmark: chain verification, digest, export, rebuild (and optionally the drift replay) on a
generated log of N events.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench.audit_bench --events 1000000 [--steps chains,export,...] [--keep]

It creates a fresh database `ledger_bench_<random>` next to DATABASE_URL's, migrates it, and writes a
realistic log straight into `events` with COPY: customers (default 10 events each: one CustomerCreated,
one CustomerUpdated, the rest BalanceAdjusted) interleaved round-robin, one event per writing
transaction, hashes and canonical bytes chained by the real code (service.store.base.prepare + chain_links), so
`ledgerd verify` passes on it. Transaction ids: the script first burns as many real xids as it needs (a
procedure committing empty transactions), then stamps those (committed) ids on the rows, so the
gap-safe readers see every event. The projections are then built by the timed `rebuild`.

Targets (issue 16, item 7): chain verification >= 400,000 events/s, rebuild <= 15 s, export >= 300,000
events/s, all at 1,000,000 events (issue 4 had asked for 1,000,000/s, 10 s and 200,000/s).

Results, and what limits each (measured, with the machine, date and commit): bench/AUDIT_RESULTS.md.
Chain verification prints its two phases: the links (sha256 over the stored canonical bytes, in the
server) and the proof that the columns agree with those bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from ledgerd.domain.customer import BalanceAdjusted, CustomerChanges, CustomerCreated, CustomerUpdated
from ledgerd.domain.log import GENESIS_HASH, EventMetadata, StreamHeader, chain_links, prepare
from ledgerd.domain.values import Address, Profile
from ledgerd.service.audit import (
    check_chains,
    check_invariants,
    check_stream_heads,
    export_jsonl,
    take_digest,
    verify,
)
from ledgerd.service.migrate import apply_migrations
from ledgerd.service.rebuild import rebuild
from ledgerd.service.store.postgres import to_timestamp

T = TypeVar("T")
ACCOUNT = "acct_bench"
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
COPY_CHUNK = 50_000
EVENT_COLUMNS = [
    "tx_id",
    "stream_id",
    "stream_version",
    "event_id",
    "event_type",
    "schema_version",
    "data",
    "metadata",
    "recorded_at",
    "hash",
    "canonical",
]
BURN_XIDS = """
CREATE OR REPLACE PROCEDURE bench_burn_xids(n bigint) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP
        PERFORM pg_current_xact_id();
        COMMIT;
    END LOOP;
END $$
"""


def with_database(url: str, database: str) -> str:
    return urlsplit(url)._replace(path="/" + database).geturl()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ident(rng: random.Random, prefix: str, length: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(rng.choice(alphabet) for _ in range(length))


class Customer:
    __slots__ = ("balance", "head", "id", "version")

    def __init__(self, customer_id: str) -> None:
        self.id = customer_id
        self.version = 0
        self.head = GENESIS_HASH
        self.balance = 0


def make_event(rng: random.Random, customer: Customer, round_: int, at_us: int) -> Any:
    if round_ == 0:
        return CustomerCreated(
            customer_id=customer.id,
            account=ACCOUNT,
            livemode=False,
            created=at_us // 1_000_000,
            profile=Profile(
                email=f"{customer.id.lower()}@example.com",
                name=rng.choice(["Ada Lovelace", "Grace Hopper", "Alan Turing", None]),
                phone=rng.choice([None, "+15555550100"]),
                address=rng.choice([None, Address(city="Paris", country="FR", line1="1 rue de Rivoli")]),
                invoice_prefix=ident(rng, "", 8).upper(),
                metadata={"plan": rng.choice(["free", "pro", "team"]), "ref": str(rng.randrange(10**6))},
            ),
            currency="usd",
        )
    if round_ == 5:
        name = rng.choice(["Renamed", "Other Name"])
        return CustomerUpdated(
            customer_id=customer.id,
            changes=CustomerChanges(name=name, metadata={"plan": "enterprise"}),
            previous=CustomerChanges(name=None, metadata={"plan": "pro"}),
        )
    amount = rng.choice([-1, 1]) * rng.randrange(1, 100_000)
    customer.balance += amount
    return BalanceAdjusted(
        customer_id=customer.id,
        transaction_id=ident(rng, "cbtxn_", 24),
        amount=amount,
        currency="usd",
        type="adjustment",
        ending_balance=customer.balance,
        description=rng.choice([None, "Goodwill credit", "Usage"]),
        metadata=rng.choice([{}, {"invoice": ident(rng, "in_", 14)}]),
        created=at_us // 1_000_000,
    )


async def generate(conn: asyncpg.Connection, events: int, per_customer: int, seed: int) -> dict[str, Any]:
    """Write `events` chained events (and their stream rows) with COPY; one event per transaction."""
    rng = random.Random(seed)
    customers = [Customer(ident(rng, "cus_", 14)) for _ in range(-(-events // per_customer))]
    started = time.monotonic()
    # tx ids: burn `events` real xids first, then stamp them (all committed) on the rows
    await conn.execute(BURN_XIDS)
    first_xid = int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint")) + 1
    await conn.execute("SET synchronous_commit = off")
    remaining = events + 10
    while remaining > 0:  # one CALL per chunk keeps each CALL short
        await conn.execute("CALL bench_burn_xids($1)", min(remaining, 200_000))
        remaining -= 200_000
    await conn.execute("RESET synchronous_commit")
    burned = time.monotonic() - started
    # Other sessions on the cluster take xids too (and may still be running one of ours): wait until
    # every id we stamp is below the horizon, or the gap-safe readers would not see those rows yet.
    for _ in range(600):
        horizon = int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"))
        if horizon > first_xid + events:
            break
        await asyncio.sleep(0.1)
    else:
        raise RuntimeError("a long transaction elsewhere on the cluster holds the horizon back")
    await conn.copy_records_to_table(
        "streams",
        records=[(c.id, "customer", ACCOUNT, False, 1, GENESIS_HASH) for c in customers],
        columns=["stream_id", "stream_type", "account", "livemode", "version", "head_hash"],
    )
    chunk: list[tuple[Any, ...]] = []
    written = 0
    for round_ in range(per_customer):
        for customer in customers:
            if written == events:
                break
            at_us = T0 + written * 1_000
            event = make_event(rng, customer, round_, at_us)
            pending = prepare(event, ident(rng, "evt_", 24))
            header = StreamHeader(
                stream_id=customer.id, stream_type="customer", account=ACCOUNT, livemode=False
            )
            metadata = EventMetadata(
                account=ACCOUNT,
                livemode=False,
                request_id=ident(rng, "req_", 14),
                idempotency_key=rng.choice([None, ident(rng, "", 32)]),
                api_key_id="key_bench",
            )
            [(item, version, digest, canonical)] = chain_links(
                header, customer.version, customer.head, [pending], metadata, at_us
            )
            customer.version, customer.head = version, digest
            chunk.append(
                (
                    first_xid + written,
                    customer.id,
                    version,
                    item.event_id,
                    item.event_type,
                    item.schema_version,
                    item.data_json.decode(),
                    asyncpg_json(metadata),
                    to_timestamp(at_us),
                    digest,
                    canonical,
                )
            )
            written += 1
            if len(chunk) == COPY_CHUNK:
                await conn.copy_records_to_table("events", records=chunk, columns=EVENT_COLUMNS)
                chunk = []
                progress(f"generate {written:,}/{events:,}")
    if chunk:
        await conn.copy_records_to_table("events", records=chunk, columns=EVENT_COLUMNS)
    await conn.execute(
        """UPDATE streams s SET version = e.stream_version, head_hash = e.hash
           FROM (SELECT DISTINCT ON (stream_id) stream_id, stream_version, hash FROM events
                 ORDER BY stream_id, stream_version DESC) e
           WHERE s.stream_id = e.stream_id"""
    )
    await conn.execute(
        "SELECT setval(pg_get_serial_sequence('events', 'position'), (SELECT max(position) FROM events))"
    )
    await conn.execute("VACUUM (ANALYZE) events")
    await conn.execute("VACUUM (ANALYZE) streams")
    await conn.execute("DROP PROCEDURE bench_burn_xids")
    size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('events'))")
    progress("")
    return {
        "events": written,
        "customers": len(customers),
        "seconds": time.monotonic() - started,
        "xid_burn_seconds": burned,
        "events_table": size,
    }


def asyncpg_json(metadata: EventMetadata) -> str:
    import msgspec

    return msgspec.json.encode(metadata).decode()


def progress(text: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r" + text + "\x1b[K")
        sys.stderr.flush()


async def timed(label: str, events: int, action: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    started = time.monotonic()
    result = await action()
    seconds = time.monotonic() - started
    rate = events / seconds if seconds else float("inf")
    print(f"{label:<28} {seconds:8.2f} s   {rate:>12,.0f} events/s", flush=True)
    return result, seconds


STEPS = ("chains", "digest", "export", "rebuild", "invariants", "verify")


async def run(args: argparse.Namespace) -> int:
    server = os.environ.get("DATABASE_URL", "")
    if not server:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    steps = set(args.steps.split(",")) if args.steps else set(STEPS) - {"verify"}
    admin = await asyncpg.connect(server)
    database = args.reuse or f"ledger_bench_{secrets.token_hex(4)}"
    url = with_database(server, database)
    if not args.reuse:
        await admin.execute(f"CREATE DATABASE {quote_ident(database)}")
    try:
        conn = await asyncpg.connect(url)
        if not args.reuse:
            await apply_migrations(conn)
            print(f"database {database}; generating {args.events:,} events ...", flush=True)
            generated = await generate(conn, args.events, args.per_customer, args.seed)
            print(
                f"generated {generated['events']:,} events / {generated['customers']:,} customers in "
                f"{generated['seconds']:.1f} s (xid burn {generated['xid_burn_seconds']:.1f} s); "
                f"events table {generated['events_table']}",
                flush=True,
            )
        n = await conn.fetchval("SELECT count(*) FROM events")
        print(f"{n:,} events; {os.cpu_count()} CPUs; PostgreSQL {conn.get_server_version()}", flush=True)
        workers = args.workers or min(4, os.cpu_count() or 1)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=workers + 2)
        try:
            if "chains" in steps:
                for count in sorted({1, workers}):

                    async def chains(count: int = count) -> Any:
                        async with (
                            pool.acquire() as c,
                            c.transaction(isolation="repeatable_read", readonly=True),
                        ):
                            return await check_chains(c, workers=count)

                    for attempt in range(args.repeat):
                        result, _ = await timed(f"chains, {count} process(es) #{attempt + 1}", n, chains)
                        assert result.ok, result.problems[:3]
                        links, columns = result.stats["links_seconds"], result.stats["columns_seconds"]
                        print(
                            f"  links {links:.2f} s ({n / links:,.0f} events/s), columns agree with the "
                            f"canonical bytes {columns:.2f} s ({n / columns:,.0f} events/s), "
                            f"{result.stats['walked_streams']} stream(s) walked",
                            flush=True,
                        )
            if "digest" in steps:
                await timed("digest", n, lambda: take_digest(conn))
            if "export" in steps:
                with open(os.devnull, "wb") as sink:  # noqa: ASYNC230 - one task, a benchmark
                    for attempt in range(args.repeat):
                        await timed(
                            f"export #{attempt + 1} (to /dev/null)", n, lambda: export_jsonl(conn, sink)
                        )
                if args.export_file:
                    with Path(args.export_file).open("wb") as out:  # noqa: ASYNC230
                        await timed("export (to file)", n, lambda: export_jsonl(conn, out))
            if "rebuild" in steps:
                report, _ = await timed("rebuild", n, lambda: rebuild(pool))
                print(f"  {report}", flush=True)
            if "invariants" in steps:

                async def heads_and_invariants() -> Any:
                    async with conn.transaction(isolation="repeatable_read", readonly=True):
                        return await check_stream_heads(conn), await check_invariants(conn)

                (heads, invariants), _ = await timed("stream heads + invariants", n, heads_and_invariants)
                for check in (heads, invariants):
                    if not check.ok:
                        print(
                            f"  {check.name}: {len(check.problems)} problem(s): {check.problems[0].message}"
                        )
            if "verify" in steps:
                full, _ = await timed("verify (all checks, with drift)", n, lambda: verify(pool))
                print(full.summary(), flush=True)
        finally:
            await pool.close()
            await conn.close()
    finally:
        if args.keep or args.reuse:
            print(f"kept database {database}: {url}")
        else:
            await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)")
        await admin.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--per-customer", type=int, default=10, help="events per customer stream")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of chain verification and export")
    parser.add_argument(
        "--workers", type=int, help="server processes for the chain check (default: CPUs, at most 4)"
    )
    parser.add_argument(
        "--steps", help=f"comma-separated subset of {','.join(STEPS)} (default: all but verify)"
    )
    parser.add_argument("--export-file", help="also time an export into this file")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--reuse", metavar="DATABASE", help="benchmark an existing database (no generation)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
