"""Loading the named SQL statements kept beside each projection module, and the INSERT / UPDATE
statements the projections' Python row logic turns into."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from typing import Any, NamedTuple

import msgspec

# Rows written by the projections for one command, keyed by (table, id): later projections and the
# response read them here instead of selecting them again.
Rows = dict[tuple[str, str], Any]


def load_queries(sql_file: str) -> dict[str, str]:
    """Statements from a .sql file in this package: each begins with a `-- name: X` line."""
    text = resources.files("ledgerd.projections").joinpath(sql_file).read_text(encoding="utf-8")
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("-- name:"):
            current = queries.setdefault(line.removeprefix("-- name:").strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in queries.items()}


# A JSON null in a jsonb column (None is SQL NULL). Rendered and encoded as `null`.
JSON_NULL = msgspec.Raw(b"null")
_encode = msgspec.json.encode


def json_text(value: Any) -> str | None:
    """A jsonb column's value as JSON text for the database; None stays SQL NULL."""
    return None if value is None else _encode(value).decode()


class Coalesce(NamedTuple):
    """An assignment that sets the column to `value` only where it is NULL."""

    value: Any


def assign(row: Mapping[str, Any], assignments: Mapping[str, Any]) -> dict[str, Any]:
    """`assignments` applied to a row in memory: what the UPDATE from `statement.update` does."""
    updated = dict(row)
    for name, value in assignments.items():
        if isinstance(value, Coalesce):
            if updated[name] is None:
                updated[name] = value.value
        else:
            updated[name] = value
    return updated


class statement:
    """SQL text for a row (column -> value) or a set of assignments; cached per shape."""

    @staticmethod
    @lru_cache(maxsize=64)
    def insert_sql(table: str, columns: tuple[str, ...], jsonb: frozenset[str]) -> str:
        values = ", ".join(f"${n}::jsonb" if c in jsonb else f"${n}" for n, c in enumerate(columns, start=1))
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) RETURNING *"

    @staticmethod
    def insert(table: str, row: Mapping[str, Any], jsonb: frozenset[str]) -> tuple[str, list[Any]]:
        """`INSERT INTO table (...) VALUES (...) RETURNING *` and its values."""
        columns = tuple(row)
        values = [json_text(value) if name in jsonb else value for name, value in row.items()]
        return statement.insert_sql(table, columns, jsonb), values

    @staticmethod
    def update(table: str, assignments: Mapping[str, Any], jsonb: frozenset[str]) -> tuple[str, list[Any]]:
        """`UPDATE table SET ... WHERE id = $1 RETURNING *` and its values after the id (a plain
        SELECT of the row when there is nothing to assign)."""
        shape = tuple((name, isinstance(value, Coalesce)) for name, value in assignments.items())
        values = [
            json_text(value) if name in jsonb else value
            for name, value in (
                (name, value.value if isinstance(value, Coalesce) else value)
                for name, value in assignments.items()
            )
        ]
        return _update_sql(table, shape, jsonb), values


@lru_cache(maxsize=256)
def _update_sql(table: str, shape: tuple[tuple[str, bool], ...], jsonb: frozenset[str]) -> str:
    if not shape:
        return f"SELECT * FROM {table} WHERE id = $1"
    sets = []
    for n, (name, coalesce) in enumerate(shape, start=2):
        param = f"${n}::jsonb" if name in jsonb else f"${n}"
        sets.append(f"{name} = coalesce({name}, {param})" if coalesce else f"{name} = {param}")
    return f"UPDATE {table} SET {', '.join(sets)} WHERE id = $1 RETURNING *"


def columns_of(
    rows: Iterable[Mapping[str, Any]], columns: tuple[str, ...], jsonb: frozenset[str]
) -> list[tuple[Any, ...]]:
    """Rows as tuples in column order, jsonb columns as JSON text (for COPY)."""
    return [tuple(json_text(row[c]) if c in jsonb else row[c] for c in columns) for row in rows]
