"""`ledgerd serve --fd N`: serving on a listening socket inherited from the parent (a real process: the CLI's
start-up is what is tested)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.server import healthy, listening_socket, port_of, wait_until_healthy


def spawn(db_url: str, *args: str, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    """`ledgerd serve --no-migrate ARGS` (/healthz answers whatever the database holds)."""
    env = {**os.environ, "DATABASE_URL": db_url, "LEDGER_LOG_LEVEL": "warning"}
    return subprocess.Popen(
        [sys.executable, "-m", "ledgerd.service.cli", "serve", "--no-migrate", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=pass_fds,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_serves_on_the_inherited_socket_and_leaves_it_with_the_parent(
    database_url: str, workers: str
) -> None:
    with listening_socket() as sock:
        port = port_of(sock)
        process = spawn(
            database_url, "--fd", str(sock.fileno()), "--workers", workers, pass_fds=(sock.fileno(),)
        )
        try:
            await wait_until_healthy(port, process)
        finally:
            stop(process)
        assert process.returncode == 0, process.stderr.read() if process.stderr else ""
        # the port stayed the parent's: a second process serves on it again
        process = spawn(database_url, "--fd", str(sock.fileno()), pass_fds=(sock.fileno(),))
        try:
            await wait_until_healthy(port, process)
        finally:
            stop(process)


async def test_an_fd_that_is_not_a_tcp_socket_is_refused_with_a_clear_message(database_url: str) -> None:
    read_end, write_end = os.pipe()
    try:
        for fd, message in (
            (read_end, f"--fd {read_end}: not an open socket"),
            (999, "--fd 999: not an open socket"),
        ):
            process = spawn(database_url, "--fd", str(fd), pass_fds=(read_end,))
            _, stderr = process.communicate(timeout=30)
            assert process.returncode == 2, stderr
            assert message in stderr.decode(), stderr
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_fd_and_ephemeral_exclude_each_other(database_url: str) -> None:
    with listening_socket() as sock:
        process = spawn(database_url, "--ephemeral", "--fd", str(sock.fileno()), pass_fds=(sock.fileno(),))
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 2 and b"leave out --fd" in stderr, stderr
        assert not await healthy(port_of(sock), timeout_s=0.2)  # nothing was served on it
