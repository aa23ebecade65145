"""Audit: prove from the log alone that every balance is right and that no event was altered, removed,
reordered or inserted.

`verify(pool)` (the `ledgerd verify` command) runs four checks and is clean only if all of them are:

* **chains** - in one REPEATABLE READ snapshot, every stream's events in version order: versions run
  1, 2, 3, ... with no gap, and every stored hash equals sha256(stored hash of the previous event ||
  canonical bytes of this one) (genesis: 32 zero bytes; see service/store/base.py). Each link is checked
  against the *stored* previous hash, so one altered event breaks exactly its own link and is named alone.
  Set-based in the server from the stored canonical bytes (`events.canonical`, migration 0006), plus a
  proof that every event's columns agree with those bytes; only streams that fail either, or that hold
  events without canonical bytes, are walked row by row in Python (see `check_chains`). In the same
  snapshot: every stream row's `version` and `head_hash` match its last event, and every
  event has a stream row.
* **invariants** - ledger invariants in SQL, in the same snapshot, on the balance ledger and on the log
  itself: balance = sum of the customer's entries = the last entry's ending_balance; every entry's
  ending_balance = the previous ending_balance in its currency + its amount (from 0): one ledger per
  currency; the customer's own currency is fixed by the first one set.
* **digest** (with `--digest FILE`) - the log up to the digest's position is exactly the log the digest
  was taken from: same number of events, same hash over their hashes in the gap-safe global order. This
  catches what per-stream chains cannot: a whole stream removed, a stream's tail cut off (with its stream
  row rewound), events reordered in the global log, a forged event inserted into the past.
* **drift** - the whole log replayed from zero into private tables (service.rebuild's bulk replay: the
  projections' row definitions folded in memory, the tail through the live path) and compared with the
  live projections row by row and field by field.

Digest document (`ledgerd digest`, format "ledger-digest/1"), JSON:

    {"format": "ledger-digest/1",
     "database": "<current_database()>",            informational
     "taken_at": "2026-11-01T00:00:00.000000Z",      informational
     "horizon_tx_id": X,                              pg_snapshot_xmin when taken: every transaction below
                                                      it had committed or aborted, so the prefix is final
     "cursor": {"tx_id": T, "position": P},          the last event of the prefix in (tx_id, position) order
     "events": N,                                     events e_1..e_N with (tx_id, position) <= cursor
     "streams": S,                                    distinct stream_ids among them
     "hash": hex(sha256(h_1 || h_2 || ... || h_N)),   h_i = the stored 32-byte hash of e_i, in
                                                      (tx_id, position) order (sha256 of b"" when N = 0)
     "last_event": {"stream_id", "stream_version", "event_id"} | null,
     "checkpoints": [{"events": k, "cursor": {...}, "hash": hex(sha256(h_1 || ... || h_k))}, ...]}

Events are final below the horizon and never renumbered, so the same prefix hashes the same forever; a
later digest extends an earlier one. Checkpoints (at most 32, evenly spaced) only localize a mismatch.
A full `ledgerd export` carries the same (tx_id, position) and hashes, so an export can be checked against
a digest offline (`verify_export`).

Point in time: `customer_as_of`, `balance_transactions_as_of`, `customer_history` and `balance_at` fold
one stream with the domain's `evolve` (through the upcasters), never reading the projections. "As of T"
means the longest prefix of the stream whose events were all recorded at or before T (events are
recorded in version order; a clock that stepped back never makes the fold skip an event). An `as_of` in
unix seconds covers that whole second (T.999999), matching the whole-second `created` fields.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
import os
import secrets
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import asyncpg
import msgspec

from ledgerd.domain.customer import (
    INITIAL_STATE,
    CustomerState,
    ledgers,
)
from ledgerd.domain.log import GENESIS_HASH, RecordedEvent, canonical_bytes
from ledgerd.projections import PROJECTION_TABLES, Fold, command_of
from ledgerd.projections import customers as customers_projection
from ledgerd.projections.objects import render_balance_transaction, render_customer, render_deleted_customer
from ledgerd.service import history
from ledgerd.service.history import Queryable
from ledgerd.service.store.base import GlobalCursor
from ledgerd.service.store.postgres import EVENT_COLUMNS, row_to_event, to_microseconds, to_timestamp

# progress(stage, done, total): total is None when unknown
Progress = Callable[[str, int, int | None], None]

DIGEST_FORMAT = "ledger-digest/1"
MAX_CHECKPOINTS = 32
CHAIN_BATCH = 20_000
DIGEST_BATCH = 100_000
EXPORT_BATCH = 20_000
DEFAULT_LIMIT = 50  # problems reported per check
MAX_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z

# ---------------------------------------------------------------------------------------------------
# reports
# ---------------------------------------------------------------------------------------------------


@dataclass
class Problem:
    check: str  # chains | streams | invariants | digest | drift | export
    kind: str  # broken_link, version_gap, head_mismatch, balance_mismatch, row_drift, ...
    message: str
    stream_id: str | None = None
    version: int | None = None
    event_id: str | None = None
    expected: Any = None
    found: Any = None
    table: str | None = None
    key: str | None = None
    fields: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}


@dataclass
class CheckResult:
    name: str
    ok: bool = True
    skipped: bool = False
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False  # more problems than reported

    def add(self, problem: Problem, limit: int) -> None:
        self.ok = False
        if len(self.problems) < limit:
            self.problems.append(problem)
        else:
            self.truncated = True

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"name": self.name, "ok": self.ok, "seconds": round(self.seconds, 3)}
        if self.skipped:
            result["skipped"] = True
        result.update(self.stats)
        result["problems"] = [problem.to_dict() for problem in self.problems]
        if self.truncated:
            result["more_problems_not_shown"] = True
        return result


@dataclass
class VerifyReport:
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def problems(self) -> list[Problem]:
        return [problem for check in self.checks for problem in check.problems]

    def check(self, name: str) -> CheckResult:
        return next(check for check in self.checks if check.name == name)

    def to_dict(self) -> dict[str, Any]:
        problems = self.problems
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "first_problem": problems[0].to_dict() if problems else None,
            "checks": [check.to_dict() for check in self.checks],
        }

    def summary(self) -> str:
        lines = []
        for check in self.checks:
            if check.skipped:
                status = "skipped"
            else:
                status = (
                    "ok" if check.ok else f"FAILED ({len(check.problems)}{'+' if check.truncated else ''})"
                )
            detail = ", ".join(
                f"{key} {value}" for key, value in check.stats.items() if not isinstance(value, dict)
            )
            lines.append(f"{check.name:<11} {status:<12} {detail} [{check.seconds:.2f} s]")
            lines.extend(f"  - {problem.message}" for problem in check.problems)
            if check.truncated:
                lines.append("  - ... more problems not shown")
        lines.append(f"verify: {'OK' if self.ok else 'FAILED'} in {self.seconds:.2f} s")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# 1. hash chains, versions, stream heads
# ---------------------------------------------------------------------------------------------------

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
# The columns agree with the canonical bytes the chain hashes (parsed as JSON by the server and compared
# as jsonb: the same documents, whatever the key order; numbers compare by value, so 1 and 1.0 are
# equal here). Streams with a disagreeing event need the row-by-row walk, which names it.
SQL_CHAIN_COLUMNS = f"""
SELECT DISTINCT stream_id FROM events
WHERE canonical IS NOT NULL
  AND convert_from(canonical, 'UTF8')::jsonb IS DISTINCT FROM jsonb_build_array(
      stream_id, stream_version, event_id, event_type, schema_version, {RECORDED_US}, data, metadata)
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

_canonical = msgspec.json.Encoder(order="sorted").encode
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
        canonical, decode, sha256 = _canonical, _decode, hashlib.sha256
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
            rebuilt = canonical(
                [
                    stream_id,
                    version,
                    event_id,
                    event_type,
                    schema_version,
                    recorded_us,
                    decode(data),
                    decode(metadata),
                ]
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


# ---------------------------------------------------------------------------------------------------
# 2. ledger invariants, in SQL
# ---------------------------------------------------------------------------------------------------

# The balance ledger projection.
SQL_BALANCE_VS_ENTRIES = """
SELECT c.id, c.balance, coalesce(s.total, 0) AS total, coalesce(s.last_ending, 0) AS last_ending,
       coalesce(s.entries, 0) AS entries
FROM customers c
LEFT JOIN (SELECT customer_id, currency, sum(amount) AS total, count(*) AS entries,
                  (array_agg(ending_balance ORDER BY version DESC))[1] AS last_ending
           FROM balance_transactions GROUP BY customer_id, currency) s
       ON s.customer_id = c.id AND s.currency = c.currency
WHERE c.balance <> coalesce(s.total, 0) OR c.balance <> coalesce(s.last_ending, 0)
ORDER BY c.id LIMIT $1
"""
# One ledger per currency (`balances`): each currency's balance is the sum of its entries and the last
# entry's ending_balance; every currency with entries (and the customer's own) has a balance.
SQL_LEDGERS_VS_ENTRIES = """
SELECT c.id, k.currency, c.balances -> k.currency AS recorded, coalesce(s.total, 0) AS total,
       coalesce(s.last_ending, 0) AS last_ending, coalesce(s.entries, 0) AS entries
FROM customers c
CROSS JOIN LATERAL (SELECT jsonb_object_keys(c.balances) AS currency
                    UNION SELECT b.currency FROM balance_transactions b WHERE b.customer_id = c.id
                    UNION SELECT c.currency WHERE c.currency IS NOT NULL) k
LEFT JOIN (SELECT customer_id, currency, sum(amount) AS total, count(*) AS entries,
                  (array_agg(ending_balance ORDER BY version DESC))[1] AS last_ending
           FROM balance_transactions GROUP BY customer_id, currency) s
       ON s.customer_id = c.id AND s.currency = k.currency
WHERE jsonb_typeof(c.balances -> k.currency) IS DISTINCT FROM 'number'
   OR (c.balances ->> k.currency)::numeric <> coalesce(s.total, 0)
   OR coalesce(s.total, 0) <> coalesce(s.last_ending, 0)
ORDER BY c.id, k.currency LIMIT $1
"""
SQL_ENTRIES_WITHOUT_CUSTOMER = """
SELECT b.customer_id, count(*) AS entries FROM balance_transactions b
LEFT JOIN customers c ON c.id = b.customer_id WHERE c.id IS NULL
GROUP BY b.customer_id ORDER BY 1 LIMIT $1
"""
SQL_ENTRY_CHAIN = """
SELECT id, customer_id, version, amount, ending_balance, previous FROM (
    SELECT b.id, b.customer_id, b.version, b.amount, b.ending_balance,
           lag(b.ending_balance, 1, 0::bigint)
               OVER (PARTITION BY b.customer_id, b.currency ORDER BY b.version) AS previous
    FROM balance_transactions b) x
WHERE ending_balance::numeric <> previous::numeric + amount
ORDER BY customer_id, version LIMIT $1
"""
# A customer with entries has a currency: the one its first entry set, unless it had one already.
SQL_CURRENCY_FIXED = """
SELECT b.customer_id, array_agg(DISTINCT b.currency ORDER BY b.currency) AS currencies, c.currency
FROM balance_transactions b JOIN customers c ON c.id = b.customer_id
GROUP BY b.customer_id, c.currency
HAVING c.currency IS NULL
ORDER BY 1 LIMIT $1
"""
# The log itself: the same arithmetic over the BalanceAdjusted events (schema v1 fields) ...
SQL_LOG_ENTRY_CHAIN = """
SELECT stream_id, stream_version, event_id, amount, ending, previous FROM (
    SELECT stream_id, stream_version, event_id, amount, ending,
           lag(ending, 1, 0::numeric) OVER (PARTITION BY stream_id, currency ORDER BY stream_version) AS previous
    FROM (SELECT stream_id, stream_version, event_id, data->>'currency' AS currency,
                 CASE WHEN jsonb_typeof(data->'amount') = 'number' THEN (data->>'amount')::numeric END AS amount,
                 CASE WHEN jsonb_typeof(data->'ending_balance') = 'number'
                      THEN (data->>'ending_balance')::numeric END AS ending
          FROM events WHERE event_type = 'BalanceAdjusted') e) x
WHERE amount IS NULL OR ending IS NULL OR previous IS NULL OR ending <> previous + amount
ORDER BY stream_id, stream_version LIMIT $1
"""
# ... and one customer currency per stream: the first one set (at creation, by an update, or by the
# first entry) is the only one a later CustomerCreated/CustomerUpdated may name (entries in other
# currencies go to their own ledgers).
SQL_LOG_CURRENCY_FIXED = """
SELECT stream_id, stream_version, event_id, event_type, currency, fixed FROM (
    SELECT stream_id, stream_version, event_id, event_type, currency,
           first_value(currency) OVER (PARTITION BY stream_id ORDER BY stream_version) AS fixed
    FROM (SELECT stream_id, stream_version, event_id, event_type,
                 CASE event_type WHEN 'CustomerUpdated' THEN data->'changes'->>'currency'
                                 ELSE data->>'currency' END AS currency
          FROM events WHERE event_type IN ('CustomerCreated', 'CustomerUpdated', 'BalanceAdjusted')) e
    WHERE currency IS NOT NULL) x
WHERE currency <> fixed AND event_type <> 'BalanceAdjusted'
ORDER BY stream_id, stream_version LIMIT $1
"""


def balance_mismatch(row: asyncpg.Record, field: str, shown: str, found: Any) -> Problem:
    """A customer's balance (column `field`) that its ledger entries do not add up to."""
    return Problem(
        "invariants",
        "balance_mismatch",
        f"customer {row['id']}: {shown}, but its {row['entries']} ledger entries sum to {row['total']} and "
        f"the last ending_balance is {row['last_ending']}",
        stream_id=row["id"],
        table="customers",
        key=row["id"],
        fields=[field],
        expected=int(row["total"]),
        found=found,
    )


async def check_invariants(conn: asyncpg.Connection, *, limit: int = DEFAULT_LIMIT) -> CheckResult:
    started = time.monotonic()
    result = CheckResult("invariants")
    for row in await conn.fetch(SQL_BALANCE_VS_ENTRIES, limit + 1):
        result.add(balance_mismatch(row, "balance", f"balance {row['balance']}", row["balance"]), limit)
    for row in await conn.fetch(SQL_LEDGERS_VS_ENTRIES, limit + 1):
        shown = f"balance in {row['currency']} {row['recorded']}"
        result.add(balance_mismatch(row, "balances", shown, row["recorded"]), limit)
    for row in await conn.fetch(SQL_ENTRIES_WITHOUT_CUSTOMER, limit + 1):
        result.add(
            Problem(
                "invariants",
                "entries_without_customer",
                f"{row['entries']} ledger entries belong to {row['customer_id']}, which is not in customers",
                stream_id=row["customer_id"],
                table="balance_transactions",
            ),
            limit,
        )
    for row in await conn.fetch(SQL_ENTRY_CHAIN, limit + 1):
        result.add(
            Problem(
                "invariants",
                "entry_chain_broken",
                f"ledger entry {row['id']} (customer {row['customer_id']}, version {row['version']}): "
                f"ending_balance {row['ending_balance']} != previous {row['previous']} + amount {row['amount']}",
                stream_id=row["customer_id"],
                version=row["version"],
                table="balance_transactions",
                key=row["id"],
                fields=["ending_balance"],
                expected=row["previous"] + row["amount"],
                found=row["ending_balance"],
            ),
            limit,
        )
    for row in await conn.fetch(SQL_CURRENCY_FIXED, limit + 1):
        result.add(
            Problem(
                "invariants",
                "currency_not_fixed",
                f"customer {row['customer_id']} has no currency but ledger entries in "
                f"{', '.join(row['currencies'])}",
                stream_id=row["customer_id"],
                table="balance_transactions",
                fields=["currency"],
                expected=row["currency"],
                found=list(row["currencies"]),
            ),
            limit,
        )
    for row in await conn.fetch(SQL_LOG_ENTRY_CHAIN, limit + 1):
        result.add(
            Problem(
                "invariants",
                "log_entry_chain_broken",
                f"log: stream {row['stream_id']} version {row['stream_version']} (event {row['event_id']}): "
                f"ending_balance {row['ending']} != previous {row['previous']} + amount {row['amount']}",
                stream_id=row["stream_id"],
                version=row["stream_version"],
                event_id=row["event_id"],
            ),
            limit,
        )
    for row in await conn.fetch(SQL_LOG_CURRENCY_FIXED, limit + 1):
        result.add(
            Problem(
                "invariants",
                "log_currency_not_fixed",
                f"log: stream {row['stream_id']} version {row['stream_version']} (event {row['event_id']}, "
                f"{row['event_type']}) names currency {row['currency']}; the stream's currency is {row['fixed']}",
                stream_id=row["stream_id"],
                version=row["stream_version"],
                event_id=row["event_id"],
                expected=row["fixed"],
                found=row["currency"],
            ),
            limit,
        )
    result.stats = {
        "customers": await conn.fetchval("SELECT count(*) FROM customers"),
        "entries": await conn.fetchval("SELECT count(*) FROM balance_transactions"),
    }
    result.seconds = time.monotonic() - started
    return result


# ---------------------------------------------------------------------------------------------------
# 3. digests
# ---------------------------------------------------------------------------------------------------

SQL_HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
SQL_COUNT_BELOW = "SELECT count(*) FROM events WHERE tx_id < $1"
SQL_DIGEST_BATCH = """
SELECT tx_id, position, hash FROM events
WHERE (tx_id, position) > ($1, $2) AND tx_id < $3
ORDER BY tx_id, position LIMIT $4
"""
SQL_PREFIX_BATCH = """
SELECT tx_id, position, hash FROM events
WHERE (tx_id, position) > ($1, $2) AND (tx_id, position) <= ($3, $4)
ORDER BY tx_id, position LIMIT $5
"""
SQL_PREFIX_STREAMS = "SELECT count(DISTINCT stream_id) FROM events WHERE (tx_id, position) <= ($1, $2)"
SQL_EVENT_AT = "SELECT stream_id, stream_version, event_id FROM events WHERE tx_id = $1 AND position = $2"


class Digest(msgspec.Struct, kw_only=True):
    format: str = DIGEST_FORMAT
    database: str = ""
    taken_at: str = ""
    horizon_tx_id: int = 0
    cursor: dict[str, int] = {}
    events: int = 0
    streams: int = 0
    hash: str = ""
    last_event: dict[str, Any] | None = None
    checkpoints: list[dict[str, Any]] = []

    def to_json(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self), indent=2) + b"\n"

    @classmethod
    def from_json(cls, text: bytes | str) -> Digest:
        digest = msgspec.json.decode(text, type=cls)
        if digest.format != DIGEST_FORMAT:
            raise ValueError(f"not a {DIGEST_FORMAT} document (format {digest.format!r})")
        if set(digest.cursor) != {"tx_id", "position"}:
            raise ValueError("the digest has no cursor {tx_id, position}")
        return digest


def utc_text(microseconds: int) -> str:
    return to_timestamp(microseconds).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_us() -> int:
    return time.time_ns() // 1000


class PrefixHasher:
    """sha256 over the stored event hashes in order, with evenly spaced checkpoints."""

    def __init__(self, checkpoint_every: int) -> None:
        self.running = hashlib.sha256()
        self.events = 0
        self.every = checkpoint_every
        self.checkpoints: list[dict[str, Any]] = []
        self.cursor = GlobalCursor()

    def feed(self, rows: list[Any]) -> None:
        update = self.running.update
        every = self.every
        for tx_id, position, stored in rows:
            update(stored)
            self.events += 1
            if every and self.events % every == 0:
                self.checkpoints.append(
                    {
                        "events": self.events,
                        "cursor": {"tx_id": tx_id, "position": position},
                        "hash": self.running.hexdigest(),
                    }
                )
        if rows:
            self.cursor = GlobalCursor(rows[-1][0], rows[-1][1])


async def take_digest(
    conn: asyncpg.Connection, *, progress: Progress | None = None, batch: int = DIGEST_BATCH
) -> Digest:
    """A digest of every event below the current horizon (see the module doc). Run it outside a
    writing transaction: a transaction's own xid would hold the horizon back."""
    taken = now_us()
    horizon: int = await conn.fetchval(SQL_HORIZON)
    total: int = await conn.fetchval(SQL_COUNT_BELOW, horizon)
    hasher = PrefixHasher(math.ceil(total / MAX_CHECKPOINTS) if total else 0)
    while True:
        rows = await conn.fetch(SQL_DIGEST_BATCH, hasher.cursor.tx_id, hasher.cursor.position, horizon, batch)
        hasher.feed(rows)
        if progress is not None:
            progress("digest", hasher.events, total)
        if len(rows) < batch:
            break
    cursor = hasher.cursor
    last = await conn.fetchrow(SQL_EVENT_AT, cursor.tx_id, cursor.position) if hasher.events else None
    return Digest(
        database=await conn.fetchval("SELECT current_database()"),
        taken_at=utc_text(taken),
        horizon_tx_id=horizon,
        cursor={"tx_id": cursor.tx_id, "position": cursor.position},
        events=hasher.events,
        streams=await conn.fetchval(SQL_PREFIX_STREAMS, cursor.tx_id, cursor.position),
        hash=hasher.running.hexdigest(),
        last_event=dict(last) if last is not None else None,
        checkpoints=[point for point in hasher.checkpoints if point["events"] != hasher.events],
    )


async def check_digest(
    conn: asyncpg.Connection,
    digest: Digest,
    *,
    limit: int = DEFAULT_LIMIT,
    progress: Progress | None = None,
    batch: int = DIGEST_BATCH,
) -> CheckResult:
    """Recompute the digest's prefix (every event with (tx_id, position) <= its cursor) and compare."""
    started = time.monotonic()
    result = CheckResult("digest")
    end = GlobalCursor(digest.cursor["tx_id"], digest.cursor["position"])
    expected_points = {point["events"]: point for point in digest.checkpoints}
    hasher = PrefixHasher(0)
    matched_up_to: dict[str, Any] | None = None
    first_bad_checkpoint: dict[str, Any] | None = None
    horizon: int = await conn.fetchval(SQL_HORIZON)
    if digest.events and end.tx_id >= horizon:
        result.add(
            Problem(
                "digest",
                "digest_from_the_future",
                f"the digest's cursor (tx {end.tx_id}) is not below this database's horizon (tx {horizon}): "
                "a digest of another database, or the database was restored logically",
                expected=digest.cursor,
            ),
            limit,
        )
    while True:
        rows = await conn.fetch(
            SQL_PREFIX_BATCH, hasher.cursor.tx_id, hasher.cursor.position, end.tx_id, end.position, batch
        )
        # compare checkpoints as they pass
        for tx_id, position, stored in rows:
            hasher.running.update(stored)
            hasher.events += 1
            point = expected_points.get(hasher.events)
            if point is not None and first_bad_checkpoint is None:
                same = point["hash"] == hasher.running.hexdigest() and point["cursor"] == {
                    "tx_id": tx_id,
                    "position": position,
                }
                if same:
                    matched_up_to = point
                else:
                    first_bad_checkpoint = point
        if rows:
            hasher.cursor = GlobalCursor(rows[-1][0], rows[-1][1])
        if progress is not None:
            progress("digest", hasher.events, digest.events)
        if len(rows) < batch:
            break
    found_hash = hasher.running.hexdigest()
    streams = await conn.fetchval(SQL_PREFIX_STREAMS, end.tx_id, end.position)
    result.stats = {"events": hasher.events, "cursor": digest.cursor, "taken_at": digest.taken_at}
    where = (
        f"; the log is unchanged up to checkpoint {matched_up_to['events']} "
        f"(cursor {matched_up_to['cursor']}), the first difference is after it"
        if matched_up_to
        else ("; already different before the first checkpoint" if first_bad_checkpoint else "")
    )
    if digest.last_event is not None:
        last = await conn.fetchrow(SQL_EVENT_AT, end.tx_id, end.position)
        if last is None or dict(last) != digest.last_event:
            result.add(
                Problem(
                    "digest",
                    "digest_position_changed",
                    f"the event at the digest's cursor {digest.cursor} was {digest.last_event}, now "
                    f"{dict(last) if last is not None else 'nothing'}",
                    stream_id=digest.last_event.get("stream_id"),
                    version=digest.last_event.get("stream_version"),
                    event_id=digest.last_event.get("event_id"),
                    expected=digest.last_event,
                    found=dict(last) if last is not None else None,
                ),
                limit,
            )
    if hasher.events != digest.events:
        change = digest.events - hasher.events
        what = f"{change} removed" if change > 0 else f"{-change} inserted"
        result.add(
            Problem(
                "digest",
                "event_count_changed",
                f"{hasher.events} events up to the digest's cursor, the digest recorded {digest.events} "
                f"({what}){where}",
                expected=digest.events,
                found=hasher.events,
            ),
            limit,
        )
    if streams != digest.streams:
        change = digest.streams - streams
        what = f"{change} stream(s) removed" if change > 0 else f"{-change} stream(s) added"
        result.add(
            Problem(
                "digest",
                "stream_count_changed",
                f"{streams} streams up to the digest's cursor, the digest recorded {digest.streams} ({what})",
                expected=digest.streams,
                found=streams,
            ),
            limit,
        )
    if found_hash != digest.hash:
        result.add(
            Problem(
                "digest",
                "digest_hash_mismatch",
                f"the hash over the event hashes up to the digest's cursor is {found_hash}, the digest "
                f"recorded {digest.hash}: events were altered, removed, inserted or reordered{where}",
                expected=digest.hash,
                found=found_hash,
            ),
            limit,
        )
    result.seconds = time.monotonic() - started
    return result


# ---------------------------------------------------------------------------------------------------
# 4. drift: a replay from zero against the live projections, field by field
# ---------------------------------------------------------------------------------------------------

SQL_DRIFT = """
SELECT coalesce(l.k, r.k) AS key, l.j::text AS live, r.j::text AS replay
FROM (SELECT {key} AS k, to_jsonb(t) AS j FROM {live} t) l
FULL JOIN (SELECT {key} AS k, to_jsonb(t) AS j FROM {replayed} t) r ON l.k = r.k
WHERE l.j IS DISTINCT FROM r.j
ORDER BY 1 LIMIT $1
"""


async def check_drift(
    pool: asyncpg.Pool, *, limit: int = DEFAULT_LIMIT, progress: Progress | None = None
) -> CheckResult:
    """Replay the whole log with service.rebuild's bulk replay (into private tables) and compare every
    projection table with the live one, naming rows and fields."""
    from ledgerd.service.rebuild import (
        add_shadow_indexes,
        bulk_replay,
        create_shadow_tables,
        live_schema,
        quote_ident,
        replay_tail,
    )

    started = time.monotonic()
    result = CheckResult("drift")
    schema = f"ledger_audit_{secrets.token_hex(4)}"
    total: int = await pool.fetchval("SELECT count(*) FROM events")

    def replay_progress(done: int) -> None:
        if progress is not None:
            progress("drift", done, total)

    async with pool.acquire() as conn:
        try:
            source = await live_schema(conn)
            await create_shadow_tables(conn, schema, source, indexes=False)
            rows: dict[str, int] = {}
            try:
                bulk = await bulk_replay(pool, conn, schema, progress=replay_progress)
                await add_shadow_indexes(conn, schema, source, pool=pool)
                async with conn.transaction(isolation="repeatable_read"):
                    tail = await replay_tail(conn, schema, source, bulk.fold, bulk.cursor)
                    for table in PROJECTION_TABLES:
                        rows[table] = await compare_table(conn, source, schema, table, result, limit)
            except REPLAY_ERRORS as error:
                # A tampered log may not even replay (e.g. an update of a transaction whose creation
                # was removed): that is a finding, not a crash; the chains check names the events.
                result.add(
                    Problem(
                        "drift",
                        "replay_failed",
                        f"the log cannot be replayed into the projections: {type(error).__name__}: {error}",
                    ),
                    limit,
                )
            else:
                result.stats = {"events": bulk.events + tail.events, "rows": rows}
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    result.seconds = time.monotonic() - started
    return result


# Failures of the projection code on a log it was never meant to see (not connection failures).
REPLAY_ERRORS = (asyncpg.PostgresError, LookupError, TypeError, ValueError, AttributeError)


async def compare_table(
    conn: asyncpg.Connection, source: str, schema: str, table: str, result: CheckResult, limit: int
) -> int:
    from ledgerd.service.rebuild import SQL_PRIMARY_KEY, quote_ident

    live = f"{quote_ident(source)}.{quote_ident(table)}"
    replayed = f"{quote_ident(schema)}.{quote_ident(table)}"
    columns = [row["attname"] for row in await conn.fetch(SQL_PRIMARY_KEY, live)]
    if not columns:
        raise RuntimeError(f"{table} has no primary key: cannot compare it row by row")
    key = (
        f"t.{quote_ident(columns[0])}::text"
        if len(columns) == 1
        else "row(" + ", ".join(f"t.{quote_ident(c)}" for c in columns) + ")::text"
    )
    for row in await conn.fetch(SQL_DRIFT.format(key=key, live=live, replayed=replayed), limit + 1):
        result.add(drift_problem(table, row["key"], row["live"], row["replay"]), limit)
    count: int = await conn.fetchval(f"SELECT count(*) FROM {live}")
    return count


def drift_problem(table: str, key: str, live_text: str | None, replay_text: str | None) -> Problem:
    if replay_text is None:
        return Problem(
            "drift",
            "row_not_in_log",
            f"{table} {key}: in the live table, but the log does not produce it",
            table=table,
            key=key,
            found=_decode(live_text) if live_text else None,
        )
    if live_text is None:
        return Problem(
            "drift",
            "row_missing",
            f"{table} {key}: the log produces it, the live table lacks it",
            table=table,
            key=key,
            expected=_decode(replay_text),
        )
    live, replay = _decode(live_text), _decode(replay_text)
    names = sorted(name for name in set(live) | set(replay) if live.get(name) != replay.get(name))
    shown = "; ".join(f"{name}: live {live.get(name)!r}, log {replay.get(name)!r}" for name in names)
    return Problem(
        "drift",
        "row_drift",
        f"{table} {key}: {shown}",
        table=table,
        key=key,
        fields=names,
        expected={name: replay.get(name) for name in names},
        found={name: live.get(name) for name in names},
    )


# ---------------------------------------------------------------------------------------------------
# verify: everything
# ---------------------------------------------------------------------------------------------------


async def verify(
    pool: asyncpg.Pool,
    *,
    digest: Digest | None = None,
    drift: bool = True,
    limit: int = DEFAULT_LIMIT,
    progress: Progress | None = None,
    workers: int | None = None,
) -> VerifyReport:
    """All checks (see the module doc). `workers`: server processes for the set-based chain checks
    (default: one per CPU, at most 4; see `check_chains`)."""
    started = time.monotonic()
    report = VerifyReport()
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    workers = max(1, workers)
    async with pool.acquire() as conn:
        # One snapshot for the chains, the stream heads and the invariants; read-only, so it takes no
        # transaction id and never holds back anyone's gap-safe horizon.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            report.checks.append(await check_chains(conn, workers=workers, limit=limit, progress=progress))
            report.checks.append(await check_stream_heads(conn, limit=limit))
            report.checks.append(await check_invariants(conn, limit=limit))
        if digest is not None:
            report.checks.append(await check_digest(conn, digest, limit=limit, progress=progress))
    if drift:
        report.checks.append(await check_drift(pool, limit=limit, progress=progress))
    else:
        report.checks.append(CheckResult("drift", skipped=True))
    report.seconds = time.monotonic() - started
    return report


# ---------------------------------------------------------------------------------------------------
# export, import, offline verification of an export
# ---------------------------------------------------------------------------------------------------


class ExportLine(msgspec.Struct, kw_only=True):
    """One event per line. `data` and `metadata` are the stored JSON documents; `hash` is hex."""

    position: int
    tx_id: int
    stream_id: str
    stream_version: int
    event_id: str
    event_type: str
    schema_version: int
    recorded_at_us: int
    data: msgspec.Raw
    metadata: msgspec.Raw
    hash: str


# Canonical bytes (service/store/base.py) read for their documents only: data and metadata as raw JSON.
CanonicalDocuments = tuple[str, int, str, str, int, int, msgspec.Raw, msgspec.Raw]


class ImportLine(msgspec.Struct, kw_only=True):
    position: int
    tx_id: int
    stream_id: str
    stream_version: int
    event_id: str
    event_type: str
    schema_version: int
    recorded_at_us: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    hash: str


# Each line is built around its documents: the server renders the fields before them (`head`, the
# same bytes msgspec writes for an ExportLine) and the documents come from the canonical bytes, what
# the hash covers (no jsonb -> text conversion in the server, ~5 us per event); from the columns only
# for events appended before migration 0006.
SQL_EXPORT_BATCH = """
SELECT '{{"position":' || position || ',"tx_id":' || tx_id || ',"stream_id":' || to_json(stream_id)
       || ',"stream_version":' || stream_version || ',"event_id":' || to_json(event_id)
       || ',"event_type":' || to_json(event_type) || ',"schema_version":' || schema_version
       || ',"recorded_at_us":' || (extract(epoch FROM recorded_at) * 1000000)::bigint || ',"data":' AS head,
       CASE WHEN canonical IS NULL THEN data::text END, CASE WHEN canonical IS NULL THEN metadata::text END,
       hash, canonical, tx_id, position
FROM events
WHERE (tx_id, position) > ($1, $2) AND tx_id < $3 {filters}
ORDER BY tx_id, position LIMIT $4
"""


@dataclass
class ExportSummary:
    events: int = 0
    horizon_tx_id: int = 0
    cursor: dict[str, int] = field(default_factory=lambda: {"tx_id": 0, "position": 0})
    hash: str = ""  # sha256 over the exported hashes in order (= the digest hash for a full export)
    filtered: bool = False
    seconds: float = 0.0


async def export_jsonl(
    conn: asyncpg.Connection,
    out: IO[bytes],
    *,
    since_us: int | None = None,
    customer_id: str | None = None,
    progress: Progress | None = None,
    batch: int = EXPORT_BATCH,
) -> ExportSummary:
    """Stream the log, in the gap-safe global order, as JSON Lines to `out`, in keyset batches (constant
    memory). The horizon is fixed when the export starts: everything below it is final, so the export is
    one consistent prefix of the log (optionally filtered) even though it spans many statements."""
    started = time.monotonic()
    horizon: int = await conn.fetchval(SQL_HORIZON)
    filters, extra = "", list[Any]()
    if since_us is not None:
        extra.append(to_timestamp(since_us))
        filters += f" AND recorded_at >= ${4 + len(extra)}"
    if customer_id is not None:
        extra.append(customer_id)
        filters += f" AND stream_id = ${4 + len(extra)}"
    query = SQL_EXPORT_BATCH.format(filters=filters)
    running = hashlib.sha256()
    summary = ExportSummary(horizon_tx_id=horizon, filtered=bool(extra))
    cursor = GlobalCursor()

    documents = msgspec.json.Decoder(CanonicalDocuments).decode

    def encode(rows: list[Any]) -> bytes:
        parts: list[Any] = []
        add, update = parts.extend, running.update
        for head, data, meta, stored, canonical, _, _ in rows:
            update(stored)
            if canonical is not None:
                _, _, _, _, _, _, data, meta = documents(canonical)
            else:
                data, meta = data.encode(), meta.encode()
            add((head.encode(), data, b',"metadata":', meta, b',"hash":"', stored.hex().encode(), b'"}\n'))
        return b"".join(parts)

    # Pipelined: the server produces the next batch while this one is encoded and written.
    pending: asyncio.Future[Any] | None = asyncio.ensure_future(
        conn.fetch(query, 0, 0, horizon, batch, *extra)
    )
    try:
        while pending is not None:
            rows = await pending
            pending = None
            if len(rows) == batch:
                cursor = GlobalCursor(rows[-1][-2], rows[-1][-1])
                pending = asyncio.ensure_future(
                    conn.fetch(query, cursor.tx_id, cursor.position, horizon, batch, *extra)
                )
            if rows:
                out.write(encode(rows))
                cursor = GlobalCursor(rows[-1][-2], rows[-1][-1])
                summary.events += len(rows)
                if progress is not None:
                    progress("export", summary.events, None)
    finally:
        if pending is not None:  # the consumer failed (e.g. a closed pipe): do not leave a query behind
            pending.cancel()
    summary.cursor = {"tx_id": cursor.tx_id, "position": cursor.position}
    summary.hash = running.hexdigest()
    summary.seconds = time.monotonic() - started
    return summary


@dataclass
class ExportCheck:
    """The result of checking an export file offline (no database)."""

    events: int = 0
    streams: int = 0
    anchored: int = 0  # streams whose first exported event is not version 1 (a partial export)
    hash: str = ""
    cursor: dict[str, int] = field(default_factory=lambda: {"tx_id": 0, "position": 0})
    problems: list[Problem] = field(default_factory=list)
    digest: CheckResult | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and (self.digest is None or self.digest.ok)


def verify_export(
    lines: Iterable[bytes], *, digest: Digest | None = None, limit: int = DEFAULT_LIMIT
) -> ExportCheck:
    """Check an export offline: every line's hash recomputes from its own fields and its stream's
    previous line (streams starting above version 1 are trusted at their first line, `anchored`),
    versions are contiguous, the global order strictly increases; with a digest, the lines up to its
    cursor must reproduce its count and hash. Memory: one entry per stream."""
    decoder = msgspec.json.Decoder(ImportLine)
    check = ExportCheck()
    heads: dict[str, tuple[int, bytes]] = {}
    running = hashlib.sha256()
    at_digest: tuple[int, str] | None = None
    end = (digest.cursor["tx_id"], digest.cursor["position"]) if digest else None
    previous_order = (0, 0)

    def problem(kind: str, message: str, line: ImportLine | None = None, **extra: Any) -> None:
        if len(check.problems) < limit:
            check.problems.append(
                Problem(
                    "export",
                    kind,
                    message,
                    stream_id=line.stream_id if line else None,
                    version=line.stream_version if line else None,
                    event_id=line.event_id if line else None,
                    **extra,
                )
            )

    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            line = decoder.decode(raw)
            stored = bytes.fromhex(line.hash)
        except (msgspec.DecodeError, ValueError) as error:
            problem("bad_line", f"line {number}: not an export line ({error})")
            continue
        order = (line.tx_id, line.position)
        if order <= previous_order:
            problem("out_of_order", f"line {number}: (tx_id, position) {order} after {previous_order}", line)
        previous_order = order
        if end is not None and at_digest is None and order > end:
            at_digest = (check.events, running.hexdigest())
        head = heads.get(line.stream_id)
        if head is None:
            check.streams += 1
            previous = GENESIS_HASH
            if line.stream_version != 1:
                check.anchored += 1
                previous = b""  # unknown: trust this line's hash as the anchor
        else:
            if line.stream_version != head[0] + 1:
                problem(
                    "version_gap",
                    f"line {number}: stream {line.stream_id} version {line.stream_version} follows {head[0]}",
                    line,
                )
            previous = head[1]
        if previous:
            computed = hashlib.sha256(
                previous
                + _canonical(
                    [
                        line.stream_id,
                        line.stream_version,
                        line.event_id,
                        line.event_type,
                        line.schema_version,
                        line.recorded_at_us,
                        line.data,
                        line.metadata,
                    ]
                )
            ).digest()
            if computed != stored:
                problem(
                    "broken_link",
                    f"line {number}: stream {line.stream_id} version {line.stream_version} "
                    f"(event {line.event_id}): recomputed {computed.hex()}, exported {line.hash}",
                    line,
                    expected=computed.hex(),
                    found=line.hash,
                )
        heads[line.stream_id] = (line.stream_version, stored)
        running.update(stored)
        check.events += 1
        check.cursor = {"tx_id": line.tx_id, "position": line.position}
    check.hash = running.hexdigest()
    if digest is not None:
        result = CheckResult("digest")
        events, prefix_hash = at_digest if at_digest is not None else (check.events, check.hash)
        if events != digest.events:
            result.add(
                Problem(
                    "digest",
                    "event_count_changed",
                    f"{events} exported events up to the digest's cursor, the digest recorded {digest.events}",
                    expected=digest.events,
                    found=events,
                ),
                limit,
            )
        if prefix_hash != digest.hash:
            result.add(
                Problem(
                    "digest",
                    "digest_hash_mismatch",
                    f"the exported hashes up to the digest's cursor hash to {prefix_hash}, the digest "
                    f"recorded {digest.hash}",
                    expected=digest.hash,
                    found=prefix_hash,
                ),
                limit,
            )
        result.stats = {"events": events}
        check.digest = result
    return check


SQL_IMPORT_EVENTS = """
INSERT INTO events (position, stream_id, stream_version, event_id, event_type, schema_version, data,
                    metadata, recorded_at, hash, canonical)
OVERRIDING SYSTEM VALUE
SELECT u.position, u.stream_id, u.version, u.event_id, u.event_type, u.schema_version, u.data::jsonb,
       u.metadata::jsonb, u.recorded_at, u.hash, u.canonical
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::int[], $7::text[],
            $8::text[], $9::timestamptz[], $10::bytea[], $11::bytea[])
     AS u(position, stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at,
          hash, canonical)
RETURNING position, tx_id
"""
SQL_IMPORT_CREATE_STREAM = """
INSERT INTO streams (stream_id, stream_type, account, livemode, version, head_hash, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
SQL_IMPORT_ADVANCE_STREAM = """
UPDATE streams SET version = $3, head_hash = $4, recorded_at = $5, updated_at = now()
WHERE stream_id = $1 AND version = $2
"""
SQL_IMPORT_CLAIMS = """
INSERT INTO external_id_claims (account, livemode, external_id, customer_id)
SELECT * FROM unnest($1::text[], $2::boolean[], $3::text[], $4::text[])
"""


@dataclass
class ImportReport:
    events: int = 0
    streams: int = 0
    transactions: int = 0
    seconds: float = 0.0


class ImportError_(RuntimeError):
    pass


async def _aiter(lines: Iterable[bytes] | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(lines, AsyncIterable):
        async for line in lines:
            yield line
    else:
        for line in lines:
            yield line


async def import_jsonl(
    pool: asyncpg.Pool,
    lines: Iterable[bytes] | AsyncIterable[bytes],
    *,
    project: bool = True,
    stream_type: str = "customer",
) -> ImportReport:
    """Load an export into an EMPTY store, verbatim: the same events, documents, positions, recording
    times and hashes (nothing is recomputed: `verify` afterwards proves the import). Only INSERTs on
    `events` (the append-only trigger stays on); stream rows are created and advanced exactly like the
    append path does. Each source transaction (consecutive lines sharing a tx_id) is committed as one
    transaction here, in export order, so the new tx_ids keep the gap-safe order. With `project`, the
    inline projections are applied in the same transactions (as live appends do)."""
    started = time.monotonic()
    report = ImportReport()
    decoder = msgspec.json.Decoder(ImportLine)
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events)"):
            raise ImportError_("the target store already has events: import only into an empty store")
        group: list[ImportLine] = []
        fold = Fold() if project else None
        from ledgerd.service.rebuild import live_schema

        schema = await live_schema(conn)
        async for raw in _aiter(lines):
            if not raw.strip():
                continue
            line = decoder.decode(raw)
            if group and line.tx_id != group[-1].tx_id:
                await _import_transaction(conn, group, fold, schema, stream_type, report)
                group = []
            group.append(line)
        if group:
            await _import_transaction(conn, group, fold, schema, stream_type, report)
        if fold is not None:
            await conn.execute(SQL_IMPORT_CLAIMS, *claims_of_fold(fold))
        if report.events:
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('events', 'position'), (SELECT max(position) FROM events))"
            )
    report.seconds = time.monotonic() - started
    return report


def import_canonical(line: ImportLine) -> bytes:
    """The canonical bytes of an imported event, stored as the append path stores them (verify proves
    them against the imported hashes)."""
    return canonical_bytes(
        stream_id=line.stream_id,
        stream_version=line.stream_version,
        event_id=line.event_id,
        event_type=line.event_type,
        schema_version=line.schema_version,
        recorded_at_us=line.recorded_at_us,
        data=line.data,
        metadata=line.metadata,
    )


def claims_of_fold(fold: Fold) -> list[list[Any]]:
    """The external_id claims the imported customers hold (the live ones that have an external_id)."""
    held = [
        (state.account, state.livemode, state.profile.external_id, customer_id)
        for customer_id, state in fold.states.items()
        if state.exists and not state.deleted and state.profile.external_id is not None
    ]
    return [[claim[i] for claim in held] for i in range(4)]


async def _import_transaction(
    conn: asyncpg.Connection,
    group: list[ImportLine],
    fold: Fold | None,
    schema: str,
    stream_type: str,
    report: ImportReport,
) -> None:
    async with conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = off")  # a crash loses only a rerunnable tail
        by_stream: dict[str, list[ImportLine]] = {}
        for line in group:
            by_stream.setdefault(line.stream_id, []).append(line)
        # The stream rows first: the first write fixes this transaction's xid, as on the append path.
        for stream_id, lines in by_stream.items():
            first, last = lines[0], lines[-1]
            head = bytes.fromhex(last.hash)
            if first.stream_version == 1:
                await conn.execute(
                    SQL_IMPORT_CREATE_STREAM,
                    stream_id,
                    stream_type,
                    first.metadata.get("account", ""),
                    bool(first.metadata.get("livemode", False)),
                    last.stream_version,
                    head,
                    to_timestamp(last.recorded_at_us),
                )
                report.streams += 1
            else:
                status = await conn.execute(
                    SQL_IMPORT_ADVANCE_STREAM,
                    stream_id,
                    first.stream_version - 1,
                    last.stream_version,
                    head,
                    to_timestamp(last.recorded_at_us),
                )
                if status != "UPDATE 1":
                    raise ImportError_(
                        f"stream {stream_id}: version {first.stream_version} does not follow the imported "
                        "stream (an export filtered by --since/--customer cannot be imported)"
                    )
        encode = msgspec.json.encode
        rows = await conn.fetch(
            SQL_IMPORT_EVENTS,
            [line.position for line in group],
            [line.stream_id for line in group],
            [line.stream_version for line in group],
            [line.event_id for line in group],
            [line.event_type for line in group],
            [line.schema_version for line in group],
            [encode(line.data).decode() for line in group],
            [encode(line.metadata).decode() for line in group],
            [to_timestamp(line.recorded_at_us) for line in group],
            [bytes.fromhex(line.hash) for line in group],
            [import_canonical(line) for line in group],
        )
        if fold is not None:
            from ledgerd.service.rebuild import apply_events

            tx_of = {row["position"]: row["tx_id"] for row in rows}
            recorded = [
                RecordedEvent(
                    position=line.position,
                    tx_id=tx_of[line.position],
                    stream_id=line.stream_id,
                    stream_version=line.stream_version,
                    event_id=line.event_id,
                    event_type=line.event_type,
                    schema_version=line.schema_version,
                    data=line.data,
                    metadata=line.metadata,
                    recorded_at_us=line.recorded_at_us,
                    hash=bytes.fromhex(line.hash),
                )
                for line in group
            ]
            await apply_events(conn, schema, fold, recorded)
    report.events += len(group)
    report.transactions += 1


# ---------------------------------------------------------------------------------------------------
# point in time and history (folded from the log, never from the projections)
# ---------------------------------------------------------------------------------------------------

SQL_STREAM = f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version"
SQL_STREAM_AS_OF = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE stream_id = $1 AND stream_version < coalesce(
    (SELECT min(stream_version) FROM events WHERE stream_id = $1 AND recorded_at > $2), 9223372036854775807)
ORDER BY stream_version
"""


def end_of_second(unix_seconds: int) -> int:
    """An `as_of` in unix seconds covers that whole second."""
    return unix_seconds * 1_000_000 + 999_999


def parse_instant(text: str) -> int:
    """ISO 8601 (a `Z` or an offset; a naive time is UTC) or unix seconds -> microseconds since epoch."""
    value = text.strip()
    if value.lstrip("-").isdigit():
        return int(value) * 1_000_000
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return to_microseconds(moment)


async def load_stream(conn: Queryable, customer_id: str, at_us: int | None = None) -> list[RecordedEvent]:
    """The stream, or its longest prefix recorded at or before `at_us`."""
    if at_us is None:
        rows = await conn.fetch(SQL_STREAM, customer_id)
    else:
        rows = await conn.fetch(SQL_STREAM_AS_OF, customer_id, to_timestamp(min(max(at_us, 0), MAX_US)))
    return [row_to_event(row) for row in rows]


@dataclass
class StreamFold:
    """A customer stream folded by the projections' own `project` (through the upcasters)."""

    fold: Fold
    customer_id: str | None
    last_recorded_us: int | None

    @property
    def state(self) -> CustomerState:
        return self.fold.states.get(self.customer_id or "", INITIAL_STATE)

    def transaction_rows(self) -> list[dict[str, Any]]:
        """The customer's ledger entries as rows, in ledger order."""
        return [self.fold.transaction_row(tid) for tid in self.fold.transactions]


def fold_stream(events: Sequence[RecordedEvent]) -> StreamFold:
    fold = Fold()
    fold.apply(events)
    return StreamFold(
        fold,
        events[0].stream_id if events else None,
        events[-1].recorded_at_us if events else None,
    )


def customer_row(state: CustomerState) -> dict[str, Any]:
    """The folded state as a `customers` row, for projections.objects.render_customer."""
    return customers_projection.row(state)


def render_state(state: CustomerState) -> dict[str, Any]:
    if state.deleted:
        return render_deleted_customer(state.customer_id)
    return render_customer(customer_row(state))


def owned(state: CustomerState, account: str, livemode: bool) -> bool:
    return state.exists and state.account == account and state.livemode == livemode


async def customer_as_of(
    conn: Queryable, account: str, livemode: bool, customer_id: str, as_of_unix_s: int
) -> dict[str, Any] | None:
    """The customer object (render_customer's shape) as it was at the end of second `as_of_unix_s`,
    folded from the log (from the head's snapshot or a checkpoint where possible, in a worker thread:
    service/history.py); the deleted stub if it had been deleted by then; None if it did not exist yet
    (or belongs to another account or mode)."""
    state = await customer_state_as_of(conn, account, livemode, customer_id, as_of_unix_s)
    return None if state is None else render_state(state)


async def customer_state_as_of(
    conn: Queryable, account: str, livemode: bool, customer_id: str, as_of_unix_s: int
) -> CustomerState | None:
    """The customer's folded state at the end of second `as_of_unix_s` (see customer_as_of)."""
    head = await history.stream_head(conn, customer_id, account, livemode)
    if head is None:
        return None
    at = to_timestamp(min(max(end_of_second(as_of_unix_s), 0), MAX_US))
    state = await history.state_at(conn, customer_id, await history.version_at(conn, customer_id, at), head)
    return state if owned(state, account, livemode) else None


def fold_chunk(fold: Fold, held: list[RecordedEvent], rows: Sequence[Any], last: bool) -> list[RecordedEvent]:
    """Apply a chunk of a stream (in a worker thread). Fold takes whole commands: the events of the
    chunk's last command are held back for the next chunk, unless this one is the last."""
    events = held + [row_to_event(row) for row in rows]
    keep = len(events)
    if not last:
        while keep > 0 and command_of(events[keep - 1]) == command_of(events[-1]):
            keep -= 1
    fold.apply(events[:keep])
    return events[keep:]


def transactions_then(fold: Fold, customer_id: str, account: str, livemode: bool) -> list[dict[str, Any]]:
    then = StreamFold(fold, customer_id, None)
    if not owned(then.state, account, livemode):
        return []
    return [render_balance_transaction(row) for row in reversed(then.transaction_rows())]


async def balance_transactions_as_of(
    conn: Queryable, account: str, livemode: bool, customer_id: str, as_of_unix_s: int
) -> list[dict[str, Any]]:
    """The customer's balance transactions as they were at the end of second `as_of_unix_s`, newest
    first (as the list endpoint orders them), with descriptions and metadata as of then. Empty when
    the customer did not exist yet; use customer_as_of to tell that apart from "no transactions".
    The log is read a chunk at a time and folded, then rendered, in a worker thread."""
    at = to_timestamp(min(max(end_of_second(as_of_unix_s), 0), MAX_US))
    version = await history.version_at(conn, customer_id, at)
    fold = Fold()
    held: list[RecordedEvent] = []
    start = 0
    while start < version:
        stop = min(version, start + history.FOLD_CHUNK)
        rows = await conn.fetch(history.SQL_RANGE, customer_id, start, stop)
        held = await history.in_fold_thread(fold_chunk, fold, held, rows, stop >= version)
        start = stop
    return await history.in_fold_thread(transactions_then, fold, customer_id, account, livemode)


async def customer_history(
    conn: Queryable, account: str, livemode: bool, customer_id: str
) -> list[dict[str, Any]]:
    """Every entry of the customer's history (service/history.py pages it for the API). Empty when no
    such customer exists for this account and mode."""
    page = await history.history_page(conn, account, livemode, customer_id, limit=2**62)
    return page.entries if page is not None else []


@dataclass
class BalanceAt:
    customer_id: str
    at_us: int
    exists: bool
    deleted: bool
    balance: int
    currency: str | None
    version: int
    entries: int
    account: str | None
    balances: dict[str, int]  # every currency's ledger

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": utc_text(self.at_us)}


async def balance_at(conn: Queryable, customer_id: str, at_us: int) -> BalanceAt:
    """The customer's balance at an instant (microseconds, inclusive), whatever its account: an
    operator's tool (`ledgerd balance-at`)."""
    state = fold_stream(await load_stream(conn, customer_id, at_us)).state
    return BalanceAt(
        customer_id=customer_id,
        at_us=at_us,
        exists=state.exists,
        deleted=state.deleted,
        balance=state.balance,
        currency=state.currency,
        version=state.version,
        entries=state.entries,
        account=state.account or None,
        balances=ledgers(state),
    )


# ---------------------------------------------------------------------------------------------------
# progress on a terminal
# ---------------------------------------------------------------------------------------------------


class TerminalProgress:
    """Plain counters on stderr, redrawn in place at most ~8 times a second; silent unless stderr is a
    terminal (or `force`)."""

    def __init__(self, stream: IO[str] | None = None, force: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or self.stream.isatty()
        self.stage: str | None = None
        self.stage_started = 0.0
        self.last_draw = 0.0
        self.drawn = False

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if stage != self.stage:
            self.finish()
            self.stage, self.stage_started = stage, now
        elif now - self.last_draw < 0.125 and (total is None or done < total):
            return
        self.last_draw = now
        elapsed = max(now - self.stage_started, 1e-6)
        rate = done / elapsed
        if total:
            share = min(done / total, 1.0)
            bar = "#" * int(share * 30)
            text = f"{stage:<8} [{bar:<30}] {done:,}/{total:,} events  {rate:,.0f}/s"
        else:
            text = f"{stage:<8} {done:,} events  {rate:,.0f}/s"
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.enabled and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
