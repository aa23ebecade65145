"""Schema evolution of stored events: pure upcasters, applied on read, never on disk.

Every stored event carries a `schema_version` (a column of `events`, and the same number inside `data`).
When the shape of an event type changes, its `schema_version` default in `domain.customer` goes up by one
and an upcaster is registered here for the previous version:

    @REGISTRY.upcaster("BalanceAdjusted", from_version=1)
    def balance_adjusted_v1_to_v2(doc: Mapping[str, Any]) -> dict[str, Any]:
        return {**doc, "new_field": derive(doc)}

An upcaster turns the document of version `from_version` into the document of `from_version + 1`; they
chain, so a version-1 event is carried through 1 -> 2 -> ... -> current before msgspec converts it into
the domain event. Upcasters are pure: no I/O, no clock, no randomness, and they never mutate their input
(the registry hands them a private copy anyway). Stored rows are never rewritten: the hash chain covers
the bytes as they were stored, and verification always hashes the stored document, not the upcast one.

The production registry is EMPTY, on purpose: every event type is still at schema_version 1, the first
version ever written, so there is no older shape to translate. The machinery is nevertheless live:
`ledgerd.domain.log.RecordedEvent.event` routes every decode through `to_event`, an
event whose version is newer than this code knows fails loudly (`UnknownSchemaVersion`), and
tests/unit/test_upcasting.py proves with a test-only registry that chains compose, while the golden
fixtures in tests/fixtures/events/ pin every (type, version) that exists today.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgspec

from ledgerd.domain.customer import EVENT_TYPES, AnyEvent

Upcaster = Callable[[Mapping[str, Any]], dict[str, Any]]


class UnknownSchemaVersion(ValueError):
    """An event this code cannot read: an unknown type, a version newer than the code, or a gap in the
    upcaster chain. Reading fails closed rather than guessing."""


def current_versions() -> dict[str, int]:
    """The schema_version each event type is written with today (its struct's default)."""
    versions: dict[str, int] = {}
    for name, cls in EVENT_TYPES.items():
        defaults = {field.name: field.default for field in msgspec.structs.fields(cls)}
        version = defaults.get("schema_version")
        if not isinstance(version, int):
            raise TypeError(f"{name} has no integer schema_version default")
        versions[name] = version
    return versions


class UpcasterRegistry:
    """Upcasters keyed by (event_type, from_version), and the current version of every event type."""

    def __init__(self, current: Mapping[str, int]) -> None:
        self.current: dict[str, int] = dict(current)
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def add(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        target = self.current.get(event_type)
        if target is None:
            raise UnknownSchemaVersion(f"no event type {event_type!r}")
        if not 1 <= from_version < target:
            raise ValueError(
                f"an upcaster for {event_type} v{from_version} must start below the current v{target}"
            )
        if (event_type, from_version) in self._upcasters:
            raise ValueError(f"{event_type} v{from_version} already has an upcaster")
        self._upcasters[(event_type, from_version)] = upcaster

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator form of `add`."""

        def register(function: Upcaster) -> Upcaster:
            self.add(event_type, from_version, function)
            return function

        return register

    def is_current(self, event_type: str, schema_version: int) -> bool:
        return self.current.get(event_type) == schema_version

    def upcast(self, event_type: str, schema_version: int, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """The document in the current shape of its type. Returns `data` itself (no copy) when it is
        already current; otherwise a new document, `data` untouched."""
        target = self.current.get(event_type)
        if target is None:
            raise UnknownSchemaVersion(f"unknown event type {event_type!r}")
        if schema_version == target:
            return data
        if schema_version > target:
            raise UnknownSchemaVersion(
                f"{event_type} v{schema_version} is newer than this code (v{target}); upgrade the service"
            )
        doc: dict[str, Any] = copy.deepcopy(dict(data))
        for version in range(schema_version, target):
            step = self._upcasters.get((event_type, version))
            if step is None:
                raise UnknownSchemaVersion(f"no upcaster for {event_type} v{version} -> v{version + 1}")
            doc = step(doc)
            doc["schema_version"] = version + 1
            doc["event_type"] = event_type
        return doc

    def known_versions(self) -> Iterator[tuple[str, int]]:
        """Every (type, version) this registry can read: the current versions and all those below them
        that an upcaster chain reaches. Golden fixtures must exist for each."""
        for event_type, target in sorted(self.current.items()):
            oldest = target
            while (event_type, oldest - 1) in self._upcasters:
                oldest -= 1
            for version in range(oldest, target + 1):
                yield event_type, version


REGISTRY = UpcasterRegistry(current_versions())


def upcast(
    event_type: str, schema_version: int, data: Mapping[str, Any], registry: UpcasterRegistry = REGISTRY
) -> Mapping[str, Any]:
    return registry.upcast(event_type, schema_version, data)


def to_event(
    event_type: str, schema_version: int, data: Mapping[str, Any], registry: UpcasterRegistry = REGISTRY
) -> AnyEvent:
    """A stored event document (of any known version) as the current domain event."""
    if data.get("event_type") != event_type:
        raise UnknownSchemaVersion(f"a {event_type} row holds a {data.get('event_type')!r} document")
    document = registry.upcast(event_type, schema_version, data)
    event: AnyEvent = msgspec.convert(document, AnyEvent)
    return event
