"""Export, and the offline check of an export. `export_jsonl` streams the log, in the gap-safe global
order, as JSON Lines (one `ExportLine` a line: the stored documents, position, tx_id and hash);
`verify_export` checks such a file without a database: every line's hash recomputes from its own fields
and its stream's previous line, and with a digest (service/audit/digest.py) the lines up to its cursor
reproduce its count and hash. service/audit/importer.py loads an export into an empty store.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

import asyncpg
import msgspec

from ledgerd.domain.log import GENESIS_HASH, canonical_bytes, canonical_raw_documents, chain_hash
from ledgerd.service.audit.digest import SQL_HORIZON, Digest
from ledgerd.service.audit.report import DEFAULT_LIMIT, CheckResult, Problem, Progress
from ledgerd.service.store.base import GlobalCursor
from ledgerd.service.store.postgres import to_timestamp

EXPORT_BATCH = 20_000


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


class ImportLine(msgspec.Struct, kw_only=True):
    """An export line decoded: its documents as dicts (what verify_export and the import read)."""

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

    def canonical(self) -> bytes:
        """The canonical bytes of the exported event, rebuilt from the line: what its hash covers."""
        return canonical_bytes(
            stream_id=self.stream_id,
            stream_version=self.stream_version,
            event_id=self.event_id,
            event_type=self.event_type,
            schema_version=self.schema_version,
            recorded_at_us=self.recorded_at_us,
            data=self.data,
            metadata=self.metadata,
        )


# Each line is an ExportLine encoded by msgspec, its documents taken from the canonical bytes (what the
# hash covers: no jsonb -> text conversion in the server, ~5 us per event), from the columns only for
# events appended before migration 0006. The server sends the columns as they are: rendering the line's
# head in SQL (to_json, concatenation) cost it more than reading the event (bench/AUDIT_RESULTS.md).
SQL_EXPORT_BATCH = """
SELECT position, tx_id, stream_id, stream_version, event_id, event_type, schema_version,
       (extract(epoch FROM recorded_at) * 1000000)::bigint, hash, canonical,
       CASE WHEN canonical IS NULL THEN data::text END, CASE WHEN canonical IS NULL THEN metadata::text END
FROM events
WHERE (tx_id, position) > ($1, $2) AND tx_id < $3 {filters}
ORDER BY tx_id, position LIMIT $4
"""
_encode_lines = msgspec.json.Encoder().encode_lines


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

    documents = canonical_raw_documents

    def encode(rows: list[Any]) -> bytes:
        lines: list[ExportLine] = []
        add, update = lines.append, running.update
        for row in rows:  # the columns of SQL_EXPORT_BATCH, by index
            stored, canonical = row[8], row[9]
            update(stored)
            if canonical is not None:
                data, meta = documents(canonical)
            else:
                data, meta = msgspec.Raw(row[10].encode()), msgspec.Raw(row[11].encode())
            add(
                ExportLine(
                    position=row[0],
                    tx_id=row[1],
                    stream_id=row[2],
                    stream_version=row[3],
                    event_id=row[4],
                    event_type=row[5],
                    schema_version=row[6],
                    recorded_at_us=row[7],
                    data=data,
                    metadata=meta,
                    hash=stored.hex(),
                )
            )
        return _encode_lines(lines)

    # Pipelined: the server produces the next batch while this one is encoded and written.
    pending: asyncio.Future[Any] | None = asyncio.ensure_future(
        conn.fetch(query, 0, 0, horizon, batch, *extra)
    )
    try:
        while pending is not None:
            rows = await pending
            pending = None
            if len(rows) == batch:
                cursor = GlobalCursor(rows[-1][1], rows[-1][0])
                pending = asyncio.ensure_future(
                    conn.fetch(query, cursor.tx_id, cursor.position, horizon, batch, *extra)
                )
            if rows:
                out.write(encode(rows))
                cursor = GlobalCursor(rows[-1][1], rows[-1][0])
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
            computed = chain_hash(previous, line.canonical())
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
