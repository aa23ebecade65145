"""What a run measures and with which settings: paths, the scenarios and baselines, the order of the cells,
the PostgreSQL settings, and the command line's `Settings`."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SCENARIOS = BENCH / "scenarios"
BASELINES = BENCH / "baselines"
PGBENCH_SCRIPT = BASELINES / "append_projection.pgbench"
NCPU = os.cpu_count() or 1
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
    warmup: int
    verify_per_client: int
    workers: int | None = None

    @property
    def profile_output(self) -> Path:
        """The profile's collapsed stacks are written beside the report."""
        return self.output.with_name("profile-adjust-spread-c16.folded")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
