"""Apply the numbered SQL files in `migrations/` in order, each in its own transaction.

A session advisory lock makes concurrent migrators safe (the second waits, then finds nothing to do).
Each applied file is recorded with its SHA-256; a changed applied file stops the run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

MIGRATION_LOCK_ID = 0x1ED6E5  # an arbitrary constant shared by every migrator of this schema
MIGRATION_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def bundled_migrations() -> list[Migration]:
    folder = resources.files("ledgerd.migrations")
    found = [
        Migration(entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if MIGRATION_NAME.fullmatch(entry.name)
    ]
    return sorted(found, key=lambda migration: migration.name)


async def apply_migrations(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply pending migrations; return the names applied by this call."""
    migrations = bundled_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       name text PRIMARY KEY,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
        applied = {
            row["name"]: row["checksum"] for row in await conn.fetch("SELECT * FROM schema_migrations")
        }
        check_applied_unchanged(migrations, applied)
        done: list[str] = []
        for migration in migrations:
            if migration.name in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                    migration.name,
                    migration.checksum,
                )
            done.append(migration.name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)


def check_applied_unchanged(migrations: list[Migration], applied: dict[str, str]) -> None:
    known = {migration.name: migration for migration in migrations}
    for name, checksum in sorted(applied.items()):
        migration = known.get(name)
        if migration is None:
            raise MigrationError(f"migration {name} is applied in the database but missing from this build")
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {name} changed after it was applied (recorded sha256 {checksum}, "
                f"file sha256 {migration.checksum}); add a new migration instead of editing it"
            )


async def migrate(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()
