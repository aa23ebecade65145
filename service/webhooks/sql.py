"""The statements in webhooks.sql, loaded once on first use."""

from __future__ import annotations

from functools import cache
from importlib import resources

from ledgerd.projections.sql import load_queries


@cache
def statements() -> dict[str, str]:
    text = resources.files("ledgerd.service.webhooks").joinpath("webhooks.sql").read_text(encoding="utf-8")
    return load_queries(text)
