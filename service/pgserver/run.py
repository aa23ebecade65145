"""``python -m ledgerd.service.pgserver run [--data-dir DIR] [--database NAME] -- CMD [ARG...]``

Starts an embedded PostgreSQL (in a temporary directory, deleted afterwards, unless ``--data-dir``), runs CMD
with ``DATABASE_URL`` exported, stops the server (also after a failure, Ctrl-C, SIGTERM or SIGHUP) and exits
with CMD's status. If ``DATABASE_URL`` is already set, CMD is simply executed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ledgerd.service.pgserver.cluster import EmbeddedPostgres

_FORWARDED = (signal.SIGTERM, signal.SIGHUP)


class _Terminated(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise _Terminated(signum)


def _exec(cmd: Sequence[str]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(cmd[0], list(cmd))
    except OSError as exc:
        print(f"pgserver: cannot run {cmd[0]!r}: {exc}", file=sys.stderr)
    return 127


def _run_child(cmd: Sequence[str], url: str) -> int:
    """Run CMD to completion: SIGTERM/SIGHUP are passed on to it; Ctrl-C reaches it directly (same process
    group) and we wait for it to finish."""
    try:
        child = subprocess.Popen(list(cmd), env={**os.environ, "DATABASE_URL": url})
    except OSError as exc:
        print(f"pgserver: cannot run {cmd[0]!r}: {exc}", file=sys.stderr)
        return 127
    try:
        for sig in _FORWARDED:
            signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        rc = child.wait()
    finally:
        if child.poll() is None:  # we were interrupted before it finished
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return 128 - rc if rc < 0 else rc


def _run_with_server(cmd: Sequence[str], data_dir: Path | None, database: str) -> int:
    temporary = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="ledger-pg-")) if data_dir is None else data_dir
    server = EmbeddedPostgres(root, durable=not temporary)
    previous = {sig: signal.getsignal(sig) for sig in (*_FORWARDED, signal.SIGINT)}
    for sig in _FORWARDED:  # before the child exists: abort start-up (the clean-up runs in `finally`)
        signal.signal(sig, _raise_terminated)
    try:
        t0 = time.monotonic()
        server.start()
        server.ensure_database(database)
        url = server.url(database)
        print(f"pgserver: PostgreSQL ready in {time.monotonic() - t0:.2f}s: {url}", file=sys.stderr)
        return _run_child(cmd, url)
    except _Terminated as exc:
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    finally:
        for sig in previous:  # do not let a second signal interrupt the clean-up
            signal.signal(sig, signal.SIG_IGN)
        t1 = time.monotonic()
        server.stop()
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
        print(f"pgserver: PostgreSQL stopped in {time.monotonic() - t1:.2f}s", file=sys.stderr)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ledgerd.service.pgserver",
        description="Embedded PostgreSQL for development and tests.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run a command with DATABASE_URL pointing at an embedded PostgreSQL",
        description="Start an embedded PostgreSQL, run CMD with DATABASE_URL set, stop the server and exit "
        "with CMD's status. If DATABASE_URL is already set, just run CMD.",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the cluster here (default: a temporary directory, deleted afterwards)",
    )
    run.add_argument("--database", default="ledger", help="database to create and export (default: ledger)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    args = parser.parse_args(argv)

    cmd: list[str] = list(args.cmd)
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    if not cmd:
        parser.error("missing command: run [options] -- CMD [ARG...]")
    if os.environ.get("DATABASE_URL"):
        return _exec(cmd)
    if shutil.which(cmd[0]) is None:
        print(f"pgserver: command not found: {cmd[0]}", file=sys.stderr)
        return 127
    return _run_with_server(cmd, args.data_dir, args.database)
