"""Digests: a short document that pins the log's prefix, so a later `verify --digest` catches what
per-stream chains cannot: a whole stream removed, a stream's tail cut off (with its stream row rewound),
events reordered in the global log, a forged event inserted into the past.

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
a digest offline (service/audit/export.py, `verify_export`).
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import asyncpg
import msgspec

from ledgerd.service.audit.report import DEFAULT_LIMIT, CheckResult, Problem, Progress
from ledgerd.service.store.base import GlobalCursor
from ledgerd.service.store.postgres import utc_text

DIGEST_FORMAT = "ledger-digest/1"
MAX_CHECKPOINTS = 32
DIGEST_BATCH = 100_000

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
    taken = time.time_ns() // 1000
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


