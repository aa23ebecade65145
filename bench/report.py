"""bench/RESULTS.md, rendered from a run's `Results`: the header, the targets with their ratios, the tables
of cells, the hot-customer checks, the CPU split and cost per operation, the method and every cell. The
profile's sections are in `report_profile`."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from bench.cells import pgbench_statements
from bench.figures import fmt, fmt_ms, fmt_pct, med_range, median
from bench.profile import service_round_trips
from bench.report_cpu import cost_section, loadgen_section
from bench.report_profile import profile_section
from bench.results import Cell, Results
from bench.settings import (
    AMOUNT,
    BASELINE_KINDS,
    CELL_ORDER,
    LEVER_KINDS,
    SCENARIO_TITLES,
    SERVICE_KINDS,
)


def preemptions(cell: Cell) -> str:
    invol = cell.extra.get("ctx_involuntary")
    return "n/a" if invol is None or not cell.requests else f"{invol / cell.requests:.1f}"


class Report:
    def __init__(self, r: Results) -> None:
        self.r = r
        self.s = r.settings
        self.by: dict[tuple[str, int], list[Cell]] = defaultdict(list)
        for cell in r.cells:
            self.by[(cell.kind, cell.clients)].append(cell)
        self.reps = sorted({c.rep for c in r.cells})

    def cell(self, kind: str, clients: int, rep: int) -> Cell | None:
        return next((c for c in self.by.get((kind, clients), []) if c.rep == rep), None)

    def per_rep(self, fn: Callable[[int], float | None]) -> list[float | None]:
        return [fn(rep) for rep in self.reps]

    def ratio_at(self, a: str, b: str, clients: int) -> list[float | None]:
        def one(rep: int) -> float | None:
            x, y = self.cell(a, clients, rep), self.cell(b, clients, rep)
            return x.throughput / y.throughput if x and y and y.throughput else None

        return self.per_rep(one)

    # -- sections ------------------------------------------------------------------------------------------

    def render(self) -> str:
        out: list[str] = []
        out += self.header()
        out += self.targets()
        out += self.table("Scenarios (through HTTP, `ledgerd serve`)", SERVICE_KINDS)
        out += self.table("Baselines (same run, same client counts)", BASELINE_KINDS)
        out += self.table(
            "Lever: group commit off (same run: a second `ledgerd serve` with LEDGER_GROUP_COMMIT_LANES=0)",
            LEVER_KINDS,
        )
        out += self.hot_section()
        out += loadgen_section(self.r.cells, self.by)
        out += cost_section(self.s, self.by)
        out += profile_section(self.r)
        out += self.method()
        out += self.appendix()
        return "\n".join(out) + "\n"

    def header(self) -> list[str]:
        i = self.r.info
        s = self.s
        pg = i.get("pg_settings", {})
        la0 = self.r.loadavg_start
        la1 = self.r.loadavg_measure or la0
        dirty = i.get("dirty") or []
        dirty_note = (
            f" + uncommitted changes in {len(dirty)} tracked file(s): {', '.join(dirty[:12])}"
            f"{' …' if len(dirty) > 12 else ''}"
            if dirty
            else " (clean working tree)"
        )
        untracked = i.get("untracked") or []
        lines = [
            "# Benchmark results",
            "",
            "Written by `make bench` (`python -m bench.run"
            + (" --quick" if s.quick else "")
            + f" --reps {s.reps} --duration {s.duration}`) from one real run. Do not edit by hand:"
            " run it again. How to read it and how it was measured: `bench/README.md`.",
            "",
            f"- **Date:** {self.r.started_at:%Y-%m-%d %H:%M} UTC; the run took {i.get('total_s', 0) / 60:.1f} min"
            f" ({self.reps[-1] if self.reps else 0} repetition(s) of {s.duration}s cells"
            f"{'; ' + self.r.cut_short if self.r.cut_short else ''}).",
            f"- **Code:** commit `{i.get('commit', '?')[:12]}` ({i.get('subject', '')}){dirty_note}"
            + (f"; {len(untracked)} untracked file(s)" if untracked else ""),
            f"- **Machine:** {i.get('nproc')} vCPU ({i.get('cpu_model')}), {i.get('ram_gib', 0):.1f} GiB RAM,"
            f" Linux {i.get('kernel')}. Shared box: load average at the start of the run"
            f" {la0[0]:.2f} / {la0[1]:.2f} / {la0[2]:.2f} (1/5/15 min), {la1[0]:.2f} / {la1[1]:.2f} / {la1[2]:.2f}"
            " when measuring began.",
            f"- **PostgreSQL:** {pg.get('server_version', '?')}, {i.get('database', '')}. Durability at defaults:"
            f" fsync={pg.get('fsync')}, synchronous_commit={pg.get('synchronous_commit')},"
            f" wal_sync_method={pg.get('wal_sync_method')}, full_page_writes={pg.get('full_page_writes')},"
            f" commit_delay={pg.get('commit_delay')}."
            + (" Raised (as in perf-ceilings.md): " if self.r.info.get("embedded") else " Server's own: ")
            + f"shared_buffers={pg.get('shared_buffers')}, max_wal_size={pg.get('max_wal_size')},"
            f" max_connections={pg.get('max_connections')}.",
            f"- **Software:** Python {i.get('python')}, "
            + ", ".join(f"{k} {v}" for k, v in i.get("packages", {}).items())
            + f", {i.get('wrk')}, {i.get('pgbench')}.",
            "- **Service:** `ledgerd serve` on 127.0.0.1 ("
            + (f"--workers {s.workers}" if getattr(s, "workers", None) else "one process")
            + f", {i.get('server_loop', 'unknown')} event loop, otherwise default configuration"
            + (f", env {i['ledger_env']}" if i.get("ledger_env") else "")
            + f"); {s.customers:,} customers seeded through HTTP ({i.get('seed_rate', 0):.0f}/s at 32 clients).",
            f"- **Load:** wrk, {s.duration}s per cell, clients {', '.join(map(str, s.clients))},"
            f" {len(self.reps)} repetition(s) (repetition is the outer loop); figures are the median over"
            " repetitions with the min-max in brackets. Throughput counts 2xx answers only.",
            "",
        ]
        return lines

    def targets(self) -> list[str]:
        lines = ["## Targets (issue 12): ratios from this run", ""]
        lines += [
            "| target | required | measured: median (min-max over repetitions) | verdict |",
            "|---|---|---|---|",
        ]

        def verdict(values: list[float | None], ok: Callable[[float], bool]) -> str:
            m = median(values)
            return "n/a" if m is None else ("met" if ok(m) else "**missed**")

        top = max(self.s.clients)
        mid = 16 if 16 in self.s.clients else min(self.s.clients)
        r = self.ratio_at("spread", "bare_crud", mid)
        lines.append(
            f"| AdjustBalance spread vs the bare CRUD endpoint at {mid} clients | ≥ 1.0x |"
            f" {med_range(r, 2, 1, 'x')} | {verdict(r, lambda v: v >= 1.0)} |"
        )
        p99 = [c.p99_us / 1000 if c.p99_us is not None else None for c in self.by.get(("spread", mid), [])]
        lines.append(
            f"| AdjustBalance spread p99 at {mid} clients | ≤ 25 ms | {med_range(p99, 1, 1, ' ms')} |"
            f" {verdict(p99, lambda v: v <= 25)} |"
        )
        r = self.ratio_at("spread", "bare_crud", top)
        lines.append(
            f"| AdjustBalance spread vs the bare CRUD endpoint at {top} clients | ≥ 1.5x |"
            f" {med_range(r, 2, 1, 'x')} | {verdict(r, lambda v: v >= 1.5)} |"
        )
        r = self.ratio_at("spread", "pgbench", top)
        lines.append(
            f"| AdjustBalance spread vs the pgbench append+projection ceiling at {top} clients | ≥ 0.35x |"
            f" {med_range(r, 2, 1, 'x')} | {verdict(r, lambda v: v >= 0.35)} |"
        )
        r4 = self.ratio_at("hot", "spread", top)
        hot_errors = sum(c.errors for c in self.by.get(("hot", top), []))
        lost_ok = all(c["ok"] for c in self.r.hot_checks) and (self.r.final_check or {}).get("ok", False)
        lines.append(
            f"| hot customer at {top} clients vs spread at {top} | ≥ 90 % | {med_range(r4, 0, 100, ' %')} |"
            f" {verdict(r4, lambda v: v >= 0.9)} |"
        )
        lines.append(
            f"| hot customer at {top} clients: errors | 0 | {hot_errors} | {'met' if hot_errors == 0 else '**missed**'} |"
        )
        lines.append(
            f"| hot customer: lost updates | 0 | {'none' if lost_ok else 'see below'} ({len(self.r.hot_checks)} timed"
            " runs + 1 exact fixed-count run checked) | " + ("met" if lost_ok else "**missed**") + " |"
        )
        statements = self.statements_per_command()
        lines.append(
            "| statements per AdjustBalance, solo path (BEGIN/COMMIT included) | ≤ 3 |"
            f" {'n/a' if statements is None else f'{statements:.1f}'} |"
            f" {'n/a' if statements is None else ('met' if statements <= 3 else '**missed**')} |"
        )
        for kind in SERVICE_KINDS:
            cells = self.by.get((kind, top), [])
            tails = [c.p99_us / c.p50_us if c.p99_us and c.p50_us else None for c in cells]
            lines.append(
                f"| {SCENARIO_TITLES[kind]} at {top} clients: p99 / p50 | < 5x | {med_range(tails, 1, 1, 'x')} |"
                f" {verdict(tails, lambda v: v < 5)} |"
            )
        lines += self.parity_note()
        lines += ["", "Same ratios at every client count (median over repetitions):", ""]
        lines += ["| ratio | " + " | ".join(f"c={c}" for c in self.s.clients) + " |"]
        lines += ["|---|" + "---|" * len(self.s.clients)]
        for label, a, b in (
            ("spread / bare CRUD", "spread", "bare_crud"),
            ("spread / pgbench", "spread", "pgbench"),
            ("spread / peer", "spread", "peer"),
            ("hot / spread", "hot", "spread"),
            ("spread: group commit on / off", "spread", "spread_solo"),
            ("hot: group commit on / off", "hot", "hot_solo"),
            ("retrieve / bare SELECT", "retrieve", "bare_select"),
            ("bare CRUD / pgbench", "bare_crud", "pgbench"),
        ):
            vals = [median(self.ratio_at(a, b, c)) for c in self.s.clients]
            lines.append(f"| {label} | " + " | ".join(fmt_pct(v) for v in vals) + " |")
        lines.append("")
        return lines

    def statements_per_command(self) -> float | None:
        p = self.r.profile
        if not p or not p.get("statements"):
            return None
        inside, _ = service_round_trips(p["statements"], p["commands"])
        return inside

    def parity_note(self) -> list[str]:
        p = self.r.profile
        if not p or not p.get("statements"):
            return ["", "Statements per command not counted (no pg_stat_statements)."]
        inside, reset = service_round_trips(p["statements"], p["commands"])
        return [
            "",
            f"Statements per AdjustBalance during the profile (group commit on; pg_stat_statements, every"
            f" statement run at least once per 20 commands): {inside:.1f}, plus {reset:.0f} for the pool's"
            " reset. A command that runs alone sends 2 (the read, then the write statement, which is its own"
            f" transaction); the ceiling script runs {pgbench_statements()} (BEGIN, INSERT, UPSERT, COMMIT).",
        ]

    def table(self, title: str, kinds: Sequence[str]) -> list[str]:
        lines = [f"## {title}", ""]
        lines += [
            "| scenario | clients | throughput /s | p50 ms | p99 ms | errors | load generator CPU (share of box) |"
            " server CPU (cores) | PostgreSQL CPU (cores) | box busy |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for kind in kinds:
            for clients in self.s.clients:
                cells = self.by.get((kind, clients), [])
                if not cells:
                    continue
                errors = sum(c.errors for c in cells)
                detail: Counter[str] = Counter()
                for c in cells:
                    detail.update(c.error_detail)
                err = f"{errors}" + (
                    f" ({', '.join(f'{k} {v}' for k, v in detail.items())})" if errors else ""
                )
                loadgen = (
                    "in-process"
                    if kind == "peer"
                    else med_range([c.loadgen_share for c in cells], 1, 100, " %")
                )
                lines.append(
                    f"| {SCENARIO_TITLES[kind]} | {clients} | {med_range([c.throughput for c in cells])} |"
                    f" {med_range([c.p50_us for c in cells], 2, 0.001)} | {med_range([c.p99_us for c in cells], 1, 0.001)} |"
                    f" {err} | {loadgen} | {med_range([c.server_cores for c in cells], 2)} |"
                    f" {med_range([c.pg_cores for c in cells], 2)} | {med_range([c.box_busy for c in cells], 0, 100, ' %')} |"
                )
        lines.append("")
        if kinds == BASELINE_KINDS:
            lines += [
                "For pgbench the server is PostgreSQL itself (its CPU is in the PostgreSQL column); for the"
                " peer the server CPU column is the peer process itself (its client threads and the library in"
                " one process, no HTTP).",
                "",
            ]
        return lines

    def hot_section(self) -> list[str]:
        lines = ["## Hot customer: lost updates", ""]
        lines += [
            "After each timed hot run the harness waits until the customer's stream stops moving, then"
            " compares the projection's balance with the ledger and the log. wrk stops at its deadline with"
            " up to one request per connection in flight; those commit after wrk has stopped counting, so"
            " `committed, not acknowledged` may be between 0 and the client count, but never negative"
            " (a negative value would be an acknowledged adjustment that was lost).",
            "",
            "| rep | clients | 2xx (wrk) | transactions | committed, not acknowledged | balance | sum of transactions |"
            " count x amount | BalanceAdjusted events | ok |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in self.r.hot_checks:
            lines.append(
                f"| {c['rep']} | {c['clients']} | {c['acknowledged_2xx']} | {c['transactions']} |"
                f" {c['committed_not_acknowledged']} | {c['balance']} | {c['sum_of_transactions']} |"
                f" {c['transactions'] * AMOUNT} | {c['events']} | {'yes' if c['ok'] else '**NO**'} |"
            )
        f = self.r.final_check
        if f:
            ok = sum(v for k, v in f["statuses"].items() if k.startswith("2"))
            lines += [
                "",
                f"**Exact check** (fixed count, every request awaited, aiohttp client): {f['requests']} adjustments"
                f" of {AMOUNT} on one new customer from {f['clients']} concurrent clients in {f['wall_s']:.1f}s;"
                f" statuses {f['statuses']}. Balance {f['balance']} = sum of its transactions"
                f" {f['sum_of_transactions']} = {ok} 2xx x {AMOUNT} = {ok * AMOUNT}:"
                f" **{'zero lost updates' if f['ok'] else 'MISMATCH'}**.",
            ]
        lines.append("")
        return lines

    def method(self) -> list[str]:
        t = self.r.timings
        return [
            "## How this was measured",
            "",
            "- Scenarios: wrk Lua scripts in `bench/scenarios/` send what stripe-python 16.1.0 sends"
            " (`Authorization: Bearer sk_test_…`, `Stripe-Version: 2026-10-28.endive`, `User-Agent: Stripe/v1"
            " PythonBindings/16.1.0`, `X-Stripe-Client-User-Agent`, and on POSTs a form body and a unique"
            " `Idempotency-Key` made in Lua; like the SDK, GETs carry no key). wrk runs `-t2` (`-t1` for one"
            " client), `--timeout 10s`; errors are non-2xx answers plus socket errors and timeouts.",
            "- AdjustBalance spread draws the customer at random from the seeded set; the hot scenario uses a new"
            " customer per cell (so every hot cell starts from a one-event stream).",
            f"- Storage ceiling: `bench/baselines/append_projection.pgbench`, {pgbench_statements()} statements"
            " per transaction (BEGIN, INSERT one event, UPSERT one balance row, COMMIT: what a team would build"
            " instead of an event-sourced ledger, without Python or HTTP), `pgbench -n -M prepared -c N -j"
            " min(N,2) -T d`, in its own database.",
            "- CRUD baseline: `bench/baselines/bare_app.py` POST /crud, aiohttp + asyncpg with the service's pool"
            " size, one transaction per request (INSERT the entry, UPSERT the balance), same wrk and body.",
            "- Framework ceiling: `bench/baselines/bare_app.py`, aiohttp + asyncpg with the service's pool size"
            " (2-20) and default loop, one INSERT per POST (and, extra, the retrieve SELECT per GET), same wrk.",
            "- Peer: `bench/baselines/peer_eventsourcing.py`, eventsourcing's PostgreSQL persistence module"
            " (default recorder), N threads each running `repository.get` → `adjust` → `save` on random accounts"
            " among 10,000, in-process (no HTTP), conflicts retried.",
            "- Before every cell: `CHECKPOINT`. CPU per cell: wrk/pgbench from wait4 rusage; server and peer from"
            " /proc; PostgreSQL = postmaster + all its children (live and reaped); box from /proc/stat.",
            f"- Time: database {t.get('database', 0):.0f}s, services {t.get('services', 0):.0f}s, seeding"
            f" {t.get('seed', 0):.0f}s, warm-up {t.get('warmup', 0):.0f}s, cells {t.get('measure', 0):.0f}s,"
            f" profile {t.get('profile', 0):.0f}s.",
            "",
        ]

    def appendix(self) -> list[str]:
        lines = ["## Appendix: every cell", ""]
        lines += [
            "| rep | scenario | clients | 2xx/s | p50 ms | p99 ms | requests | errors | wrk/pgbench CPU s | server CPU s |"
            " server run-queue wait s | server preemptions per request | PostgreSQL CPU s | other processes CPU s |"
            " box busy | wall s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in sorted(self.r.cells, key=lambda c: (c.rep, CELL_ORDER.index(c.kind), c.clients)):
            lines.append(
                f"| {c.rep} | {c.kind} | {c.clients} | {c.throughput:,.0f} | {fmt_ms(c.p50_us)} | {fmt_ms(c.p99_us)} |"
                f" {c.requests:,} | {c.errors} | {fmt(c.loadgen_cpu_s, 2)} | {fmt(c.server_cpu_s, 2)} |"
                f" {fmt(c.server_wait_s, 2)} | {preemptions(c)} | {fmt(c.pg_cpu_s, 2)} |"
                f" {fmt(None if c.other_cores is None else c.other_cores * c.wall_s, 2)} |"
                f" {fmt_pct(c.box_busy)} | {c.wall_s:.1f} |"
            )
        lines.append("")
        return lines
