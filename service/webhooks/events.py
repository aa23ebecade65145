"""`pending_webhooks` and `delivery_success` of the Events API, computed when read from the delivery rows
(the feed projection stays a pure function of the log, so a rebuild stays byte-identical)."""

from __future__ import annotations

from typing import Any

import asyncpg

# Deliveries that have not succeeded: pending (retrying, or waiting for a disabled endpoint) or failed (the
# Events list's `delivery_success` filter says the same in projections/stripe_events.sql).
NOT_DELIVERED = "('pending', 'failed')"
SQL_PENDING = f"""
SELECT event_id, count(*) AS pending FROM webhook_deliveries
WHERE event_id = ANY ($1::text[]) AND state IN {NOT_DELIVERED}
GROUP BY event_id
"""


async def with_pending(pool: asyncpg.Pool, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not events:
        return events
    rows = await pool.fetch(SQL_PENDING, [event["id"] for event in events])
    pending = {row["event_id"]: row["pending"] for row in rows}
    for event in events:
        event["pending_webhooks"] = pending.get(event["id"], 0)
    return events
