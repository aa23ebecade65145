"""The append stores the exact bytes each event's hash covers: for every event, `canonical` equals the
canonical bytes rebuilt from its columns, and hash = sha256(previous hash || canonical)."""

from __future__ import annotations

import asyncpg
import msgspec

from ledgerd.domain.customer import AdjustBalance, CreateCustomer, ProfilePatch, UpdateCustomer
from ledgerd.domain.log import GENESIS_HASH, canonical_bytes, chain_hash
from ledgerd.domain.values import Profile
from ledgerd.service.commands.handle import execute
from ledgerd.service.commands.requests import RequestContext
from ledgerd.service.store.postgres import PostgresEventStore, to_microseconds

T0 = 1_700_000_000_000_000
CONTEXT = RequestContext(account="acct_canon", livemode=False, occurred_at_us=T0)


async def test_stored_canonical_bytes_are_what_the_chain_hashes(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    customer = "cus_canon1"
    create = CreateCustomer(
        customer_id=customer,
        occurred_at=T0,
        account="acct_canon",
        livemode=False,
        profile=Profile(email="a@x.io", invoice_prefix="CANON"),
    )
    await execute(store, create, CONTEXT)
    await execute(
        store, UpdateCustomer(customer_id=customer, occurred_at=T0, patch=ProfilePatch(name="Ada")), CONTEXT
    )
    adjust = AdjustBalance(
        customer_id=customer, occurred_at=T0, transaction_id="cbtxn_c1", amount=-500, currency="usd"
    )
    await execute(store, adjust, CONTEXT)
    rows = await pool.fetch(
        "SELECT stream_id, stream_version, event_id, event_type, schema_version, recorded_at, data::text AS data,"
        " metadata::text AS metadata, hash, canonical FROM events WHERE stream_id = $1 ORDER BY stream_version",
        customer,
    )
    assert [row["stream_version"] for row in rows] == [1, 2, 3]
    previous = GENESIS_HASH
    for row in rows:
        rebuilt = canonical_bytes(
            stream_id=row["stream_id"],
            stream_version=row["stream_version"],
            event_id=row["event_id"],
            event_type=row["event_type"],
            schema_version=row["schema_version"],
            recorded_at_us=to_microseconds(row["recorded_at"]),
            data=msgspec.json.decode(row["data"]),
            metadata=msgspec.json.decode(row["metadata"]),
        )
        assert bytes(row["canonical"]) == rebuilt
        assert bytes(row["hash"]) == chain_hash(previous, rebuilt)
        previous = bytes(row["hash"])
