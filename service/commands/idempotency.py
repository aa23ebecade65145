"""Idempotency keys: what a request is compared on, and how a recorded result is replayed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import msgspec

from ledgerd.service.commands.errors import IdempotencyConflict
from ledgerd.service.store.base import IdempotencyRecord


@dataclass(frozen=True)
class IdempotencyRequest:
    key: str
    method: str
    path: str
    params: dict[str, Any]

    @cached_property
    def params_hash(self) -> bytes:
        return hashlib.sha256(canonical_params(self.method, self.path, self.params)).digest()


def canonical_params(method: str, path: str, params: dict[str, Any]) -> bytes:
    return msgspec.json.encode([method, path, params], order="sorted")


def differing_params(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    names = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}[{key}]" if prefix else key
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names.extend(differing_params(a, b, path))
        elif a != b:
            names.append(path)
    return names


def check_replay(record: IdempotencyRecord, request: IdempotencyRequest) -> None:
    """A recorded result may be replayed only for the same endpoint and the same parameters."""
    if record.method != request.method or record.path != request.path:
        raise IdempotencyConflict(request.key, [], other_path=record.path)
    if record.params_hash != request.params_hash:
        raise IdempotencyConflict(request.key, differing_params(record.params, request.params))
