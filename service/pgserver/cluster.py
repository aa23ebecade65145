"""One embedded PostgreSQL cluster, driven by the wheel's own ``initdb``, ``pg_ctl`` and ``pg_isready``.

``pg_ctl -w start`` forks the server into its own session (a Ctrl-C meant for the foreground job does not
reach it) and returns once it accepts connections; ``pg_ctl -w stop -m fast|immediate`` returns once it has
exited. The server never listens on TCP: its Unix socket is in PGDATA (or a short directory under /tmp
when that path is too long for a socket name).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from ledgerd.service.pgserver import tools
from ledgerd.service.pgserver.tools import Account

SUPERUSER = "postgres"
PORT = 5432

_SOCKET_NAME = f".s.PGSQL.{PORT}"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS; leave room for ".lock"
# Settings for throwaway clusters (tests): durability is irrelevant, speed is not.
_EPHEMERAL_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
_INITDB_OPTIONS = ["-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C"]
_INITDB_OPTIONS += ["--locale-provider=builtin", "--builtin-locale=C.UTF-8", "--no-instructions"]

ShutdownMode = Literal["fast", "immediate"]


@dataclass(frozen=True)
class Postmaster:
    """Contents of PGDATA/postmaster.pid."""

    pid: int
    port: int
    socket_dir: Path
    status: str


class EmbeddedPostgres:
    """A PostgreSQL 18 cluster kept under ``data_dir``, served on a Unix socket only (no TCP).

    Layout: ``<data_dir>/pg/`` the cluster (PGDATA), ``postgres.log`` the server log, ``.lock`` serialises
    start/stop between processes, ``.users.json`` the handles using the server (the last one out stops it).
    Several processes may share one data directory: :meth:`start` reuses a running server and :meth:`stop`
    only shuts it down when no other live process that called :meth:`start` remains.
    """

    def __init__(self, data_dir: Path, *, durable: bool = True) -> None:
        """``durable=False`` turns off fsync and friends: for throwaway clusters only."""
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "pg"
        self.log_file = self.data_dir / "postgres.log"
        self.durable = durable
        self._id = secrets.token_hex(4)

    # -- public API -------------------------------------------------------------------------------------

    def start(self) -> bool:
        """Start the server, or reuse it if it is already running. True if this call started it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            started = not self.is_running()
            if started:
                self._start_locked()
            self._update_users(add=True)
            return started

    def stop(self, *, clean: bool = False) -> None:
        """Stop the server unless another live process still uses it. Idempotent.

        ``clean=True`` asks a throwaway cluster for a fast (checkpointed) shutdown instead of an
        immediate one, e.g. to keep a copy of it as a template."""
        if not self.data_dir.is_dir():
            return
        with self._locked():
            if not self._update_users():
                self._shutdown_locked("fast" if self.durable or clean else "immediate")

    def shutdown(self, mode: ShutdownMode) -> None:
        """Stop the server now, whoever else uses it (``immediate``: no checkpoint, as after a crash)."""
        with self._locked():
            self._shutdown_locked(mode)

    def is_running(self) -> bool:
        """Whether the server accepts connections (``pg_isready``)."""
        pm = self.postmaster()
        if pm is None or pm.status != "ready" or not tools.pid_alive(pm.pid):
            return False
        ready = [str(tools.binary("pg_isready")), "-q", "-h", str(pm.socket_dir), "-p", str(pm.port)]
        return tools.run(ready, check=False).returncode == 0

    def postmaster(self) -> Postmaster | None:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 5 or not lines[0].strip().isdigit() or not lines[3].strip().isdigit():
            return None
        status = lines[7].strip() if len(lines) > 7 else ""
        socket_dir = Path(lines[4].strip()) if lines[4].strip() else self.pgdata
        return Postmaster(int(lines[0]), int(lines[3]), socket_dir, status)

    def url(self, database: str = "postgres") -> str:
        """Connection URL (libpq and asyncpg syntax) for ``database`` on the running server."""
        pm = self._running_postmaster()
        return (
            f"postgresql://{SUPERUSER}@/{quote(database, safe='')}"
            f"?host={quote(str(pm.socket_dir), safe='/')}&port={pm.port}"
        )

    def ensure_database(self, name: str) -> None:
        """Create database ``name`` unless it exists."""
        pm = self._running_postmaster()
        script = (
            "SELECT format('CREATE DATABASE %I', :'dbname')"
            " WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'dbname')\\gexec\n"
        )
        psql = [str(tools.binary("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"dbname={name}"]
        psql += ["-h", str(pm.socket_dir), "-p", str(pm.port), "-U", SUPERUSER, "-d", "postgres"]
        with self._locked():
            tools.run(psql, input=script)

    # -- internals --------------------------------------------------------------------------------------

    def _running_postmaster(self) -> Postmaster:
        pm = self.postmaster()
        if pm is None or not tools.pid_alive(pm.pid):
            raise RuntimeError(f"no PostgreSQL server is running in {self.pgdata}")
        return pm

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
        users = [u for u in loaded if isinstance(u, str) and u != me and tools.pid_alive(_entry_pid(u))]
        if add:
            users.append(me)
        path.write_text(json.dumps(users))
        return users

    def _pg_ctl(self, *args: str) -> list[str]:
        return [str(tools.binary("pg_ctl")), "-D", str(self.pgdata), "-w", "-t", "60", *args]

    def _start_locked(self) -> None:
        account = tools.server_account()
        if account is not None:  # the server account must be able to reach the binaries and the data
            tools.ensure_traversable(tools.bin_dir().parent)
            tools.ensure_traversable(self.data_dir)
        if not self.pgdata.exists():
            self.pgdata.mkdir(mode=0o700)
        self.log_file.touch(exist_ok=True)
        if account is not None:
            account.chown(self.pgdata)
            account.chown(self.log_file)
        if (self.pgdata / "PG_VERSION").exists():
            self._check_version()
        else:
            initdb = [str(tools.binary("initdb")), "-D", str(self.pgdata), *_INITDB_OPTIONS]
            tools.run(initdb + ([] if self.durable else ["--no-sync"]), account=account)
        socket_dir = self._socket_dir(account)
        self._remove_stale_lock_files(socket_dir)
        options = ["-c", "listen_addresses=", "-p", str(PORT)]
        options += ["-c", f"unix_socket_directories={_quote_list_item(str(socket_dir))}"]
        if not self.durable:
            for key, value in _EPHEMERAL_SETTINGS.items():
                options += ["-c", f"{key}={value}"]
        # pg_ctl pastes -o into a shell command line: quote every word
        start = self._pg_ctl("-l", str(self.log_file), "-o", shlex.join(options), "start")
        try:
            tools.run(start, account=account, log=self.log_file)
        except RuntimeError as error:
            self._shutdown_locked("immediate")  # pg_ctl gave up waiting: do not leave a half-started server
            raise RuntimeError(f"PostgreSQL in {self.pgdata} failed to start: {error}") from None

    def _shutdown_locked(self, mode: ShutdownMode) -> None:
        pm = self.postmaster()
        if pm is None or not tools.pid_alive(pm.pid):
            return
        account = tools.server_account()
        proc = tools.run(self._pg_ctl("stop", "-m", mode), account=account, check=False)
        if proc.returncode != 0 and tools.pid_alive(pm.pid):
            # a fast shutdown that did not finish within 60 s: fall back to an immediate one
            tools.run(self._pg_ctl("stop", "-m", "immediate"), account=account)

    def _check_version(self) -> None:
        cluster = (self.pgdata / "PG_VERSION").read_text().strip()
        output = tools.run(
            [str(tools.binary("postgres")), "--version"]
        ).stdout  # "postgres (PostgreSQL) 18.6"
        binaries = output.split()[-1].split(".")[0]
        if cluster != binaries:
            raise RuntimeError(
                f"{self.pgdata} holds a PostgreSQL {cluster} cluster but the embedded server is PostgreSQL "
                f"{binaries}; dump and restore it, or delete {self.data_dir} to start afresh"
            )

    def _remove_stale_lock_files(self, socket_dir: Path) -> None:
        """Drop lock files left by a crashed server (postgres itself trips over recycled pids and zombies)."""
        pm = self.postmaster()
        if pm is not None and tools.pid_alive(pm.pid) and tools.is_postmaster_of(pm.pid, self.pgdata):
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
        if not (tools.pid_alive(owner) and tools.is_postmaster_of(owner, self.pgdata)):
            socket_lock.unlink(missing_ok=True)
            (socket_dir / _SOCKET_NAME).unlink(missing_ok=True)

    def _socket_dir(self, account: Account | None) -> Path:
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
        return url, lambda: None
    server = EmbeddedPostgres(data_dir, durable=durable)
    server.start()
    try:
        server.ensure_database(database)
        url = server.url(database)
    except BaseException:
        server.stop()
        raise
    return url, server.stop


def _entry_pid(entry: str) -> int:
    pid = entry.partition(":")[0]
    return int(pid) if pid.isdigit() else 0


def _quote_list_item(value: str) -> str:
    """Quote one element of a list-valued setting such as unix_socket_directories."""
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ' ,"') else value
