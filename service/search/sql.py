"""The search language compiled to SQL over the `customers` projection, and the search statement that
runs it (GET /v1/customers/search): newest first by `position`, paged by `next_page` tokens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from ledgerd.service.search.language import Clause, Query, encode_page

SQL_MATCHES = "SELECT * FROM customers WHERE account = $1 AND livemode = $2 AND NOT deleted AND ({where})"
# Eventually consistent, like Stripe's search: a customer written after the cutoff is not found yet.
SQL_WRITTEN_BEFORE = " AND NOT EXISTS (SELECT FROM events e WHERE e.stream_id = customers.id AND e.recorded_at > to_timestamp(${}))"
SQL_BELOW_PAGE = " AND position < ${}"
SQL_PAGE = " ORDER BY position DESC LIMIT ${}"

_COLUMNS: Final[dict[str, str]] = {"email": "email", "name": "name", "phone": "phone"}
_SQL_COMPARISON: Final[dict[str, str]] = {":": "=", "=": "=", ">": ">", "<": "<", ">=": ">=", "<=": "<="}


@dataclass(frozen=True)
class Found:
    rows: list[asyncpg.Record]
    has_more: bool
    next_page: str | None
    total_count: int | None  # every match, whatever the page (when asked for)


async def find(
    pool: asyncpg.Pool,
    account: str,
    livemode: bool,
    query: Query,
    *,
    written_before_s: float | None,
    page: int | None,
    limit: int,
    with_total_count: bool,
) -> Found:
    """One page of the account's customers matching `query`, below the position `page` stands for."""
    where, values = compile(query, first_param=3)
    sql = SQL_MATCHES.format(where=where)
    arguments: list[Any] = [account, livemode, *values]
    if written_before_s is not None:
        arguments.append(written_before_s)
        sql += SQL_WRITTEN_BEFORE.format(len(arguments))
    total_count = None
    if with_total_count:
        total_count = int(await pool.fetchval(sql.replace("SELECT *", "SELECT count(*)", 1), *arguments))
    if page is not None:
        arguments.append(page)
        sql += SQL_BELOW_PAGE.format(len(arguments))
    arguments.append(limit + 1)
    sql += SQL_PAGE.format(len(arguments))
    rows = list(await pool.fetch(sql, *arguments))
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_page = encode_page(rows[-1]["position"]) if has_more and rows else None
    return Found(rows, has_more, next_page, total_count)


def escape_like(text: str) -> str:
    """Escape LIKE's wildcards (and the escape character itself) with a backslash."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def compile(query: Query, first_param: int) -> tuple[str, list[object]]:
    """A SQL boolean expression over ``customers`` for ``query`` and its parameters.

    Every value is bound as a positional parameter, numbered from ``$first_param``; the SQL text depends
    only on the query's shape (fields, operators, negation, null tests), never on the client's values. The
    caller wraps it: ``WHERE account=$1 AND livemode=$2 AND NOT deleted AND (<expr>)``.
    """
    params: list[object] = []

    def bind(value: object) -> str:
        params.append(value)
        return f"${first_param + len(params) - 1}"

    parts = []
    for clause in query.clauses:
        predicate = _predicate(clause, bind)
        # A comparison with a NULL column is NULL, and NOT NULL is still NULL (no match): coalesce so a
        # negated clause matches the customers where the field is missing.
        parts.append(f"(NOT coalesce({predicate}, false))" if clause.negated else f"({predicate})")
    joiner = " OR " if query.combinator == "OR" else " AND "
    return joiner.join(parts), params


def _predicate(clause: Clause, bind: Callable[[object], str]) -> str:
    if clause.field == "created":
        if not isinstance(clause.value, int) or isinstance(clause.value, bool):
            raise ValueError(f"created needs an int, got {clause.value!r}")
        return f"created {_SQL_COMPARISON[clause.op]} {bind(clause.value)}::bigint"
    if clause.field == "metadata":
        if clause.key is None:
            raise ValueError("a metadata clause needs a key")
        if clause.value is None:
            return f"NOT (metadata ? {bind(clause.key)}::text)"
        return f"metadata @> jsonb_build_object({bind(clause.key)}::text, {bind(str(clause.value))}::text)"
    column = _COLUMNS[clause.field]
    if clause.value is None:
        return f"{column} IS NULL"
    if clause.op == "~":
        return f"{column} ILIKE {bind('%' + escape_like(str(clause.value)) + '%')}::text ESCAPE E'\\\\'"
    return f"lower({column}) = lower({bind(str(clause.value))}::text)"
