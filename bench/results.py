"""What a run measured: one `Cell` per scenario, client count and repetition, and the `Results` the report
is rendered from (also what `--keep` saves, so `--render-from` can render it again)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from bench.settings import NCPU, Settings


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
class Results:
    settings: Settings
    started_at: dt.datetime
    loadavg_start: tuple[float, float, float]
    loadavg_measure: tuple[float, float, float] | None = None
    cells: list[Cell] = field(default_factory=list)
    hot_checks: list[dict[str, Any]] = field(default_factory=list)
    final_check: dict[str, Any] | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cut_short: str | None = None
