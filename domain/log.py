"""The log's records, and the canonical bytes the tamper-evident hash chain is built on. Pure: no I/O.

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
from typing import Any, NamedTuple

import msgspec

from ledgerd.domain.customer import AnyEvent
from ledgerd.domain.upcasting import to_event

GENESIS_HASH = bytes(32)


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


_encode_sorted = msgspec.json.Encoder(order="sorted").encode


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
    """The bytes an event's hash covers (the module doc): the one definition, used by the append path,
    the verifiers (chains, an export offline), the import and the tests. The chain check's set-based
    SQL mirrors this layout (service/audit/chains.py, SQL_CHAIN_COLUMNS)."""
    return _encode_sorted(
        [stream_id, stream_version, event_id, event_type, schema_version, recorded_at_us, data, metadata]
    )


# Canonical bytes read back for their documents only (the stored bytes are what the chain covers, so
# replays and exports take `data` and `metadata` from them rather than from the jsonb columns).
_documents = msgspec.json.Decoder(tuple[str, int, str, str, int, int, dict[str, Any], dict[str, Any]]).decode
_raw_documents = msgspec.json.Decoder(tuple[str, int, str, str, int, int, msgspec.Raw, msgspec.Raw]).decode


def canonical_documents(canonical: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """`data` and `metadata` of an event, decoded from its canonical bytes."""
    fields = _documents(canonical)
    return fields[6], fields[7]


def canonical_raw_documents(canonical: bytes) -> tuple[msgspec.Raw, msgspec.Raw]:
    """`data` and `metadata` of an event as the JSON text inside its canonical bytes (not decoded)."""
    fields = _raw_documents(canonical)
    return fields[6], fields[7]


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
