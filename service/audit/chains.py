"""Hash chains, versions and stream heads: the log proves its own integrity.

`check_chains`, in one REPEATABLE READ snapshot: every stream's events in version order, versions 1, 2,
3, ... with no gap, and every stored hash equals sha256(stored hash of the previous event || canonical
bytes of this one) (genesis: 32 zero bytes; domain/log.py). Each link is checked against the *stored*
previous hash, so one altered event breaks exactly its own link and is named alone. Set-based in the
server from the stored canonical bytes (`events.canonical`, migration 0006), plus a proof that every
event's columns agree with those bytes; only streams that fail either, or that hold events without
canonical bytes, are walked row by row in Python (`ChainWalker`). `check_stream_heads`, in the same
snapshot: every stream row's `version` and `head_hash` match its last event, and every event has a
stream row.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec

from ledgerd.domain.log import GENESIS_HASH, canonical_bytes
from ledgerd.service.audit.report import DEFAULT_LIMIT, CheckResult, Problem, Progress

CHAIN_BATCH = 20_000
# recorded_at_us computed by the server (numeric arithmetic, exact): much cheaper than datetimes here.
RECORDED_US = "(extract(epoch FROM recorded_at) * 1000000)::bigint"
SQL_CHAIN_ROWS = f"""
SELECT stream_id, stream_version, event_id, event_type, schema_version, {RECORDED_US},
       data::text, metadata::text, hash, canonical
FROM events WHERE $1::text[] IS NULL OR stream_id = ANY ($1::text[]) ORDER BY stream_id, stream_version
"""
SQL_CHAIN_COUNTS = """
SELECT count(*), count(*) FILTER (WHERE stream_version = 1), count(*) FILTER (WHERE canonical IS NULL)
FROM events
"""
# Past this many streams to walk, walking them all is cheaper than naming them.
WALK_ALL_ABOVE = 10_000
# The set-based checks below rely on (stream_id, stream_version) being unique; without that key (a
# superuser could drop it), every stream is walked row by row instead.
SQL_CHAIN_KEY_HOLDS = """
SELECT EXISTS (SELECT 1 FROM pg_constraint
               WHERE conrelid = 'events'::regclass AND contype = 'p'
                 AND pg_get_constraintdef(oid) = 'PRIMARY KEY (stream_id, stream_version)')
"""
# Links, set-based, from the stored canonical bytes: a parallel hash join of each event with its
# predecessor and sha256 in the server. Returns the streams that need the row-by-row walk: a link
# that does not hash, a missing predecessor, or an event without canonical bytes (appended before
# migration 0006).
SQL_CHAIN_LINKS = """
SELECT DISTINCT e.stream_id FROM events e
LEFT JOIN events p ON p.stream_id = e.stream_id AND p.stream_version = e.stream_version - 1
WHERE e.canonical IS NULL
   OR (p.stream_id IS NULL AND e.stream_version <> 1)
   OR sha256(coalesce(p.hash, '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
             || e.canonical) IS DISTINCT FROM e.hash
"""
# The columns agree with the canonical bytes the chain hashes (domain/log.py's canonical_bytes layout,
# spelled in SQL): the bytes are parsed as JSON once per event (`c`) and each column is compared with its
# element; the documents compare as jsonb (whatever the key order; numbers by value, so 1 and 1.0 are
# equal here), the scalars as their text or number. `IS NOT TRUE`: a NULL column fails too. Streams with a
# disagreeing event need the row-by-row walk, which names it.
# `c` is marked volatile (clock_timestamp(), which is parallel safe) so that the planner neither pulls the
# subquery up nor pushes the comparison down into the scan, which would parse the bytes once per element
# compared (9 times); the parse is most of the cost. Comparing the parsed bytes with one
# jsonb_build_array of the columns instead (the previous form) rebuilds every event's documents: ~1.4x
# slower (bench/AUDIT_RESULTS.md).
SQL_CHAIN_COLUMNS = f"""
SELECT DISTINCT stream_id FROM (
    SELECT CASE WHEN clock_timestamp() IS NOT NULL THEN convert_from(canonical, 'UTF8')::jsonb END AS c,
           stream_id, stream_version, event_id, event_type, schema_version, {RECORDED_US} AS recorded_us,
           data, metadata
    FROM events WHERE canonical IS NOT NULL
) e
WHERE (jsonb_array_length(c) = 8 AND c ->> 0 = stream_id AND (c ->> 1)::bigint = stream_version
       AND c ->> 2 = event_id AND c ->> 3 = event_type AND (c ->> 4)::int = schema_version
       AND (c ->> 5)::bigint = recorded_us AND c -> 6 = data AND c -> 7 = metadata) IS NOT TRUE
"""
SQL_STREAM_HEADS = """
SELECT s.stream_id, s.version, s.head_hash, e.max_version, h.hash AS last_hash
FROM streams s
LEFT JOIN (SELECT stream_id, max(stream_version) AS max_version FROM events GROUP BY stream_id) e
       USING (stream_id)
LEFT JOIN events h ON h.stream_id = s.stream_id AND h.stream_version = s.version
WHERE e.max_version IS DISTINCT FROM s.version OR h.hash IS DISTINCT FROM s.head_hash
ORDER BY s.stream_id
LIMIT $1
"""
SQL_ORPHAN_EVENTS = """
SELECT e.stream_id, count(*) AS events, min(e.event_id) AS event_id
FROM events e LEFT JOIN streams s USING (stream_id)
WHERE s.stream_id IS NULL GROUP BY e.stream_id ORDER BY e.stream_id LIMIT $1
"""

_decode = msgspec.json.decode


def hex_or_none(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).hex()


class ChainWalker:
    """Checks links in (stream_id, stream_version) order, one row at a time, rebuilding each event's
    canonical bytes from its columns; keeps only the current stream's position. Each link is checked
    against the stored previous hash. Also names stored canonical bytes that are not the event's."""

    def __init__(self, result: CheckResult, limit: int) -> None:
        self.result = result
        self.limit = limit
        self.stream: str | None = None
        self.expected_version = 1
        self.previous = GENESIS_HASH
        self.events = 0
        self.streams = 0
        self.firsts = 0  # events at version 1

    def feed(self, rows: Iterable[Any]) -> None:
        decode, sha256 = _decode, hashlib.sha256
        stream, expected_version, previous = self.stream, self.expected_version, self.previous
        count = 0
        for (
            stream_id,
            version,
            event_id,
            event_type,
            schema_version,
            recorded_us,
            data,
            metadata,
            stored,
            stored_canonical,
        ) in rows:
            count += 1
            if stream_id != stream:
                stream, expected_version, previous = stream_id, 1, GENESIS_HASH
                self.streams += 1
            if version == 1:
                self.firsts += 1
            if version != expected_version:
                self.version_problem(stream_id, version, expected_version, event_id)
            rebuilt = canonical_bytes(
                stream_id=stream_id,
                stream_version=version,
                event_id=event_id,
                event_type=event_type,
                schema_version=schema_version,
                recorded_at_us=recorded_us,
                data=decode(data),
                metadata=decode(metadata),
            )
            computed = sha256(previous + rebuilt).digest()
            if computed != stored:
                self.result.add(
                    Problem(
                        "chains",
                        "broken_link",
                        f"stream {stream_id} version {version} (event {event_id}): hash chain broken: "
                        f"recomputed {computed.hex()}, stored {bytes(stored).hex()}",
                        stream_id=stream_id,
                        version=version,
                        event_id=event_id,
                        expected=computed.hex(),
                        found=bytes(stored).hex(),
                    ),
                    self.limit,
                )
            elif stored_canonical is not None and bytes(stored_canonical) != rebuilt:
                self.result.add(
                    Problem(
                        "chains",
                        "canonical_mismatch",
                        f"stream {stream_id} version {version} (event {event_id}): the stored canonical "
                        "bytes are not the event's (its columns hash correctly; the canonical column was "
                        "altered)",
                        stream_id=stream_id,
                        version=version,
                        event_id=event_id,
                        expected=sha256(rebuilt).hexdigest(),
                        found=sha256(bytes(stored_canonical)).hexdigest(),
                    ),
                    self.limit,
                )
            previous, expected_version = bytes(stored), version + 1
        self.stream, self.expected_version, self.previous = stream, expected_version, previous
        self.events += count

    def version_problem(self, stream_id: str, version: int, expected: int, event_id: str) -> None:
        if version > expected:
            missing = (
                f"version {expected}" if version == expected + 1 else f"versions {expected}..{version - 1}"
            )
            message = f"stream {stream_id}: {missing} missing (version {version}, event {event_id}, follows)"
            kind = "version_gap"
        else:
            message = (
                f"stream {stream_id}: version {version} (event {event_id}) where {expected} was expected"
            )
            kind = "version_out_of_order"
        self.result.add(
            Problem(
                "chains",
                kind,
                message,
                stream_id=stream_id,
                version=version,
                event_id=event_id,
                expected=expected,
                found=version,
            ),
            limit=self.limit,
        )


@asynccontextmanager
async def local_settings(conn: asyncpg.Connection, settings: Mapping[str, str]) -> AsyncIterator[None]:
    """Planner settings changed inside the block only (the enclosing transaction goes on with the
    previous values)."""
    previous = {name: await conn.fetchval("SELECT current_setting($1)", name) for name in settings}
    for name, value in settings.items():
        await conn.execute("SELECT set_config($1, $2, true)", name, value)
    try:
        yield
    finally:
        for name, value in previous.items():
            await conn.execute("SELECT set_config($1, $2, true)", name, value)


async def check_chains(
    conn: asyncpg.Connection,
    *,
    workers: int = 1,
    limit: int = DEFAULT_LIMIT,
    progress: Progress | None = None,
    batch: int = CHAIN_BATCH,
) -> CheckResult:
    """Every link, every version. Call inside a REPEATABLE READ transaction on `conn`.

    Fast path, set-based in the server, `workers` processes (the session plus workers - 1 parallel
    workers): (1) **links**: sha256(stored hash of the predecessor || stored canonical bytes) = stored
    hash for every event, and every event above version 1 has its predecessor; (2) **columns**: the
    stored canonical bytes are exactly the event's columns (stream, version, id, type, schema version,
    recording time, data, metadata). A stream that fails either, or has events without canonical bytes
    (appended before migration 0006), is then walked row by row in Python, rebuilding every event's
    canonical bytes from its columns (`ChainWalker`), which names each problem exactly as before.
    Timings of the phases are in the stats (links_seconds, columns_seconds, walk_seconds)."""
    started = time.monotonic()
    total, firsts, without_canonical = await conn.fetchrow(SQL_CHAIN_COUNTS)
    walker = ChainWalker(CheckResult("chains"), limit)
    stats: dict[str, Any] = {}
    suspects: set[str] | None = set()  # None: walk everything
    if total and without_canonical < total and await conn.fetchval(SQL_CHAIN_KEY_HOLDS):
        settings = {
            "max_parallel_workers_per_gather": str(max(workers - 1, 0)),
            "work_mem": "128MB",
            "enable_nestloop": "off",  # a hash join: no index probe per event
            # the planner does not know that the per-row work (sha256, a JSON parse) dwarfs the scan
            "parallel_setup_cost": "0",
            "parallel_tuple_cost": "0",
        }
        async with local_settings(conn, settings):
            phase = time.monotonic()
            # The settings shape the plan, and a connection caches the plan of a statement it prepared
            # before: one statement text per setting.
            tag = f"\n-- {workers} process(es)"
            rows = await conn.fetch(SQL_CHAIN_LINKS + tag)
            assert suspects is not None
            suspects.update(row[0] for row in rows)
            stats["links_seconds"] = round(time.monotonic() - phase, 3)
            if progress is not None:
                progress("chains", total // 2, total)
            phase = time.monotonic()
            try:
                async with conn.transaction():  # a savepoint: bytes that are not JSON fail the statement
                    rows = await conn.fetch(SQL_CHAIN_COLUMNS + tag)
                suspects.update(row[0] for row in rows)
            except asyncpg.DataError:  # invalid UTF-8 or JSON (class 22)
                suspects = None
            stats["columns_seconds"] = round(time.monotonic() - phase, 3)
    elif total:
        suspects = None
    phase = time.monotonic()
    if suspects is None or suspects:
        if suspects is not None and len(suspects) > WALK_ALL_ABOVE:
            suspects = None
        streams = None if suspects is None else sorted(suspects)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-chains")
        loop = asyncio.get_running_loop()
        try:
            cursor = await conn.cursor(SQL_CHAIN_ROWS, streams)
            pending = asyncio.ensure_future(cursor.fetch(batch))
            while True:  # pipelined: the server produces the next batch while this one is hashed
                rows = await pending
                if not rows:
                    break
                pending = asyncio.ensure_future(cursor.fetch(batch))
                await loop.run_in_executor(executor, walker.feed, rows)
                if progress is not None and suspects is None:
                    progress("chains", walker.events, total)
        finally:
            executor.shutdown(wait=True)
    stats["walk_seconds"] = round(time.monotonic() - phase, 3)
    if progress is not None:
        progress("chains", total, total)
    result = walker.result
    # Streams not walked passed every check: each has exactly one event at version 1.
    walked_firsts = walker.firsts if suspects is not None else firsts
    result.stats = {
        "events": total,
        "streams": firsts - walked_firsts + walker.streams,
        "workers": workers,
        "walked_streams": walker.streams,
        **stats,
    }
    result.seconds = time.monotonic() - started
    return result


async def check_stream_heads(conn: asyncpg.Connection, *, limit: int = DEFAULT_LIMIT) -> CheckResult:
    started = time.monotonic()
    result = CheckResult("streams")
    for row in await conn.fetch(SQL_STREAM_HEADS, limit + 1):
        stream_id = row["stream_id"]
        if row["max_version"] is None:
            message = f"stream {stream_id}: the stream row says version {row['version']} but it has no events"
            kind = "stream_without_events"
        elif row["max_version"] != row["version"]:
            message = (
                f"stream {stream_id}: the stream row says version {row['version']}, "
                f"its last event is version {row['max_version']}"
            )
            kind = "head_version_mismatch"
        else:
            message = (
                f"stream {stream_id}: head_hash {bytes(row['head_hash']).hex()} is not the hash of its "
                f"last event (version {row['version']}: {hex_or_none(row['last_hash'])})"
            )
            kind = "head_hash_mismatch"
        result.add(
            Problem(
                "streams",
                kind,
                message,
                stream_id=stream_id,
                version=row["version"],
                expected=row["max_version"]
                if kind != "head_hash_mismatch"
                else hex_or_none(row["last_hash"]),
                found=row["version"] if kind != "head_hash_mismatch" else bytes(row["head_hash"]).hex(),
            ),
            limit,
        )
    for row in await conn.fetch(SQL_ORPHAN_EVENTS, limit + 1):
        result.add(
            Problem(
                "streams",
                "events_without_stream",
                f"stream {row['stream_id']}: {row['events']} event(s) (e.g. {row['event_id']}) but no stream row",
                stream_id=row["stream_id"],
                event_id=row["event_id"],
            ),
            limit,
        )
    result.stats = {"streams": await conn.fetchval("SELECT count(*) FROM streams")}
    result.seconds = time.monotonic() - started
    return result
