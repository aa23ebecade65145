"""A stream's snapshot: its folded state at a version, stored with the stream head so a command
decides without reading the stream's events. Anything not current (another schema, another version)
is a cache miss, never an error."""

from __future__ import annotations

import msgspec

from ledgerd.domain.customer import CustomerState

SNAPSHOT_SCHEMA = 1  # bump when CustomerState changes shape: older snapshots are then ignored


class Snapshot(msgspec.Struct, frozen=True):
    schema: int
    state: CustomerState


def encode_snapshot(state: CustomerState) -> bytes:
    return msgspec.json.encode(Snapshot(SNAPSHOT_SCHEMA, state))


def decode_snapshot(raw: bytes | None, version: int) -> CustomerState | None:
    """The snapshot's state if it is current and of this schema; None means: fold the events."""
    if raw is None:
        return None
    try:
        snapshot = msgspec.json.decode(raw, type=Snapshot)
    except msgspec.DecodeError:  # e.g. a future or past shape: a cache miss, never an error
        return None
    if snapshot.schema != SNAPSHOT_SCHEMA or snapshot.state.version != version:
        return None
    return snapshot.state
