"""Ledger invariants, in SQL, in `verify`'s snapshot, on the balance ledger and on the log itself:
balance = sum of the customer's entries = the last entry's ending_balance; every entry's ending_balance
= the previous ending_balance in its currency + its amount (from 0): one ledger per currency; the
customer's own currency is fixed by the first one set.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from ledgerd.service.audit.report import DEFAULT_LIMIT, CheckResult, Problem

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


