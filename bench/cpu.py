"""CPU accounting per cell: the whole box (/proc/stat), a process tree (psutil: the server, or PostgreSQL's
postmaster with all its children, live and reaped), run-queue waits (/proc/<pid>/task/*/schedstat) and
context switches."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench.results import Cell

CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def snapshot(server_pid: int | None, postmaster_pid: int | None) -> CpuSnapshot:
    return CpuSnapshot(
        at=time.monotonic(),
        box=box_ticks(),
        server=proc_cpu(server_pid, with_children=True),
        pg=proc_cpu(postmaster_pid, with_children=True),
        server_wait=run_queue_wait(server_pid, with_children=True),
        pg_wait=run_queue_wait(postmaster_pid, with_children=True),
        server_ctx=context_switches(server_pid),
    )


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


def wait_backends_reaped(postmaster_pid: int | None, before: int, timeout: float = 3.0) -> None:
    """Backends of a client that just exited count in PostgreSQL's CPU only once the postmaster has
    reaped them (cutime): wait until its children are back to what they were, or no longer zombies."""
    if postmaster_pid is None:
        return
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = psutil.Process(postmaster_pid).children()
            zombies = [c for c in children if c.status() == psutil.STATUS_ZOMBIE]
        except psutil.Error:
            return
        if len(children) <= before and not zombies:
            return
        time.sleep(0.05)


def postmaster_children(postmaster_pid: int | None) -> int:
    if postmaster_pid is None:
        return 0
    import psutil

    try:
        return len(psutil.Process(postmaster_pid).children())
    except psutil.Error:
        return 0
