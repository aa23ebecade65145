"""Read models. Each module owns its tables, keeps its SQL beside it, and exposes
`apply(conn, events)`; the same code serves inline writes and replays (`ledger rebuild`)."""

from __future__ import annotations

from projections import balance_transactions, customers

INLINE_PROJECTIONS = (customers, balance_transactions)
PROJECTION_TABLES: tuple[str, ...] = (*customers.TABLES, *balance_transactions.TABLES)
