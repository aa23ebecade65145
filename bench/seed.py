"""Seeding: the customers through HTTP, a renamed copy of them for pgbench (with the storage ceiling's own
tables), and the eventsourcing peer's accounts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

from bench.database import peer_env, sql
from bench.results import Results
from bench.services import create_customers
from bench.settings import ROOT, log
from bench.state import Setup
from bench.tools import ledger_command

# The storage ceiling's own tables (append_projection.pgbench): a log table and a balance projection.
CEILING_SCHEMA = """
CREATE TABLE bench_ceiling_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id   text NOT NULL,
    data        jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE bench_ceiling_balances (id text PRIMARY KEY, balance bigint NOT NULL, version bigint NOT NULL);
"""


async def seed(setup: Setup, results: Results) -> None:
    t0 = time.monotonic()
    log(f"seeding {setup.settings.customers:,} customers through HTTP")
    setup.ids = await create_customers(setup, setup.settings.customers)
    setup.ids_file.write_text("\n".join(setup.ids) + "\n")
    seeded = time.monotonic() - t0
    results.info["seed_rate"] = len(setup.ids) / seeded
    await sql(setup.url, "VACUUM ANALYZE")
    await seed_pgbench_db(setup)
    log("seeding the eventsourcing peer")
    proc = setup.children.popen(
        [
            sys.executable,
            "-m",
            "bench.baselines.peer_eventsourcing",
            "seed",
            "--accounts",
            str(setup.settings.customers),
            "--ids-file",
            str(setup.peer_ids_file),
        ],
        cwd=ROOT,
        env=peer_env(setup.peer_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = await asyncio.to_thread(proc.communicate, None, 300)
    if proc.returncode != 0:
        raise RuntimeError(f"peer seed failed: {err.decode(errors='replace')[-3000:]}")
    await sql(setup.peer_url, "VACUUM ANALYZE")
    results.timings["seed"] = time.monotonic() - t0
    log(
        f"seeded in {results.timings['seed']:.1f}s ({results.info['seed_rate']:.0f} customers/s through HTTP)"
    )


async def seed_pgbench_db(setup: Setup) -> None:
    """The pgbench database: the same schema (our migrations) and a copy of the seeded customers'
    streams, events and projection rows, renamed cus_pgb00000000001... so the script can pick one."""
    import asyncpg

    env = {**os.environ, "DATABASE_URL": setup.pgb_url}
    migrate = [*ledger_command(), "migrate"]
    subprocess.run(migrate, env=env, check=True, capture_output=True, cwd=ROOT)  # noqa: ASYNC221 - a step
    mapping = {cid: f"cus_pgb{n:011d}" for n, cid in enumerate(setup.ids, 1)}
    src = await asyncpg.connect(setup.url)
    dst = await asyncpg.connect(setup.pgb_url)
    try:
        await copy_renamed(src, dst, "streams", "stream_id", setup.ids, mapping)
        ev_cols = [
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
        ]
        events = await src.fetch(
            f"SELECT {', '.join(ev_cols)} FROM events WHERE stream_id = ANY($1) ORDER BY position",
            setup.ids,
        )

        def event_row(r: Any) -> tuple[Any, ...]:
            out = []
            for c in ev_cols:
                value = r[c]
                if c == "stream_id":
                    value = mapping[value]
                elif c == "event_id":
                    value = "evp_" + value[4:]
                out.append(value)
            return tuple(out)

        await dst.copy_records_to_table("events", records=[event_row(r) for r in events], columns=ev_cols)
        await copy_renamed(src, dst, "customers", "id", setup.ids, mapping)
        await dst.execute(CEILING_SCHEMA)
        await dst.execute("INSERT INTO bench_ceiling_balances SELECT id, balance, version FROM customers")
        await dst.execute("VACUUM ANALYZE")
    finally:
        await src.close()
        await dst.close()


async def copy_renamed(
    src: Any, dst: Any, table: str, id_column: str, ids: list[str], mapping: dict[str, str]
) -> None:
    """The rows of `table` whose `id_column` is in `ids`, copied to `dst` with that column renamed."""
    rows = await src.fetch(f"SELECT * FROM {table} WHERE {id_column} = ANY($1)", ids)
    columns = list(rows[0].keys())
    records = [tuple(mapping[r[c]] if c == id_column else r[c] for c in columns) for r in rows]
    await dst.copy_records_to_table(table, records=records, columns=columns)
