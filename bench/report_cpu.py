"""The CPU sections of bench/RESULTS.md: whether the load generator is the bottleneck, the CPU split of one
cell, and the CPU cost per operation of each party."""

from __future__ import annotations

from bench.figures import fmt, fmt_pct, median
from bench.results import Cell
from bench.settings import BASELINE_KINDS, LEVER_KINDS, NCPU, SCENARIO_TITLES, SERVICE_KINDS, Settings


def loadgen_section(all_cells: list[Cell], by: dict[tuple[str, int], list[Cell]]) -> list[str]:
    lines = ["## Is the load generator the bottleneck?", ""]
    shares = [c.loadgen_share for c in all_cells if c.loadgen_share is not None and c.kind != "pgbench"]
    worst = max(
        (c for c in all_cells if c.loadgen_share is not None and c.kind != "pgbench"),
        key=lambda c: c.loadgen_share or 0,
        default=None,
    )
    if shares and worst:
        lines.append(
            f"wrk's CPU (user + system from the rusage of the wrk child, over wall time x {NCPU} cores): median"
            f" {fmt_pct(median(shares), 1)} of the box, at most {fmt_pct(worst.loadgen_share, 1)}"
            f" ({SCENARIO_TITLES[worst.kind]}, c={worst.clients}, rep {worst.rep}), while the server process"
            f" used {fmt(worst.server_cores, 2)} cores in that cell. Per-cell figures are in the tables above."
        )
    spread16 = by.get(("spread", 16), [])
    if spread16:
        c = spread16[len(spread16) // 2]
        lines += [
            "",
            f"CPU split in AdjustBalance spread at 16 clients (rep {c.rep}), in cores out of {NCPU}:"
            f" wrk {fmt((c.loadgen_cpu_s or 0) / c.wall_s, 2)}, ledgerd serve {fmt(c.server_cores, 2)},"
            f" PostgreSQL {fmt(c.pg_cores, 2)}, everything else on the box {fmt(c.other_cores, 2)}"
            f" (steal {fmt((c.steal_s or 0) / c.wall_s, 2)}); box busy {fmt_pct(c.box_busy)}. The server"
            f" process was also runnable but waiting for a core for {fmt_pct((c.server_wait_s or 0) / c.wall_s)}"
            " of the time (run-queue wait from /proc/<pid>/schedstat).",
        ]
    lines.append("")
    return lines


def cost_section(settings: Settings, by: dict[tuple[str, int], list[Cell]]) -> list[str]:
    """CPU per operation, from the per-cell accounting: on a box this small it explains throughput."""
    clients = 16 if 16 in settings.clients else max(settings.clients)
    lines = [
        f"## CPU cost per operation (at {clients} clients, median over repetitions)",
        "",
        "CPU seconds of each party over the cell divided by the operations it completed. On two cores"
        " shared by everything, throughput cannot exceed cores / total CPU per operation; the last column"
        " is that bound for an otherwise idle box.",
        "",
        "| scenario | server ms/op | PostgreSQL ms/op | load generator ms/op | total ms/op | bound: ops/s on"
        f" {NCPU} idle cores | measured ops/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in (*SERVICE_KINDS, *LEVER_KINDS, *BASELINE_KINDS):
        cells = by.get((kind, clients), [])
        if not cells:
            continue

        def per_op(attr: str, cs: list[Cell] = cells) -> float | None:
            vals = [
                1000 * getattr(c, attr) / (c.throughput * c.duration_s)
                for c in cs
                if getattr(c, attr) is not None and c.throughput > 0
            ]
            return median(vals)

        srv, pg, lg = per_op("server_cpu_s"), per_op("pg_cpu_s"), per_op("loadgen_cpu_s")
        total = sum(v for v in (srv, pg, lg) if v is not None) if pg is not None else None
        bound = NCPU * 1000 / total if total else None
        lines.append(
            f"| {SCENARIO_TITLES[kind]} | {fmt(srv, 2)} | {fmt(pg, 2)} | {fmt(lg, 2)} | {fmt(total, 2)} |"
            f" {fmt(bound)} | {fmt(median(c.throughput for c in cells))} |"
        )
    lines += [
        "",
        "For the peer the server column is the whole peer process (its client threads included).",
        "",
    ]
    return lines
