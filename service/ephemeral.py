"""`ledgerd serve --ephemeral`: a throwaway ledger for someone else's test suite.

An embedded PostgreSQL (service/pgserver/) runs in a temporary directory with fsync off. Its cluster
is copied from a *template*: a cluster already initialised and migrated, kept in the user's cache
directory under a name derived from the PostgreSQL version and the migrations' checksums, so only the
first start (or the first after a migration changes) pays for initdb and the migrations.

On start the server prints one fact per line on stdout (``LEDGER_URL=…``, ``LEDGER_KEY=…``,
``DATABASE_URL=…``) and flushes; on exit (Ctrl-C, SIGTERM, SIGHUP, the parent process going away with
``--exit-with-parent``) the database and its directory are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledgerd.service.background import background_context
from ledgerd.service.config import Config

DATABASE = "ledger"
TEMPLATE_FORMAT = 1  # bump when the template's layout changes: older cached templates are then ignored
DIR_PREFIX = "ledgerd-ephemeral-"
OWNER_FILE = "owner.pid"


def cache_root() -> Path:
    """Where templates are kept: $LEDGER_CACHE_DIR, else $XDG_CACHE_HOME/ledgerd/ephemeral (~/.cache)."""
    explicit = os.environ.get("LEDGER_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ledgerd" / "ephemeral"


def template_key() -> str:
    """Names the template: changes when the PostgreSQL binaries or any migration change."""
    from ledgerd.service.migrate import bundled_migrations
    from ledgerd.service.pgserver import binary

    digest = hashlib.sha256(f"format {TEMPLATE_FORMAT}\n".encode())
    postgres = binary("postgres")
    digest.update(f"{postgres} {postgres.stat().st_size} {postgres.stat().st_mtime_ns}\n".encode())
    for migration in bundled_migrations():
        digest.update(f"{migration.name} {migration.checksum}\n".encode())
    return digest.hexdigest()[:20]


def build_template(destination: Path) -> None:
    """initdb + migrate a cluster in a scratch directory, shut it down cleanly, move it into place."""
    from ledgerd.service.migrate import migrate
    from ledgerd.service.pgserver import EmbeddedPostgres

    destination.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=destination.parent))
    try:
        server = EmbeddedPostgres(scratch, durable=False)
        server.start()
        try:
            server.ensure_database(DATABASE)
            asyncio.run(migrate(server.url(DATABASE)))
        finally:
            server.stop(clean=True)  # a checkpointed cluster: copies start without crash recovery
        os.rename(scratch / "pg", destination)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def cached_template() -> tuple[Path, bool]:
    """The template cluster for this build, and whether it had to be built now."""
    path = cache_root() / template_key()
    if (path / "PG_VERSION").exists():
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".build.lock", "a") as lock:  # parallel first starts (xdist) build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / "PG_VERSION").exists():
            return path, False
        build_template(path)
    return path, True


def copy_cluster(template: Path, pgdata: Path) -> None:
    # `cp -a` keeps owners and modes (as root the cluster belongs to the server's own account)
    if shutil.which("cp"):
        subprocess.run(["cp", "-a", str(template), str(pgdata)], check=True, stdin=subprocess.DEVNULL)
    else:  # pragma: no cover - every supported platform has cp
        shutil.copytree(template, pgdata, symlinks=True)


def sweep_abandoned(parent: Path) -> None:
    """Remove ephemeral directories whose owner died without cleaning up (SIGKILL), stopping their server."""
    from ledgerd.service.pgserver import EmbeddedPostgres, pid_alive

    for candidate in parent.glob(f"{DIR_PREFIX}*"):
        try:
            owner = int((candidate / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(owner):
            continue
        with contextlib.suppress(Exception):
            EmbeddedPostgres(candidate, durable=False).stop()
        shutil.rmtree(candidate, ignore_errors=True)


@dataclass
class EphemeralDatabase:
    root: Path
    url: str
    stop: Callable[[], None]
    template_built: bool


def start_database() -> EphemeralDatabase:
    from ledgerd.service.pgserver import EmbeddedPostgres

    template, built = cached_template()
    parent = Path(tempfile.gettempdir())
    sweep_abandoned(parent)
    root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=parent))
    (root / OWNER_FILE).write_text(str(os.getpid()))
    server = EmbeddedPostgres(root, durable=False)

    def stop() -> None:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    try:
        copy_cluster(template, root / "pg")
        server.start()
        return EphemeralDatabase(root, server.url(DATABASE), stop, built)
    except BaseException:
        stop()
        raise


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def parent_watch(parent_pid: int) -> Callable[[Any], AsyncIterator[None]]:
    """A cleanup context that stops the server when the process that started it is gone."""

    async def watch(_app: Any) -> None:
        while os.getppid() == parent_pid:  # noqa: ASYNC110 (no event tells of a parent's exit)
            await asyncio.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    return background_context(watch)


def serve_ephemeral(
    *, host: str, port: int, strict: bool, search_lag_s: float, exit_with_parent: bool
) -> int:
    from aiohttp import web

    from ledgerd.service.app import create_app
    from ledgerd.service.config import new_event_loop

    started = time.monotonic()
    parent_pid = os.getppid()
    # SIGTERM/SIGHUP during start-up must still delete the database: turn them into an exception now
    # (aiohttp installs its own handlers once serving).
    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    database: EphemeralDatabase | None = None
    try:
        database = start_database()
        sock = bind(host, port)
        bound_port = sock.getsockname()[1]
        config = Config.from_env(
            database.url,
            host=host,
            port=bound_port,
            ephemeral=True,
            strict=strict,
            search_lag_s=search_lag_s,
            pool_min_size=1,
            pool_max_size=10,
            access_log=False,
        )
        app = create_app(config)
        if exit_with_parent:
            app.cleanup_ctx.append(parent_watch(parent_pid))
        key = "sk_test_" + secrets.token_hex(12)
        facts = {
            "LEDGER_URL": f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}",
            "LEDGER_KEY": key,
            "DATABASE_URL": database.url,
        }

        async def announce(_: web.Application) -> None:
            for name, value in facts.items():
                print(f"{name}={value}")
            sys.stdout.flush()
            how = "built the template" if database is not None and database.template_built else "warm"
            print(
                f"ledgerd: ephemeral ledger ready in {time.monotonic() - started:.2f}s ({how}); "
                f"strict={'on' if strict else 'off'}; Ctrl-C deletes it",
                file=sys.stderr,
                flush=True,
            )

        app.on_startup.append(announce)
        signal.signal(signal.SIGHUP, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
        web.run_app(
            app,
            sock=sock,
            shutdown_timeout=2,
            print=None,
            access_log=None,
            handle_signals=True,
            loop=new_event_loop(),
        )
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        if database is not None:
            database.stop()
