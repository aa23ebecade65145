"""The profile step: AdjustBalance spread at 16 clients with py-spy on the server, pg_stat_statements on,
and pg_stat_activity sampled every 20 ms. Its figures are not part of the cells."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from bench.cells import run_wrk
from bench.database import checkpoint
from bench.processes import wait_rusage
from bench.results import Results
from bench.settings import log
from bench.state import Setup
from bench.tools import py_spy_path

RESET_STATEMENTS = ("SELECT pg_advisory_unlock_all()", "CLOSE ALL", "UNLISTEN *", "RESET ALL")


async def run_profile(setup: Setup, results: Results) -> None:
    """AdjustBalance spread at 16 clients with py-spy on the server, pg_stat_statements and
    pg_stat_activity sampling. The figures of this cell are not part of the results above."""
    import asyncpg

    assert setup.server is not None
    seconds = setup.settings.profile_seconds
    clients = 16 if 16 in setup.settings.clients else max(setup.settings.clients)
    log(f"profiling the server under AdjustBalance spread at {clients} clients for {seconds}s")
    t0 = time.monotonic()
    admin = await asyncpg.connect(setup.url)
    try:
        if setup.pgss and setup.pg is not None:
            await admin.execute("ALTER SYSTEM SET pg_stat_statements.track = 'top'")
            await admin.execute("SELECT pg_reload_conf()")
            await asyncio.sleep(0.5)
        if setup.pgss:
            await admin.execute("SELECT pg_stat_statements_reset()")
        stat0 = await admin.fetchrow(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        events0 = await admin.fetchval("SELECT count(*) FROM events WHERE event_type = 'BalanceAdjusted'")
        stream_len = await admin.fetchval(
            "SELECT avg(version) FROM streams WHERE stream_id = ANY($1)", setup.ids
        )
        await checkpoint(setup.url)
        folded = setup.tmp / "profile.folded"
        spy_cmd = [
            py_spy_path() or "py-spy",
            "record",
            "--rate",
            "100",
            "--duration",
            str(seconds),
            "--format",
            "raw",
            "--output",
            str(folded),
            "--pid",
            str(setup.server.pid),
            "--subprocesses",  # ledgerd serve --workers N
        ]
        waits: Counter[str] = Counter()
        samples = 0
        stop = asyncio.Event()

        async def sample_waits() -> None:
            nonlocal samples
            conn = await asyncpg.connect(setup.url)
            try:
                while not stop.is_set():
                    rows = await conn.fetch(
                        """SELECT state, wait_event_type, wait_event FROM pg_stat_activity
                           WHERE datname = current_database() AND pid <> pg_backend_pid()
                             AND backend_type = 'client backend'"""
                    )
                    samples += 1
                    for r in rows:
                        waits[wait_label(r["state"], r["wait_event_type"], r["wait_event"])] += 1
                    await asyncio.sleep(0.02)
            finally:
                await conn.close()

        wrk_task = asyncio.create_task(
            asyncio.to_thread(run_wrk, setup, "spread", clients, seconds + 3, setup.port, setup.server.pid, 0)
        )
        await asyncio.sleep(1.5)
        sampler = asyncio.create_task(sample_waits())
        spy = setup.children.popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        spy_code, _ = await asyncio.to_thread(wait_rusage, spy, seconds + 60)
        stop.set()
        await sampler
        cell = await wrk_task
        stat1 = await admin.fetchrow(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        events1 = await admin.fetchval("SELECT count(*) FROM events WHERE event_type = 'BalanceAdjusted'")
        statements: list[dict[str, Any]] = []
        if setup.pgss:
            rows = await admin.fetch(
                """SELECT query, calls, total_exec_time, mean_exec_time, rows
                   FROM pg_stat_statements
                   WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                     AND query NOT LIKE '%pg_stat_activity%' AND query NOT LIKE '%pg_stat_database%'
                     AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE 'CHECKPOINT%'
                     AND query NOT LIKE 'SELECT count(*) FROM events WHERE event_type%'
                     AND query NOT LIKE 'SELECT avg(version) FROM streams%'
                   ORDER BY calls DESC, total_exec_time DESC"""
            )
            statements = merge_statements(rows)
            if setup.pg is not None:
                await admin.execute("ALTER SYSTEM SET pg_stat_statements.track = 'none'")
                await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()
    commands = int(events1 - events0)
    results.profile = {
        "clients": clients,
        "seconds": seconds,
        "cell": cell,
        "py_spy_exit": spy_code,
        "py_spy_stderr": (spy.stderr.read().decode(errors="replace")[-800:] if spy.stderr else ""),
        "folded": folded.read_text() if folded.exists() else "",
        "waits": dict(waits),
        "wait_samples": samples,
        "statements": statements,
        "commands": commands,
        "xacts": int(stat1["xact_commit"] - stat0["xact_commit"]),
        "mean_stream_length": float(stream_len or 0),
    }
    if results.profile["folded"]:
        setup.settings.profile_output.write_text(results.profile["folded"])
    results.timings["profile"] = time.monotonic() - t0


def wait_label(state: str | None, kind: str | None, event: str | None) -> str:
    if state == "idle":
        return "idle (connection in the pool)"
    if state == "idle in transaction":
        return "idle in transaction (waiting for the app's next statement)"
    if state == "active" and kind is None:
        return "active on CPU (executing)"
    return f"{state}: {kind}:{event}"


def service_round_trips(statements: list[dict[str, Any]], commands: int) -> tuple[float, float]:
    """(statements per command inside the transaction, the pool's reset statements per command), from
    pg_stat_statements rows; statements seen less than once per 20 commands (auth cache refreshes,
    type introspection) are left out. Group commit makes some statements once per batch: fractions."""
    inside = reset = 0.0
    for row in statements:
        per = row["calls"] / max(commands, 1)
        if per < 0.05:
            continue
        if " ".join(str(row["query"]).split()) in RESET_STATEMENTS:
            reset += per
        else:
            inside += per
    return inside, reset


def merge_statements(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """pg_stat_statements rows merged by query text: one statement prepared on several connections can
    get several query ids (e.g. different parameter types inferred), which would split its calls."""
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        text = " ".join(str(row["query"]).split())
        entry = merged.setdefault(text, {"query": text, "calls": 0, "total_exec_time": 0.0, "rows": 0})
        entry["calls"] += row["calls"]
        entry["total_exec_time"] += row["total_exec_time"]
        entry["rows"] += row["rows"]
    for entry in merged.values():
        entry["mean_exec_time"] = entry["total_exec_time"] / max(entry["calls"], 1)
    return sorted(merged.values(), key=lambda e: (-e["calls"], -e["total_exec_time"]))
