"""Import: an export (service/audit/export.py) loaded into an EMPTY store, verbatim (`import_jsonl`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from ledgerd.domain.log import RecordedEvent
from ledgerd.projections import Fold
from ledgerd.service.audit.export import ImportLine
from ledgerd.service.rebuild import apply_events, live_schema
from ledgerd.service.store.postgres import to_timestamp

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
            # stored as the append path stores them (verify proves them against the imported hashes)
            [line.canonical() for line in group],
        )
        if fold is not None:
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

