"""What every event store offers, and the canonical bytes the tamper-evident hash chain is built on.

Canonical bytes of an event (version 1), recomputable by any verifier:

    canonical = JSON array, no whitespace, object keys sorted by code point at every depth,
                strings as UTF-8 with only '"', '\\' and control characters (< 0x20) escaped:
        [stream_id, stream_version, event_id, event_type, schema_version,
         recorded_at_us, data, metadata]

    hash(event) = sha256(hash(previous event in the stream) || canonical)

The first event of a stream chains from 32 zero bytes. `recorded_at_us` is the recording time in whole
microseconds since the Unix epoch; `data` and `metadata` are the stored JSON documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import msgspec

from ledgerd.domain.customer import AnyEvent
from ledgerd.domain.upcasting import REGISTRY as UPCASTERS
from ledgerd.domain.upcasting import to_event

GENESIS_HASH = bytes(32)

_event_decoder = msgspec.json.Decoder(AnyEvent)


class WrongExpectedVersion(Exception):
    """Another writer appended to the stream first; reload and decide again."""

    def __init__(self, stream_id: str, expected: int) -> None:
        super().__init__(f"stream {stream_id}: expected version {expected} is stale")
        self.stream_id = stream_id
        self.expected = expected


class DuplicateKey(Exception):
    """A concurrent writer took a unique key first (an idempotency key, an external_id claim); retry."""


class EventMetadata(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    livemode: bool
    request_id: str | None = None
    idempotency_key: str | None = None
    api_key_id: str | None = None


class StreamHeader(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    stream_type: str
    account: str
    livemode: bool


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    tx_id: int
    stream_id: str
    stream_version: int
    event_id: str
    event_type: str
    schema_version: int
    data: dict[str, Any]  # the stored JSON document, exactly as persisted
    metadata: dict[str, Any]
    recorded_at_us: int
    hash: bytes

    @property
    def event(self) -> AnyEvent:
        """The domain event, in the current shape: older schema versions go through the upcasters
        (domain/upcasting.py); `data` itself stays exactly as stored."""
        return to_event(self.event_type, self.schema_version, self.data)


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


def canonical_bytes(
    *,
    stream_id: str,
    stream_version: int,
    event_id: str,
    event_type: str,
    schema_version: int,
    recorded_at_us: int,
    data: Any,
    metadata: Any,
) -> bytes:
    return msgspec.json.encode(
        [stream_id, stream_version, event_id, event_type, schema_version, recorded_at_us, data, metadata],
        order="sorted",
    )


def chain_hash(previous: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(previous + canonical).digest()


def event_hash(previous: bytes, event: RecordedEvent) -> bytes:
    return chain_hash(
        previous,
        canonical_bytes(
            stream_id=event.stream_id,
            stream_version=event.stream_version,
            event_id=event.event_id,
            event_type=event.event_type,
            schema_version=event.schema_version,
            recorded_at_us=event.recorded_at_us,
            data=event.data,
            metadata=event.metadata,
        ),
    )


class PendingEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event ready to append: its id, type, JSON document and hash inputs."""

    event_id: str
    event_type: str
    schema_version: int
    data: dict[str, Any]
    data_json: bytes


def prepare(event: AnyEvent, event_id: str) -> PendingEvent:
    data_json = msgspec.json.encode(event)
    data = msgspec.json.decode(data_json)
    return PendingEvent(
        event_id=event_id,
        event_type=data["event_type"],
        schema_version=event.schema_version,
        data=data,
        data_json=data_json,
    )


def decode_event(data_json: bytes | str) -> AnyEvent:
    """A stored event document as the current domain event. Fast path: a document already in the
    current shape decodes straight into the struct; anything else goes through the upcasters."""
    try:
        event: AnyEvent = _event_decoder.decode(data_json)
    except msgspec.ValidationError:
        pass
    else:
        if UPCASTERS.is_current(type(event).__name__, event.schema_version):
            return event
    document = msgspec.json.decode(data_json)
    if not isinstance(document, dict):
        raise msgspec.ValidationError("an event document must be a JSON object")
    return to_event(document.get("event_type", ""), document.get("schema_version", 1), document)


class ChainLink(NamedTuple):
    event: PendingEvent
    version: int
    hash: bytes
    canonical: bytes  # the bytes hashed; stored beside the event so verifiers need not rebuild them


def chain_links(
    header: StreamHeader,
    expected_version: int,
    head_hash: bytes,
    pending: Sequence[PendingEvent],
    metadata: EventMetadata,
    recorded_at_us: int,
) -> list[ChainLink]:
    """Version, hash and canonical bytes of each pending event, continuing the stream's chain."""
    metadata_doc = msgspec.to_builtins(metadata)
    links = []
    previous = head_hash
    for offset, item in enumerate(pending, start=1):
        version = expected_version + offset
        canonical = canonical_bytes(
            stream_id=header.stream_id,
            stream_version=version,
            event_id=item.event_id,
            event_type=item.event_type,
            schema_version=item.schema_version,
            recorded_at_us=recorded_at_us,
            data=item.data,
            metadata=metadata_doc,
        )
        previous = chain_hash(previous, canonical)
        links.append(ChainLink(item, version, previous, canonical))
    return links


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
