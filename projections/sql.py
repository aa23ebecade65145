"""Loading the named SQL statements kept beside each projection module."""

from __future__ import annotations

from importlib import resources
from typing import Any

# Rows written by the projections for one command, keyed by (table, id): later projections and the
# response read them here instead of selecting them again.
Rows = dict[tuple[str, str], Any]


def load_queries(sql_file: str) -> dict[str, str]:
    """Statements from a .sql file in this package: each begins with a `-- name: X` line."""
    text = resources.files("projections").joinpath(sql_file).read_text(encoding="utf-8")
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("-- name:"):
            current = queries.setdefault(line.removeprefix("-- name:").strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in queries.items()}
