"""Processes a run starts: each is registered and stopped at the end (its whole process group), waited for
with its rusage, or polled until it listens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_listening(proc: subprocess.Popen[bytes], port: int, stderr_file: Path) -> None:
    """Until `proc` (or one of its children) listens on `port` and answers /healthz with 200."""
    import aiohttp
    import psutil

    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while True:
            if not Children.alive(proc):
                tail = stderr_file.read_text(errors="replace")[-3000:]  # noqa: ASYNC240 - it failed
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
