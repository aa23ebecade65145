"""The profile's sections of bench/RESULTS.md: where the server's samples are (py-spy), the statements per
command (pg_stat_statements), what the backends wait on (pg_stat_activity), and statements generated from
those figures by fixed rules."""

from __future__ import annotations

from typing import Any

from bench.figures import fmt, fmt_ms, fmt_pct
from bench.profile import service_round_trips
from bench.results import Cell, Results
from bench.stacks import CODE_PATHS, analyse_profile


def profile_section(results: Results) -> list[str]:
    p = results.profile
    lines = ["## What limits it (profile of AdjustBalance spread at 16 clients)", ""]
    if not p:
        return [*lines, "No profile was taken.", ""]
    cell: Cell = p["cell"]
    analysis = analyse_profile(p.get("folded", ""))
    commands = max(p["commands"], 1)
    lines.append(
        f"A separate {p['seconds']}s window after the repetitions, with py-spy attached to `ledgerd serve`"
        " (`py-spy record --rate 100 --format raw`, which pauses the process for each sample so stacks are whole; collapsed stacks kept in"
        " `bench/profile-adjust-spread-c16.folded`, open them with speedscope or flamegraph.pl),"
        " pg_stat_statements tracking, and pg_stat_activity sampled every 20 ms. Under the profiler:"
        f" {cell.throughput:,.0f} adjustments/s, p50 {fmt_ms(cell.p50_us)} ms, p99 {fmt_ms(cell.p99_us)} ms;"
        f" ledgerd serve used {fmt(cell.server_cores, 2)} cores and waited for a core (runnable, not running)"
        f" {fmt_pct((cell.server_wait_s or 0) / cell.wall_s)} of the time, PostgreSQL used"
        f" {fmt(cell.pg_cores, 2)} cores, wrk"
        f" {fmt((cell.loadgen_cpu_s or 0) / cell.wall_s, 2)}, other processes {fmt(cell.other_cores, 2)};"
        f" box busy {fmt_pct(cell.box_busy)}. The seeded streams held {p['mean_stream_length']:.1f} events on"
        " average when it began (a command reads the stream's snapshot, or folds all its events when the"
        " snapshot is missing or stale)."
    )
    lines.append("")
    total = analysis.get("total", 0)
    if total:
        active = total / (p["seconds"] * 100)
        lines += [
            f"**Server process (py-spy):** {total} samples found the event-loop thread not idle ="
            f" {fmt_pct(active)} of the window. A thread preempted while runnable counts as not idle, so on"
            ' this shared 2-core box part of the "active" time is time spent waiting for a core.',
            "",
            "| where the server's active samples are | share |",
            "|---|---|",
        ]
        libs = dict(analysis["libs"])
        groups = (
            (
                "PostgreSQL client: asyncpg sending statements, reading results, pool (incl. its socket syscalls)",
                ("socket send to PostgreSQL", "asyncpg in Python"),
            ),
            (
                "HTTP: aiohttp parsing, routing, writing the response (incl. its socket syscalls)",
                ("aiohttp", "socket send of the HTTP"),
            ),
        )
        grouped: set[str] = set()
        for title, prefixes in groups:
            members = [(k, n) for k, n in libs.items() if k.startswith(prefixes)]
            grouped.update(k for k, _ in members)
            lines.append(f"| **{title}** | **{fmt_pct(sum(n for _, n in members) / total)}** |")
            lines += [f"| &nbsp;&nbsp;&nbsp;&nbsp;of which {k} | {fmt_pct(n / total)} |" for k, n in members]
        lines += [
            f"| {label} | {fmt_pct(n / total)} |" for label, n in analysis["libs"] if label not in grouped
        ]
        if results.info.get("server_loop") == "uvloop":
            lines.append(
                "| (uvloop: socket syscalls happen in C inside the loop and are counted with the Python"
                " frame that asked for them) | |"
            )
        lines += ["", "| code path (inclusive: the sample is anywhere inside it) | share |", "|---|---|"]
        for label, _, _ in CODE_PATHS:
            n = analysis["paths"].get(label, 0)
            indent = len(label) - len(label.lstrip(" "))
            lines.append(f"| {'&nbsp;' * 2 * indent}{label.strip()} | {fmt_pct(n / total)} |")
        drained = next(label for label, name, _ in CODE_PATHS if name == "run_batch")
        outside = total - analysis["paths"].get(CODE_PATHS[-1][0], 0) - analysis["paths"].get(drained, 0)
        lines.append(
            "| outside the route handler and the group commit transactions (HTTP in and out, middlewares,"
            f" access log, event loop) | {fmt_pct(outside / total)} |"
        )
        lines += ["", "| top functions by self time | share |", "|---|---|"]
        lines += [f"| `{name}` | {fmt_pct(n / total, 1)} |" for name, n in analysis["leaf"][:12]]
        lines.append("")
    else:
        lines += [
            f"py-spy produced no samples (exit {p.get('py_spy_exit')}): {p.get('py_spy_stderr')}",
            "",
        ]
    if p["statements"]:
        calls = sum(r["calls"] for r in p["statements"])
        exec_ms = sum(r["total_exec_time"] for r in p["statements"])
        lines += [
            f"**Database (pg_stat_statements):** {p['commands']:,} adjustments committed in the window and"
            f" {calls:,} statements executed: **{calls / commands:.1f} statements per command**"
            f" ({p['xacts']:,} transactions; the pool's reset on release is one round trip of 4 statements)."
            f" Server-side execution time: {exec_ms / commands:.2f} ms per command, the commit's WAL flush"
            f" included, against a p50 latency of {fmt_ms(cell.p50_us)} ms.",
            "",
            "| statement | calls per command | mean ms |",
            "|---|---|---|",
        ]
        for r in p["statements"][:26]:
            query = " ".join(str(r["query"]).split())
            if len(query) > 120:
                query = query[:117] + "…"
            query = query.replace("|", "\\|")
            lines.append(f"| `{query}` | {r['calls'] / commands:.2f} | {r['mean_exec_time']:.3f} |")
        lines.append("")
    if p["waits"]:
        seen = sum(p["waits"].values())
        lines += [
            f"**The service's PostgreSQL backends (pg_stat_activity, {p['wait_samples']} samples of every"
            " connection of the pool):**",
            "",
            "| backend state | share of backend-samples |",
            "|---|---|",
        ]
        for label, n in sorted(p["waits"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {label} | {fmt_pct(n / seen, 1)} |")
        lines.append("")
    lines += limits_text(results, analysis)
    return lines


def limits_text(results: Results, analysis: dict[str, Any]) -> list[str]:
    """Plain statements derived from this run's figures (the same rules on every run)."""
    p = results.profile
    cell: Cell = p["cell"]
    out = ["**Reading of these figures (generated from them):**", ""]
    total = analysis.get("total", 0)
    commands = max(p["commands"], 1)
    statements = sum(r["calls"] for r in p["statements"]) / commands if p["statements"] else None
    inside, reset = service_round_trips(p["statements"], commands) if p["statements"] else (0.0, 0.0)
    round_trips = inside + (1 if reset else 0)
    if total:
        active = total / (p["seconds"] * 100)
        cpu_ms = 1000 * (cell.server_cpu_s or 0) / max(cell.extra.get("ok", 1), 1)
        running = cell.server_cores or 0
        waiting = (cell.server_wait_s or 0) / cell.wall_s
        out.append(
            f"- One `ledgerd serve` process spends {cpu_ms:.2f} ms of CPU per AdjustBalance (its CPU time over"
            f" the 2xx count). Its event loop was never idle for {fmt_pct(active)} of the window: on a core"
            f" {fmt_pct(running)}, runnable but waiting for a core {fmt_pct(waiting)}."
            + (
                " The single Python process is the bottleneck (it always has work), not PostgreSQL's disk;"
                " how much of it is its own CPU and how much is waiting depends on what else runs on the box."
                if active >= 0.8
                else " It is not saturated: it waits on the database."
            )
        )
        libs = dict(analysis["libs"])
        send_pg = sum(n for k, n in libs.items() if k.startswith("socket send to PostgreSQL")) / total
        asyncpg_py = sum(n for k, n in libs.items() if k.startswith("asyncpg in Python")) / total
        ours = sum(n for k, n in libs.items() if k.startswith("our code")) / total
        http = sum(n for k, n in libs.items() if k.startswith(("aiohttp", "socket send of the HTTP"))) / total
        rt = f"{round_trips:.0f} round trips" if statements else "each round trip"
        ok = max(int(cell.extra.get("ok", 1)), 1)
        invol = cell.extra.get("ctx_involuntary")
        vol = cell.extra.get("ctx_voluntary")
        if invol is not None and vol is not None:
            out.append(
                f"- Context switches of the server process per AdjustBalance: {invol / ok:.1f} involuntary"
                f" (preempted while it had work) and {vol / ok:.1f} voluntary (it went to sleep waiting)."
            )
        out.append(
            f"- The PostgreSQL client side (asyncpg, with the socket syscalls it makes) holds"
            f" {fmt_pct(send_pg + asyncpg_py)} of the active samples"
            + (f", {fmt_pct(send_pg)} inside the send of a statement itself," if send_pg else "")
            + f" for {rt} per command. A send to the Unix socket does the kernel's work of the hand-off and"
            " wakes the PostgreSQL backend, which on two cores shared by the server, PostgreSQL, wrk and"
            " other processes often preempts the server (see the context switches above)."
            f" HTTP (aiohttp parsing and response writing) takes {fmt_pct(http)}, our own Python code"
            f" (decoding, deciding, hashing, rendering JSON) {fmt_pct(ours)}."
        )
    if statements:
        out.append(
            f"- {inside:.1f} statements per command inside the transaction (BEGIN and COMMIT included; the"
            f" statement table above lists them) plus the pool's reset on release ({reset:.0f} statements in"
            f" one round trip): {round_trips:.0f} round trips from Python per command. The storage ceiling"
            " runs the transaction's statements back to back from pgbench, without Python in between."
        )
    waits = p.get("waits") or {}
    seen = sum(waits.values())
    if seen:
        idle_tx = sum(n for k, n in waits.items() if k.startswith("idle in transaction")) / seen
        idle = sum(n for k, n in waits.items() if k.startswith("idle (")) / seen
        wal = sum(n for k, n in waits.items() if "WAL" in k or "Wal" in k) / seen
        lock = sum(n for k, n in waits.items() if "Lock:" in k) / seen
        out.append(
            f"- PostgreSQL is waiting on Python, not the other way round: the pool's backends were idle in"
            f" the pool {fmt_pct(idle)} and idle *inside* an open transaction (waiting for the server's next"
            f" statement) {fmt_pct(idle_tx)} of the samples, waiting on the WAL flush {fmt_pct(wal)}, on"
            f" locks {fmt_pct(lock)}."
        )
    paths = analysis.get("paths", {})
    if total and paths:
        load = paths.get(CODE_PATHS[2][0], 0) / total
        rows = paths.get(CODE_PATHS[6][0], 0) / total
        command = paths.get(CODE_PATHS[0][0], 0) / total
        out.append(
            f"- The command path (read, decide, write, respond) is {fmt_pct(command)} of the active samples;"
            f" loading the customer's state {fmt_pct(load)} (streams held {p['mean_stream_length']:.1f} events"
            f" on average), computing the projection rows {fmt_pct(rows)}."
        )
    out.append("")
    return out
