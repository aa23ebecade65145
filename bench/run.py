"""`make bench`: load benchmarks of a real `ledgerd serve` with same-run baselines (issue 5).

    .venv/bin/python -m bench.run                 # full run (3 repetitions, ~12-14 minutes)
    .venv/bin/python -m bench.run --quick         # ~2-minute smoke run (1 repetition, short cells)
    .venv/bin/python -m bench.run --reps 5 --duration 8 --clients 1,16,64
    .venv/bin/python -m bench.run --render-from /tmp/ledger-bench-…/state.pickle [OUT.md]

What it does, in order (one module each):
 1. checks the tools (tools.py): wrk (Debian), the `bench` extra of pyproject.toml (eventsourcing +
    psycopg, psutil, py-spy) and pgbench; a missing one stops the run with the command that installs it;
 2. starts a fresh embedded PostgreSQL 18 in a temporary directory with durable commits (fsync,
    synchronous_commit, full_page_writes at their defaults; only shared_buffers, max_wal_size,
    max_connections are raised, as in shared/reference/perf-ceilings.md), or, if DATABASE_URL is set,
    creates fresh databases on that server (database.py);
 3. migrates, creates an API key and starts `ledgerd serve` (a subprocess, loopback, a free port), and
    the bare aiohttp + asyncpg baseline app (services.py); seeds 10,000 customers through HTTP, copies
    them into a separate database for pgbench, seeds 10,000 accounts for the eventsourcing peer (seed.py);
 4. runs every cell (scenario x client count), repetition as the outer loop so each repetition's
    cells run side by side (harness.py, cells.py); a CHECKPOINT precedes each cell; the CPU of wrk
    (rusage of the child), of the server, of PostgreSQL and of the whole box is measured per cell (cpu.py);
 5. checks the hot customer for lost updates after each hot cell, and once more with a fixed number
    of requests so that the count of 2xx answers is exact (checks.py);
 6. profiles the server under AdjustBalance spread at 16 clients (py-spy, pg_stat_statements,
    pg_stat_activity wait sampling: profile.py, stacks.py);
 7. writes bench/RESULTS.md (report.py, report_cpu.py, report_profile.py); stops everything it started, also on Ctrl-C
    or failure (processes.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import Harness
from bench.report import Report
from bench.results import Results
from bench.settings import BENCH, ROOT, Settings, log
from bench.tools import check_tools


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="~2-minute smoke run: 1 repetition, 3s cells")
    p.add_argument("--reps", type=int, help="repetitions (default 3; --quick 1)")
    p.add_argument("--duration", type=int, help="seconds per cell (default 7; --quick 3)")
    p.add_argument("--clients", default="1,16,64", help="client counts (default 1,16,64)")
    p.add_argument("--customers", type=int, help="customers for the spread scenario (10,000; --quick 2,000)")
    p.add_argument("--profile-seconds", type=int, help="py-spy window (default 10; --quick 4)")
    p.add_argument("--budget-minutes", type=float, default=15.0, help="stop repeating past this")
    p.add_argument(
        "--output",
        type=Path,
        default=BENCH / "RESULTS.md",
        help="the report (the profile's stacks beside it)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, state.pickle)")
    p.add_argument("--workers", type=int, help="pass --workers N to ledgerd serve (default: its own)")
    p.add_argument(
        "--render-from",
        nargs="+",
        metavar=("STATE", "OUT"),
        help="render a report from a kept state.pickle (to OUT, default --output) without measuring",
    )
    p.add_argument("--skip-install", action="store_true", help=argparse.SUPPRESS)  # nothing installs any more
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    quick = bool(args.quick)
    return Settings(
        quick=quick,
        reps=args.reps or (1 if quick else 3),
        duration=args.duration or (3 if quick else 7),
        clients=[int(x) for x in args.clients.split(",") if x.strip()],
        customers=args.customers or (2_000 if quick else 10_000),
        profile_seconds=args.profile_seconds or (4 if quick else 10),
        budget_s=args.budget_minutes * 60,
        output=args.output.resolve(),
        keep=args.keep,
        warmup=1 if quick else 2,
        verify_per_client=5 if quick else 20,
        workers=args.workers,
    )


async def measure(settings: Settings) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # also when started with SIGINT ignored
        loop.add_signal_handler(sig, task.cancel)
    harness = Harness(settings)
    try:
        await harness.run()
        return 0
    except asyncio.CancelledError:
        log("interrupted")
        return 130
    finally:
        harness.setup.children.stop_all()  # at once, before anything else can fail
        await harness.cleanup()


def render_saved(state_file: Path, output: Path) -> int:
    """Developer aid: re-render RESULTS.md from the state a run kept (`--keep`), without measuring."""
    results = pickle.loads(state_file.read_bytes())
    if not isinstance(results, Results):
        raise SystemExit(f"bench: {state_file} was saved by an older bench/run.py; run it again with --keep")
    results.settings.output = output
    output.write_text(Report(results).render())
    log(f"rendered {output} from {state_file}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.render_from:
        if len(args.render_from) > 2:
            p.error("--render-from takes STATE and at most one OUT")
        out = Path(args.render_from[1]) if len(args.render_from) > 1 else args.output
        return render_saved(Path(args.render_from[0]), out)
    settings = settings_from(args)
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    check_tools()
    t0 = time.monotonic()
    try:
        code = asyncio.run(measure(settings))
    except KeyboardInterrupt:
        log("interrupted (Ctrl-C); everything started was stopped")
        code = 130
    log(f"done in {(time.monotonic() - t0) / 60:.1f} min")
    return code


if __name__ == "__main__":
    sys.exit(main())
