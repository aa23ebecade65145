"""Shadow tables for a rebuild or a drift replay: fresh copies of the projection tables in a private
schema, and the live tables' indexes and constraints recreated on them under their original names."""

from __future__ import annotations

import asyncio
import re

import asyncpg

from ledgerd.projections import PROJECTION_TABLES

SQL_LIVE_SCHEMA = """
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass('events')
"""
# Both statements run before the batch transaction writes anything, so it has no xid yet and the
# horizon is the oldest transaction running elsewhere (see service/store/postgres.py SQL_READ_ALL).

SQL_INDEXES = """
SELECT i.indexrelid::regclass::text AS qualified, ic.relname AS name, pg_get_indexdef(i.indexrelid) AS def,
       con.conname AS constraint_name, pg_get_constraintdef(con.oid) AS constraint_def
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
    AND con.contype IN ('p', 'u', 'x')
WHERE i.indrelid = $1::regclass
ORDER BY ic.relname
"""
SQL_FOREIGN_KEYS = """
SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
WHERE conrelid = $1::regclass AND contype = 'f' ORDER BY conname
"""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class RebuildError(RuntimeError):
    pass


async def live_schema(conn: asyncpg.Connection) -> str:
    schema: str | None = await conn.fetchval(SQL_LIVE_SCHEMA)
    if schema is None:
        raise RebuildError("no events table on the search_path: run the migrations first")
    return schema


# --- shadow tables -------------------------------------------------------------------------------------


async def create_shadow_tables(
    conn: asyncpg.Connection, schema: str, source_schema: str, *, indexes: bool = True
) -> None:
    """Fresh, empty copies of the projection tables in `schema` (dropped first if it exists), with the
    live tables' columns, defaults and checks; with `indexes`, also their indexes and constraints under
    their original names (else add them with `add_shadow_indexes` after a bulk load)."""
    target = quote_ident(schema)
    async with conn.transaction():
        await conn.execute(f"DROP SCHEMA IF EXISTS {target} CASCADE")
        await conn.execute(f"CREATE SCHEMA {target}")
        for table in PROJECTION_TABLES:
            live = f"{quote_ident(source_schema)}.{quote_ident(table)}"
            shadow = f"{target}.{quote_ident(table)}"
            await conn.execute(f"CREATE TABLE {shadow} (LIKE {live} INCLUDING ALL EXCLUDING INDEXES)")
        if indexes:
            await add_shadow_indexes(conn, schema, source_schema)


async def add_shadow_indexes(
    conn: asyncpg.Connection, schema: str, source_schema: str, *, pool: asyncpg.Pool | None = None
) -> None:
    """The live tables' indexes, index-backed constraints and foreign keys on the shadow tables. With a
    `pool`, the index builds (the long part after a bulk load) run on two connections at once; the
    constraints then adopt their indexes (`ADD CONSTRAINT ... USING INDEX`, no second build)."""
    target = quote_ident(schema)
    builds: list[str] = []
    finish: list[str] = []
    for table in PROJECTION_TABLES:
        live = f"{quote_ident(source_schema)}.{quote_ident(table)}"
        shadow = f"{target}.{quote_ident(table)}"
        for index in await conn.fetch(SQL_INDEXES, live):
            constraint, definition = index["constraint_name"], index["constraint_def"]
            kind = next(
                (k for k in ("PRIMARY KEY", "UNIQUE") if (definition or "").startswith(k + " (")), None
            )
            if constraint is not None and (kind is None or "DEFERRABLE" in definition):
                finish.append(f"ALTER TABLE {shadow} ADD CONSTRAINT {quote_ident(constraint)} {definition}")
                if constraint != index["name"]:
                    finish.append(
                        f"ALTER INDEX {target}.{quote_ident(constraint)} RENAME TO {quote_ident(index['name'])}"
                    )
                continue
            builds.append(retarget_index(index["def"], live, shadow))
            if constraint is not None:
                finish.append(
                    f"ALTER TABLE {shadow} ADD CONSTRAINT {quote_ident(constraint)} {kind} "
                    f"USING INDEX {quote_ident(index['name'])}"
                )
                if constraint != index["name"]:  # USING INDEX renames the index after the constraint
                    finish.append(
                        f"ALTER INDEX {target}.{quote_ident(constraint)} RENAME TO {quote_ident(index['name'])}"
                    )
        for foreign_key in await conn.fetch(SQL_FOREIGN_KEYS, live):
            finish.append(
                f"ALTER TABLE {shadow} ADD CONSTRAINT {quote_ident(foreign_key['conname'])} {foreign_key['def']}"
            )
    queue = list(reversed(builds))

    async def build(connection: asyncpg.Connection) -> None:
        # in-memory sorts for the index builds of a bulk-loaded table (the default is 64 MB)
        await connection.execute("SET maintenance_work_mem = '256MB'")
        try:
            while queue:
                await connection.execute(queue.pop())
        finally:
            await connection.execute("RESET maintenance_work_mem")

    if pool is not None and pool.get_max_size() >= 2 and len(builds) > 1:
        async with pool.acquire() as other:
            await asyncio.gather(build(conn), build(other))
    else:
        await build(conn)
    async with conn.transaction():
        for statement in finish:
            await conn.execute(statement)


def retarget_index(definition: str, live: str, shadow: str) -> str:
    """`CREATE [UNIQUE] INDEX name ON [ONLY] live USING ...` -> the same index on the shadow table (an
    unqualified index name is created in its table's schema)."""
    pattern = re.compile(r"^(CREATE (?:UNIQUE )?INDEX \S+ ON (?:ONLY )?)(\S+)( .*)$", re.DOTALL)
    match = pattern.match(definition)
    if match is None:
        raise RebuildError(f"cannot recreate index: {definition}")
    return f"{match.group(1)}{shadow}{match.group(3)}"


def retarget_trigger(definition: str, qualified_table: str, shadow: str) -> str:
    marker = f" ON {qualified_table} "
    if marker not in definition:
        raise RebuildError(f"cannot recreate trigger: {definition}")
    return definition.replace(marker, f" ON {shadow} ", 1)
