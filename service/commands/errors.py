"""Failures of running a command that are not the domain's own rejections."""

from __future__ import annotations


class IdempotencyConflict(Exception):
    """The key was used before with different parameters (or on another endpoint)."""

    def __init__(self, key: str, differences: list[str], other_path: str | None = None) -> None:
        self.key = key
        self.differences = differences
        self.other_path = other_path
        super().__init__(f"idempotency key {key!r} reused with different parameters: {differences}")


class ConflictRetriesExhausted(Exception):
    """Contention did not settle within the bounded number of attempts; the client may retry."""
