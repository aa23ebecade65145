"""The run in order: tools' versions and the machine, the database, the services, seeding, a warm-up, the
cells (repetition as the outer loop), the exact hot check, the profile, the report; and the cleanup of
everything it started."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pickle
import platform
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.cells import run_cell
from bench.checks import final_hot_check
from bench.database import start_database, stop_database
from bench.profile import run_profile
from bench.report import Report
from bench.results import Results
from bench.seed import seed
from bench.services import start_services
from bench.settings import CELL_ORDER, LEVER_KINDS, NCPU, ROOT, Settings, log
from bench.state import Setup
from bench.tools import first_line, pgbench_path


class Harness:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.t_start = time.monotonic()
        self.measure_t0 = self.t_start
        pgbench = pgbench_path()
        assert pgbench is not None, "check_tools() runs first"
        self.setup = Setup(settings, Path(tempfile.mkdtemp(prefix="ledger-bench-")), pgbench)
        self.results = Results(settings, started_at=dt.datetime.now(dt.UTC), loadavg_start=os.getloadavg())

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        self.collect_machine_info()
        await start_database(self.setup, self.results)
        await start_services(self.setup, self.results)
        await seed(self.setup, self.results)
        await self.warm_up()
        self.results.loadavg_measure = os.getloadavg()
        await self.measure()
        await final_hot_check(self.setup, self.results)
        await run_profile(self.setup, self.results)
        self.results.info["total_s"] = time.monotonic() - self.t_start
        self.write_results()

    async def cleanup(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError, RuntimeError):
                signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the cleanup
        log("stopping everything this run started")
        self.setup.children.stop_all()
        await stop_database(self.setup)
        if not self.s.keep:
            shutil.rmtree(self.setup.tmp, ignore_errors=True)
        else:
            log(f"kept {self.setup.tmp}")

    def elapsed(self) -> float:
        return time.monotonic() - self.t_start

    # -- machine -------------------------------------------------------------------------------------------

    def collect_machine_info(self) -> None:
        cpu_model = "?"
        with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
        mem_kb = 0
        with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    mem_kb = int(line.split()[1])
        commit = first_line(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
        subject = first_line(["git", "-C", str(ROOT), "log", "-1", "--format=%s"])
        try:
            status = subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True, timeout=10
            ).stdout.splitlines()
        except (OSError, subprocess.TimeoutExpired):
            status = []
        dirty = [line[3:] for line in status if line[:2].strip() and not line.startswith("??")]
        untracked = [line[3:] for line in status if line.startswith("??")]

        def version(mod: str) -> str:
            try:
                from importlib.metadata import version as v

                return v(mod)
            except Exception:
                return "?"

        self.results.info.update(
            nproc=NCPU,
            cpu_model=cpu_model,
            ram_gib=mem_kb / 1024 / 1024,
            kernel=platform.release(),
            python=platform.python_version(),
            commit=commit,
            subject=subject,
            dirty=dirty,
            untracked=untracked,
            wrk=first_line(["wrk", "--version"]).split(" [")[0],
            pgbench=first_line([self.setup.pgbench, "--version"]),
            packages={
                name: version(name)
                for name in (
                    "aiohttp",
                    "asyncpg",
                    "msgspec",
                    "structlog",
                    "eventsourcing",
                    "psycopg",
                    "py-spy",
                )
            },
            ledger_env={k: v for k, v in os.environ.items() if k.startswith("LEDGER_")},
        )

    # -- measurement ---------------------------------------------------------------------------------------

    async def warm_up(self) -> None:
        t0 = time.monotonic()
        log("warm-up (not recorded)")
        for kind in (
            "spread",
            "retrieve",
            "create",
            "list",
            "hot",
            "bare_crud",
            "bare_insert",
            "bare_select",
            *LEVER_KINDS,
        ):
            await run_cell(self.setup, self.results, kind, 16, 0, self.s.warmup, record=False)
        await run_cell(self.setup, self.results, "pgbench", 16, 0, self.s.warmup, record=False)
        self.results.timings["warmup"] = time.monotonic() - t0

    def estimate_cell_s(self) -> float:
        done = len(self.results.cells)
        if not done:
            return self.s.duration + 2.5
        return (time.monotonic() - self.measure_t0) / done

    async def measure(self) -> None:
        self.measure_t0 = time.monotonic()
        reserve = 25 + self.s.profile_seconds + 10  # final check, profile, report, cleanup
        cells_per_rep = len(CELL_ORDER) * len(self.s.clients)
        for rep in range(1, self.s.reps + 1):
            projected = self.elapsed() + cells_per_rep * self.estimate_cell_s() + reserve
            if rep > 1 and projected > self.s.budget_s:
                self.results.cut_short = (
                    f"stopped after {rep - 1} of {self.s.reps} repetitions: the next one would end past the"
                    f" {self.s.budget_s / 60:.0f}-minute budget (projected {projected / 60:.1f} min)"
                )
                log(self.results.cut_short)
                break
            log(f"repetition {rep}/{self.s.reps}")
            for clients in self.s.clients:
                for kind in CELL_ORDER:
                    await run_cell(self.setup, self.results, kind, clients, rep, self.s.duration)
        self.results.timings["measure"] = time.monotonic() - self.measure_t0

    # -- report --------------------------------------------------------------------------------------------

    def write_results(self) -> None:
        with contextlib.suppress(Exception):
            (self.setup.tmp / "state.pickle").write_bytes(pickle.dumps(self.results))
        self.s.output.write_text(Report(self.results).render())
        output = self.s.output
        log(f"wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
