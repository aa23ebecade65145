"""One cell: a scenario or baseline at one client count in one repetition, run to its end with the CPU of
every party accounted. wrk drives the HTTP cells (`scenarios/*.lua`), pgbench the storage ceiling, and the
eventsourcing peer measures itself in-process."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

from bench.checks import check_hot
from bench.cpu import CpuSnapshot, cpu_delta, postmaster_children, snapshot, wait_backends_reaped
from bench.database import checkpoint, libpq_env, peer_env
from bench.figures import fmt_ms, fmt_pct
from bench.processes import wait_rusage
from bench.results import Cell, Results
from bench.services import new_hot_customer
from bench.settings import AMOUNT, LEVER_KINDS, LUA, NCPU, PGBENCH_SCRIPT, ROOT, SCENARIOS, log
from bench.state import Setup


async def run_cell(
    setup: Setup, results: Results, kind: str, clients: int, rep: int, duration: int, record: bool = True
) -> Cell:
    await checkpoint(setup.url)
    assert setup.server is not None and setup.bare is not None and setup.solo is not None
    port, pid = (setup.solo_port, setup.solo.pid) if kind in LEVER_KINDS else (setup.port, setup.server.pid)
    if kind == "pgbench":
        cell = await asyncio.to_thread(run_pgbench, setup, clients, duration, rep)
    elif kind == "peer":
        cell = await asyncio.to_thread(run_peer, setup, clients, duration, rep)
    elif kind in ("bare_crud", "bare_insert", "bare_select"):
        cell = await asyncio.to_thread(
            run_wrk, setup, kind, clients, duration, setup.bare_port, setup.bare.pid, rep
        )
    elif kind in ("hot", "hot_solo"):
        hot_id = await new_hot_customer(setup)
        cell = await asyncio.to_thread(
            run_wrk, setup, kind, clients, duration, port, pid, rep, {"BENCH_HOT_ID": hot_id}
        )
        check = await check_hot(setup, hot_id, acknowledged=int(cell.extra["ok"]), cell=cell)
        cell.extra["hot_check"] = check
        if record:
            results.hot_checks.append(check)
    else:
        cell = await asyncio.to_thread(run_wrk, setup, kind, clients, duration, port, pid, rep)
    if record:
        results.cells.append(cell)
        log(
            f"rep {rep} {kind:<11} c={clients:<3} {cell.throughput:8.0f}/s  p50 {fmt_ms(cell.p50_us):>6} ms"
            f"  p99 {fmt_ms(cell.p99_us):>6} ms  errors {cell.errors}"
            f"  loadgen {fmt_pct(cell.loadgen_share)} of box  box busy {fmt_pct(cell.box_busy)}"
        )
    return cell


def run_wrk(
    setup: Setup,
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
        "BENCH_KEY": setup.key,
        "BENCH_TAG": str(tag),
        "BENCH_IDS": str(setup.ids_file),
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
    out_path = setup.tmp / f"wrk-{tag}.out"
    with open(out_path, "wb") as out:
        before = snapshot(server_pid, setup.postmaster_pid)
        proc = setup.children.popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        code, cpu = wait_rusage(proc, duration + 60)
        after = snapshot(server_pid, setup.postmaster_pid)
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
    cpu_delta(cell, before, after)
    return cell


def run_pgbench(setup: Setup, clients: int, duration: int, rep: int) -> Cell:
    prefix = setup.tmp / f"pgblog-{random.randrange(10**9)}"
    args = [
        setup.pgbench,
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
        f"nids={len(setup.ids)}",
        "-f",
        str(PGBENCH_SCRIPT),
        "-l",
        "--log-prefix",
        str(prefix),
    ]
    code, cpu, before, after, text = run_client(
        setup, args, libpq_env(setup.pgb_url), setup.tmp, duration + 60
    )
    latencies: list[int] = []
    failed_logged = 0
    for path in setup.tmp.glob(prefix.name + "*"):
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
        return float(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]) if latencies else None

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
    cpu_delta(cell, before, after)
    if code != 0:
        cell.extra["exit"] = code
        cell.extra["tail"] = text[-500:]
    return cell


def run_peer(setup: Setup, clients: int, duration: int, rep: int) -> Cell:
    args = [
        sys.executable,
        "-m",
        "bench.baselines.peer_eventsourcing",
        "run",
        "--ids-file",
        str(setup.peer_ids_file),
        "--threads",
        str(clients),
        "--duration",
        str(duration),
    ]
    code, cpu, before, after, text = run_client(setup, args, peer_env(setup.peer_url), ROOT, duration + 90)
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
    cpu_delta(cell, before, after)
    cell.server_cpu_s = cpu  # the peer process (its threads are both client and "server")
    return cell


def run_client(
    setup: Setup, args: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> tuple[int, float, CpuSnapshot, CpuSnapshot, str]:
    """Runs a database client to its end (pgbench, the peer): its exit code, its CPU seconds, the CPU
    snapshots around it (after PostgreSQL reaped the client's backends) and its output."""
    out_path = setup.tmp / "client.out"
    with open(out_path, "wb") as out:
        backends = postmaster_children(setup.postmaster_pid)
        before = snapshot(None, setup.postmaster_pid)
        proc = setup.children.popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        code, cpu = wait_rusage(proc, timeout)
        wait_backends_reaped(setup.postmaster_pid, backends)
        after = snapshot(None, setup.postmaster_pid)
    return code, cpu, before, after, out_path.read_text(errors="replace")


def pgbench_statements() -> int:
    """SQL commands (BEGIN and END included) in the storage-ceiling script."""
    body = "\n".join(
        line for line in PGBENCH_SCRIPT.read_text().splitlines() if not line.startswith(("--", "\\set"))
    )
    return len(re.findall(r";\s*$|\\gset\s*$", body, re.MULTILINE))
