"""The run's PostgreSQL: a fresh embedded cluster in the temporary directory (durable; only the settings of
`PG_SETTINGS` raised), or three fresh databases on DATABASE_URL's server, dropped at the end. Also the URL
and environment helpers for libpq (pgbench) and the eventsourcing peer."""

from __future__ import annotations

import contextlib
import os
import random
import time
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

from bench.results import Results
from bench.settings import PG_PROFILE_PRELOAD, PG_REPORTED, PG_SETTINGS, log
from bench.state import Setup


async def start_database(setup: Setup, results: Results) -> None:
    import asyncpg

    t0 = time.monotonic()
    external = os.environ.get("DATABASE_URL")
    tag = f"{random.randrange(16**6):06x}"
    if external:
        setup.admin_url = external
        names = [f"ledger_bench_{tag}", f"ledger_bench_{tag}_pgbench", f"ledger_bench_{tag}_peer"]
        conn = await asyncpg.connect(external)
        try:
            for name in names:
                await conn.execute(f'CREATE DATABASE "{name}"')
                setup.external_dbs.append(name)
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        finally:
            await conn.close()
        setup.url, setup.pgb_url, setup.peer_url = (with_dbname(external, n) for n in names)
        results.info["database"] = "DATABASE_URL (fresh databases on that server, dropped afterwards)"
    else:
        from ledgerd.service.pgserver import EmbeddedPostgres

        setup.pg = EmbeddedPostgres(setup.tmp / "pg-cluster", durable=True)
        setup.pg_stop = setup.pg.stop
        setup.pg.start()
        conn = await asyncpg.connect(setup.pg.url("postgres"))
        try:
            for key, value in {**PG_SETTINGS, **PG_PROFILE_PRELOAD}.items():
                await conn.execute(f"ALTER SYSTEM SET {key} = '{value}'")
        finally:
            await conn.close()
        setup.pg.stop()  # restart so that shared_buffers / max_connections / preload apply
        setup.pg.start()
        for name in ("ledger", "ledger_pgbench", "ledger_peer"):
            setup.pg.ensure_database(name)
        setup.url = setup.pg.url("ledger")
        setup.pgb_url = setup.pg.url("ledger_pgbench")
        setup.peer_url = setup.pg.url("ledger_peer")
        setup.admin_url = setup.pg.url("postgres")
        pid_file = setup.pg.pgdata / "postmaster.pid"
        setup.postmaster_pid = int(pid_file.read_text().split()[0])
        results.info["database"] = (
            f"embedded PostgreSQL in a fresh temporary cluster ({setup.tmp / 'pg-cluster'}), Unix socket"
        )
        results.info["embedded"] = True
    conn = await asyncpg.connect(setup.url)
    try:
        results.info["pg_settings"] = {name: await conn.fetchval(f"SHOW {name}") for name in PG_REPORTED}
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.fetchval("SELECT count(*) FROM pg_stat_statements")
            setup.pgss = True
        except asyncpg.PostgresError:
            setup.pgss = False
    finally:
        await conn.close()
    durable = results.info["pg_settings"]
    if durable.get("fsync") != "on" or durable.get("synchronous_commit") != "on":
        log(f"WARNING: commits are not durable on this server: {durable}")
    results.timings["database"] = time.monotonic() - t0
    log(f"PostgreSQL {durable.get('server_version')} ready ({results.timings['database']:.1f}s)")


async def stop_database(setup: Setup) -> None:
    """Drops the databases created on DATABASE_URL's server, or stops the embedded cluster."""
    if setup.external_dbs:
        with contextlib.suppress(Exception):
            import asyncpg

            conn = await asyncpg.connect(setup.admin_url)
            try:
                for name in setup.external_dbs:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
    if setup.pg_stop is not None:
        with contextlib.suppress(Exception):
            setup.pg_stop()


async def sql(url: str, query: str, *args: Any, fetch: str = "execute") -> Any:
    """One statement on a connection of its own."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await getattr(conn, fetch)(query, *args)
    finally:
        await conn.close()


async def checkpoint(url: str) -> None:
    with contextlib.suppress(Exception):
        await sql(url, "CHECKPOINT")


def pg_params(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return {
        "host": query.get("host") or parts.hostname or "localhost",
        "port": str(query.get("port") or parts.port or 5432),
        "user": unquote(parts.username or "") or query.get("user") or os.environ.get("USER", "postgres"),
        "password": unquote(parts.password or "") or query.get("password", ""),
        "dbname": unquote(parts.path.lstrip("/")) or query.get("dbname") or "postgres",
    }


def with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(name, safe=""), parts.query, parts.fragment))


def libpq_env(url: str) -> dict[str, str]:
    p = pg_params(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGHOST=p["host"], PGPORT=p["port"], PGUSER=p["user"], PGDATABASE=p["dbname"])
    if p["password"]:
        env["PGPASSWORD"] = p["password"]
    return env


def peer_env(url: str) -> dict[str, str]:
    p = pg_params(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        POSTGRES_DBNAME=p["dbname"],
        POSTGRES_HOST=p["host"],
        POSTGRES_PORT=p["port"],
        POSTGRES_USER=p["user"],
        POSTGRES_PASSWORD=p["password"],
    )
    return env
