"""`ledgerd serve`: the HTTP API in one process, N processes sharing the port, or --ephemeral."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from typing import Any

from aiohttp import web

from ledgerd.service.cli.common import database_url, fail
from ledgerd.service.config import Config, new_event_loop


def serve(
    config: Config, banner: str | None = None, *, reuse_port: bool = False, sock: socket.socket | None = None
) -> None:
    """Serve on ``sock`` if given (an inherited listening socket), else bind config.host:config.port."""
    from ledgerd.service.app import create_app

    app = create_app(config)

    async def announce(_: web.Application) -> None:
        if banner:
            print(banner, flush=True)

    app.on_startup.append(announce)
    web.run_app(
        app,
        host=None if sock is not None else config.host,
        port=None if sock is not None else config.port,
        sock=sock,
        shutdown_timeout=10,
        print=None,
        access_log=None,
        reuse_port=reuse_port,
        loop=new_event_loop(),
    )


def inherited_socket(fd: int) -> socket.socket:
    """The listening TCP socket passed to us as file descriptor ``fd`` (`serve --fd N`)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as error:
        raise SystemExit(fail(f"--fd {fd}: not an open socket ({error.strerror})")) from None
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise SystemExit(fail(f"--fd {fd}: not a TCP socket"))
    return sock


def serve_workers(args: argparse.Namespace, url: str) -> int:
    """N processes sharing the port (SO_REUSEPORT, or all accepting on the one inherited --fd socket): the
    kernel spreads connections across them. This process supervises; SIGTERM/SIGINT stop every worker
    gracefully."""
    command = [sys.executable, "-m", "ledgerd.service.cli", "serve", "--workers", "1"]
    if args.fd is not None:
        command += ["--fd", str(args.fd)]
    else:
        command += ["--host", args.host, "--port", str(args.port), "--reuse-port"]
    command += ["--no-migrate"] if args.no_migrate else []
    env = {**os.environ, "DATABASE_URL": url}
    inherit = (args.fd,) if args.fd is not None else ()
    workers = [subprocess.Popen(command, env=env, pass_fds=inherit) for _ in range(args.workers)]

    def stop(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = [worker.wait() for worker in workers]
    return max(codes, default=0)


def command_serve(args: argparse.Namespace) -> int:
    if args.ephemeral and args.fd is not None:
        return fail("--ephemeral binds its own port (use --port 0 and read LEDGER_URL=): leave out --fd")
    if args.ephemeral:
        from ledgerd.service.ephemeral import serve_ephemeral

        if args.workers > 1:  # its accounts, clocks and request log live in the one process
            return fail("--ephemeral serves from one process: leave out --workers")
        return serve_ephemeral(
            host=args.host,
            port=args.port,
            strict=args.strict,
            search_lag_s=args.search_lag,
            exit_with_parent=args.exit_with_parent,
        )
    if args.strict or args.search_lag or args.exit_with_parent:
        return fail("--strict, --search-lag and --exit-with-parent need --ephemeral")
    url = database_url()
    if args.workers > 1:
        return serve_workers(args, url)
    # Listening does not wait for the database: the app migrates (unless --no-migrate) and opens its
    # pool in the background, answering 503 until then (service/app.py, establish).
    sock = inherited_socket(args.fd) if args.fd is not None else None
    host, port = sock.getsockname()[:2] if sock is not None else (args.host, args.port)
    config = Config.from_env(url, host=host, port=port, migrate_on_start=not args.no_migrate)
    serve(config, reuse_port=args.reuse_port, sock=sock)
    return 0


def register(commands: Any) -> None:
    serve_cmd = commands.add_parser("serve", help="serve the HTTP API (reads DATABASE_URL)")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8080)
    serve_cmd.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations first")
    serve_cmd.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port via SO_REUSEPORT (default 1)"
    )
    serve_cmd.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve_cmd.add_argument(
        "--fd",
        type=int,
        metavar="N",
        help="serve on the listening TCP socket inherited as file descriptor N instead of binding "
        "--host/--port (a supervisor or test keeps the port, so it is never free for anyone else)",
    )
    ephemeral = serve_cmd.add_argument_group(
        "a throwaway ledger for test suites (README: Use it in your tests)"
    )
    ephemeral.add_argument(
        "--ephemeral",
        action="store_true",
        help="embedded PostgreSQL in a temp dir, any sk_test_ key is its own account, /_ledger/ control API; "
        "prints LEDGER_URL=, LEDGER_KEY=, DATABASE_URL= and deletes everything on exit",
    )
    # --port 0 picks a free port (the LEDGER_URL= line names it)
    ephemeral.add_argument("--strict", action="store_true", help="refuse ledgerd's extensions, like Stripe")
    ephemeral.add_argument(
        "--search-lag",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="search finds a write only after this",
    )
    ephemeral.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the process that started it exits"
    )
    serve_cmd.set_defaults(run=command_serve)
