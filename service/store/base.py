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
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
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
    """A uniqueness rule of a read model (e.g. external_id) was hit by a concurrent writer; retry."""


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
    """A stream's current version, chain head and snapshot (the folded state's JSON, if stored)."""

    version: int
    head_hash: bytes
    snapshot: bytes | None = None


class StoreSession(Protocol):
    """One transaction. Everything done through it commits together or not at all."""

    async def lock(self, key: str) -> None:
        """Serialize with every other session locking the same key until this one ends."""

    async def load(self, stream_id: str) -> list[RecordedEvent]: ...

    async def lock_and_read_head(self, lock_key: str, stream_id: str) -> StreamHead | None:
        """`lock(lock_key)`, then the stream's head as committed by the previous lock holder."""

    async def append(
        self,
        header: StreamHeader,
        expected_version: int,
        events: Sequence[PendingEvent],
        metadata: EventMetadata,
        recorded_at_us: int,
        *,
        head_hash: bytes | None = None,
        snapshot: bytes | None = None,
    ) -> list[RecordedEvent]:
        """Append after `expected_version` (0 = new stream), store `snapshot` as the stream's folded
        state, and run the inline projections. `head_hash` is the chain head at `expected_version` when
        the caller already read it. Raises WrongExpectedVersion when the stream moved."""

    async def find_idempotency(self, account: str, livemode: bool, key: str) -> IdempotencyRecord | None: ...

    async def lock_and_find_idempotency(
        self,
        lock_key: str,
        account: str,
        livemode: bool,
        key: str,
        *,
        then_stream: tuple[str, str] | None = None,
    ) -> IdempotencyRecord | None:
        """`lock(lock_key)`, then the key's record as committed by the previous lock holder. With
        `then_stream=(lock_key, stream_id)` and no record found, a store may also do that stream's
        `lock_and_read_head` now (one round trip for both); the session's later call returns it.
        Callers lock a stream under one key only (service/handler.stream_lock_key)."""

    async def save_idempotency(self, record: IdempotencyRecord) -> None: ...

    async def find_customer_by_external_id(
        self, account: str, livemode: bool, external_id: str
    ) -> str | None: ...


class EventStore(Protocol):
    def session(self) -> AbstractAsyncContextManager[StoreSession]: ...

    async def load_stream(
        self, stream_id: str, *, up_to_version: int | None = None, up_to_time_us: int | None = None
    ) -> list[RecordedEvent]: ...

    async def read_all(self, after: GlobalCursor = GlobalCursor(), limit: int = 1000) -> list[RecordedEvent]:
        """Committed events after `after` in the gap-safe global order. Never skips an event that
        commits later with a smaller position: such an event holds back everything behind it."""

    def iterate_all(self, batch: int = 1000) -> AsyncIterator[RecordedEvent]: ...
