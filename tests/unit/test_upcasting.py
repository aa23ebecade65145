"""Schema evolution: golden fixtures of every (type, version) keep loading through every decode path; the
upcaster registry composes chains, never mutates stored documents, and fails closed on what it cannot
read. The production registry is empty (every type is at v1); chains are shown with a test-only registry.

Also pinned here: the canonical bytes and hash chain of a golden stream (tests/fixtures/chain), checked
with the service's code AND with an independent re-implementation an auditor could write."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerd.domain.customer import EVENT_TYPES, BalanceAdjusted
from ledgerd.domain.log import GENESIS_HASH, RecordedEvent, canonical_bytes, event_hash
from ledgerd.domain.upcasting import (
    REGISTRY,
    UnknownSchemaVersion,
    UpcasterRegistry,
    current_versions,
    to_event,
    upcast,
)
from ledgerd.service.audit import verify_export

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOLDEN = sorted((FIXTURES / "events").glob("*.v*.json"))


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def as_json(event: Any) -> Any:
    """The event as JSON values (tuples become lists), comparable with a fixture's `expected`."""
    return msgspec.json.decode(msgspec.json.encode(event))


def recorded(document: Mapping[str, Any]) -> RecordedEvent:
    return RecordedEvent(
        position=1,
        tx_id=1,
        stream_id=document["data"]["customer_id"],
        stream_version=1,
        event_id="evt_fixture",
        event_type=document["event_type"],
        schema_version=document["schema_version"],
        data=document["data"],
        metadata={"account": "acct_fixture", "livemode": False},
        recorded_at_us=0,
        hash=bytes(32),
    )


# --- golden fixtures -----------------------------------------------------------------------------------


def test_every_readable_type_and_version_has_a_golden_fixture() -> None:
    found = {(load(path)["event_type"], load(path)["schema_version"]) for path in GOLDEN}
    assert found == set(REGISTRY.known_versions())
    assert {event_type for event_type, _ in found} == set(EVENT_TYPES)
    for path in GOLDEN:
        document = load(path)
        assert path.name == f"{document['event_type']}.v{document['schema_version']}.json"


@pytest.mark.parametrize("path", GOLDEN, ids=[path.stem for path in GOLDEN])
def test_golden_fixture_loads_through_every_path(path: Path) -> None:
    document = load(path)
    before = json.dumps(document["data"], sort_keys=True)
    expected = document["expected"]
    via_registry = to_event(document["event_type"], document["schema_version"], document["data"])
    via_recorded = recorded(document).event
    for event in (via_registry, via_recorded):
        assert type(event).__name__ == document["event_type"]
        assert as_json(event) == expected
        assert event.schema_version == current_versions()[document["event_type"]]
    assert json.dumps(document["data"], sort_keys=True) == before  # the stored document is untouched


def test_the_production_registry_is_empty_but_wired() -> None:
    """Honest state: no event type has changed shape yet, so there is nothing to upcast. When one does,
    the fixture test above demands a golden file for the new version next to the old one."""
    assert set(REGISTRY.current) == set(EVENT_TYPES)
    assert set(REGISTRY.current.values()) == {1}
    assert not REGISTRY._upcasters
    data = load(FIXTURES / "events" / "BalanceAdjusted.v1.json")["data"]
    assert upcast("BalanceAdjusted", 1, data) is data  # current documents pass through, not copied


def test_reading_fails_closed() -> None:
    data = load(FIXTURES / "events" / "BalanceAdjusted.v1.json")["data"]
    with pytest.raises(UnknownSchemaVersion, match="newer than this code"):
        to_event("BalanceAdjusted", 2, data)
    with pytest.raises(UnknownSchemaVersion, match="unknown event type"):
        upcast("CustomerMerged", 1, data)
    with pytest.raises(UnknownSchemaVersion, match="holds a 'BalanceAdjusted' document"):
        to_event("CustomerDeleted", 1, data)


# --- chains, with a test-only registry -----------------------------------------------------------------
# A HYPOTHETICAL history of BalanceAdjusted, invented for this test only (no such versions were ever
# stored): v1 named the amount `amount_minor` and had no `type`; v2 renamed it to `amount`; v3 (= the
# current struct's shape) added `type`, defaulting to "adjustment" for old entries.


def hypothetical_registry() -> UpcasterRegistry:
    registry = UpcasterRegistry({**current_versions(), "BalanceAdjusted": 3})

    @registry.upcaster("BalanceAdjusted", from_version=1)
    def rename_amount(doc: Mapping[str, Any]) -> dict[str, Any]:
        result = {key: value for key, value in doc.items() if key != "amount_minor"}
        result["amount"] = doc["amount_minor"]
        return result

    @registry.upcaster("BalanceAdjusted", from_version=2)
    def add_type(doc: Mapping[str, Any]) -> dict[str, Any]:
        return {"type": "adjustment", **doc}

    return registry


V1 = {
    "event_type": "BalanceAdjusted",
    "schema_version": 1,
    "customer_id": "cus_1",
    "transaction_id": "cbtxn_1",
    "amount_minor": -500,
    "currency": "usd",
    "ending_balance": -500,
    "created": 1_700_000_000,
}


def test_an_upcaster_chain_composes() -> None:
    registry = hypothetical_registry()
    assert list(version for kind, version in registry.known_versions() if kind == "BalanceAdjusted") == [
        1,
        2,
        3,
    ]
    original = json.dumps(V1, sort_keys=True)
    event = to_event("BalanceAdjusted", 1, V1, registry)
    assert json.dumps(V1, sort_keys=True) == original  # never mutated
    assert isinstance(event, BalanceAdjusted)
    assert (event.amount, event.type, event.schema_version) == (-500, "adjustment", 3)
    # v2 documents take only the second step; v1 -> v3 equals v1 -> v2 -> v3
    v2 = registry.upcast("BalanceAdjusted", 1, V1)
    v2 = {**dict(v2), "schema_version": 2}
    v2.pop("type")
    assert dict(registry.upcast("BalanceAdjusted", 2, v2)) == dict(registry.upcast("BalanceAdjusted", 1, V1))
    # other types are untouched by it
    created = load(FIXTURES / "events" / "CustomerCreated.v1.json")
    assert as_json(to_event("CustomerCreated", 1, created["data"], registry)) == created["expected"]


def test_registration_rules() -> None:
    registry = hypothetical_registry()
    with pytest.raises(ValueError, match="already has an upcaster"):
        registry.add("BalanceAdjusted", 1, dict)
    with pytest.raises(ValueError, match="must start below"):
        registry.add("BalanceAdjusted", 3, dict)
    with pytest.raises(UnknownSchemaVersion):
        registry.add("NoSuchEvent", 1, dict)
    gap = UpcasterRegistry({"BalanceAdjusted": 3})
    gap.add("BalanceAdjusted", 2, dict)
    with pytest.raises(UnknownSchemaVersion, match="no upcaster for BalanceAdjusted v1 -> v2"):
        gap.upcast("BalanceAdjusted", 1, V1)


# --- the hash chain, pinned ----------------------------------------------------------------------------


def independent_hash(previous: bytes, line: Mapping[str, Any]) -> bytes:
    """What an auditor writes from the README alone: Python's json module, no service code."""
    canonical = json.dumps(
        [
            line["stream_id"],
            line["stream_version"],
            line["event_id"],
            line["event_type"],
            line["schema_version"],
            line["recorded_at_us"],
            line["data"],
            line["metadata"],
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    return hashlib.sha256(previous + canonical).digest()


def test_the_golden_stream_still_verifies() -> None:
    raw = (FIXTURES / "chain" / "golden_stream.jsonl").read_bytes().splitlines()
    lines = [json.loads(line) for line in raw]
    assert {line["event_type"] for line in lines} == set(EVENT_TYPES)
    previous = GENESIS_HASH
    for line in lines:
        stored = bytes.fromhex(line["hash"])
        as_recorded = RecordedEvent(**{**line, "hash": stored})
        assert event_hash(previous, as_recorded) == stored
        assert independent_hash(previous, line) == stored
        previous = stored
    assert previous.hex() == "f712c3674d5ed8613cb47f6df775dc58140a6173288e14596990519ab76a562f"
    check = verify_export(raw)
    assert check.ok and check.events == 5 and check.streams == 1


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(data=JSON, metadata=JSON)
def test_canonical_bytes_equal_pythons_sorted_compact_json(data: Any, metadata: Any) -> None:
    """So the README's recipe (json.dumps, sort_keys, compact separators, ensure_ascii=False) is exact
    for every document the log can hold (no floats; PostgreSQL text holds no NUL)."""
    ours = canonical_bytes(
        stream_id="cus_x",
        stream_version=3,
        event_id="evt_x",
        event_type="BalanceAdjusted",
        schema_version=1,
        recorded_at_us=1_790_000_000_123_456,
        data=data,
        metadata=metadata,
    )
    theirs = json.dumps(
        ["cus_x", 3, "evt_x", "BalanceAdjusted", 1, 1_790_000_000_123_456, data, metadata],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    assert ours == theirs
