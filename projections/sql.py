"""Named SQL statements kept in .sql files, and projection rows as database values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from operator import itemgetter
from typing import Any

import msgspec

# Rows written for one command, keyed by (table, id): the response is rendered from them.
Rows = dict[tuple[str, str], Any]


def load_queries(text: str) -> dict[str, str]:
    """The statements of a .sql file's text: each begins with a `-- name: X` line."""
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("-- name:"):
            current = queries.setdefault(line.removeprefix("-- name:").strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in queries.items()}


@cache
def queries_of(projection: str) -> dict[str, str]:
    """The named statements of projections/<projection>.sql (its reads), loaded once on first use."""
    text = resources.files("ledgerd.projections").joinpath(f"{projection}.sql").read_text(encoding="utf-8")
    return load_queries(text)


_encode = msgspec.json.encode


def json_text(value: Any) -> str | None:
    """A jsonb column's value as JSON text for the database; None stays SQL NULL."""
    return None if value is None else _encode(value).decode()


def columns_of(
    rows: Iterable[Mapping[str, Any]], columns: tuple[str, ...], jsonb: frozenset[str]
) -> list[tuple[Any, ...]]:
    """Rows as tuples in column order, jsonb columns as JSON text (for COPY)."""
    # one C call per row (a bulk replay turns millions of rows into records); itemgetter of one name
    # returns the value itself, not a 1-tuple
    get = itemgetter(*columns) if len(columns) > 1 else lambda row: (row[columns[0]],)
    documents = [index for index, column in enumerate(columns) if column in jsonb]
    records: list[tuple[Any, ...]] = []
    add = records.append
    for row in rows:
        values = list(get(row))
        for index in documents:
            value = values[index]
            values[index] = None if value is None else _encode(value).decode()
        add(tuple(values))
    return records
