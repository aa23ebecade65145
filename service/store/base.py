"""What every event store offers: the read and write of a command, atomic batches, the global log.
The records themselves, and the canonical bytes of the hash chain, are in domain/log.py."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from ledgerd.domain.log import (
    ChainLink,
    EventMetadata,
    RecordedEvent,
    StreamHeader,
)


class WrongExpectedVersion(Exception):
    """Another writer appended to the stream first; reload and decide again."""

    def __init__(self, stream_id: str, expected: int) -> None:
        super().__init__(f"stream {stream_id}: expected version {expected} is stale")
        self.stream_id = stream_id
        self.expected = expected


class DuplicateKey(Exception):
    """A concurrent writer took a unique key first (an idempotency key, an external_id claim); retry."""


class GlobalCursor(msgspec.Struct, frozen=True):
    """A point in the gap-safe global order: every event is (tx_id, position)-ordered."""

    tx_id: int = 0
    position: int = 0


class IdempotencyRecord(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    livemode: bool
    key: str
    method: str
    path: str
    params_hash: bytes
    params: dict[str, Any]
    status: int
    response: bytes
    request_id: str | None = None


class StreamHead(msgspec.Struct, frozen=True, kw_only=True):
    """A stream's current version, chain head, snapshot (the folded state's JSON, if stored) and the
    recording time of its last event (None for heads written before that was kept)."""

    version: int
    head_hash: bytes
    snapshot: bytes | None = None
    recorded_at_us: int | None = None


IdempotencyScope = tuple[str, bool, str]  # account, livemode, key
ClaimKey = tuple[str, bool, str]  # account, livemode, external_id
TransactionKey = tuple[str, str]  # stream (customer), balance transaction id


@dataclass(frozen=True)
class ReadRequest:
    """What a batch of commands decides on, read in one round trip, without locks."""

    streams: tuple[str, ...] = ()
    records: tuple[IdempotencyScope, ...] = ()
    claims: tuple[ClaimKey, ...] = ()  # the claimed customer's head is read as well
    transactions: tuple[TransactionKey, ...] = ()  # the events of one ledger entry


@dataclass
class Reads:
    heads: dict[str, StreamHead | None] = field(default_factory=dict)  # None: no such stream
    records: dict[IdempotencyScope, IdempotencyRecord | None] = field(default_factory=dict)
    claims: dict[ClaimKey, str | None] = field(default_factory=dict)  # -> the customer holding it
    transaction_events: dict[TransactionKey, list[RecordedEvent]] = field(default_factory=dict)
    clock_us: int | None = None  # the database's clock at the read; None: the store has no clock of its own


@dataclass
class Write:
    """Everything one command decided, written in one statement with the rest of its batch. A write
    with a header checks (and, with links, advances) that stream at `expected_version`."""

    header: StreamHeader | None
    expected_version: int
    metadata: EventMetadata
    recorded_at_us: int
    links: list[ChainLink] = field(default_factory=list)
    snapshot: bytes | None = None
    customer: dict[str, Any] | None = None  # its `customers` row after the command
    customer_created: bool = False
    transactions: list[tuple[dict[str, Any], bool]] = field(default_factory=list)  # (row, created)
    feed: list[dict[str, Any]] = field(default_factory=list)
    record: IdempotencyRecord | None = None
    claim: ClaimKey | None = None  # taken for header.stream_id
    release: ClaimKey | None = None  # given up by header.stream_id

    @property
    def new_version(self) -> int:
        return self.links[-1].version if self.links else self.expected_version


@dataclass(frozen=True)
class Appended:
    """Where a batch's events landed: (stream, version) -> position, and the writing transaction."""

    positions: dict[tuple[str, int], int]
    tx_id: int | None


class StoreConnection(Protocol):
    """A connection to the store. Each call is atomic on its own: `write` commits all its writes or,
    raising WrongExpectedVersion or DuplicateKey, none of them (decide again from a new `read`)."""

    async def read(self, request: ReadRequest) -> Reads: ...

    async def load(self, stream_id: str) -> list[RecordedEvent]:
        """Every event of the stream, in order (for a state whose snapshot is missing or stale)."""

    async def write(self, writes: Sequence[Write]) -> Appended: ...

    def serialized(self, keys: Sequence[str]) -> AbstractAsyncContextManager[None]:
        """A transaction holding these locks (e.g. "stream:<id>") until it ends: the reads and the write
        made inside it commit together, and no other session writes those streams meanwhile."""


class EventStore(Protocol):
    def connection(self) -> AbstractAsyncContextManager[StoreConnection]: ...

    async def load_stream(
        self, stream_id: str, *, up_to_version: int | None = None, up_to_time_us: int | None = None
    ) -> list[RecordedEvent]: ...

    async def read_all(self, after: GlobalCursor = GlobalCursor(), limit: int = 1000) -> list[RecordedEvent]:
        """Committed events after `after` in the gap-safe global order. Never skips an event that
        commits later with a smaller position: such an event holds back everything behind it."""
