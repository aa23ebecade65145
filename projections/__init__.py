"""Read models. Each module owns its tables, keeps its SQL beside it, and exposes
`apply(conn, events)`. `apply_all` is the one entry point for live writes and replays alike."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

import asyncpg

from projections import balance_transactions, customers, stripe_events
from projections.sql import Rows
from service.store.base import RecordedEvent

# Order matters: the event feed renders objects from the rows the first two have just written.
INLINE_PROJECTIONS = (customers, balance_transactions, stripe_events)
PROJECTION_TABLES: tuple[str, ...] = (*customers.TABLES, *balance_transactions.TABLES, *stripe_events.TABLES)


def command_of(event: RecordedEvent) -> tuple[int, object]:
    """Which command wrote the event. One transaction usually holds one command; a group commit holds
    several, each from its own HTTP request: (transaction, request id) tells them apart, and the
    handler only groups commands whose request ids differ (service/handler.py)."""
    return event.tx_id, event.metadata.get("request_id")


async def apply_all(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> Rows:
    """Apply events in the order given, one command at a time, every projection in turn, exactly as
    the inline path did when the command committed. Returns the rows the last command's projections
    wrote, so its response needs no second read."""
    rows: Rows = {}
    for _, group in groupby(events, key=command_of):
        batch = list(group)
        rows = {}
        for projection in INLINE_PROJECTIONS:
            await projection.apply(conn, batch, rows)
    return rows
