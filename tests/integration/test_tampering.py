"""Tampering with the log, done the way an insider with the database superuser would: the append-only
trigger disabled (`ALTER TABLE events DISABLE TRIGGER USER` inside the tampering transaction). Every
kind of change must make `verify` fail and name what changed, with a digest taken before where per-stream
chains cannot see it (a stream's tail cut off, a whole stream removed, the global order changed).

Also: drift between the projections and the log is found field by field and repaired by `rebuild`."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerd.domain.log import GENESIS_HASH, canonical_bytes, chain_hash
from ledgerd.service.audit import Digest, VerifyReport, take_digest, verify
from ledgerd.service.rebuild import rebuild
from ledgerd.service.store.postgres import PostgresEventStore, to_microseconds, to_timestamp
from tests.integration.test_audit import History, make_history, settle

ROW_COLUMNS = (
    "position, tx_id, stream_id, stream_version, event_id, event_type, schema_version, data, metadata, "
    "recorded_at, hash"
)


async def tamper(pool: asyncpg.Pool, *statements: tuple[Any, ...]) -> None:
    """Run statements with the append-only trigger off, in one transaction (it is back on after)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        for sql, *args in statements:
            await conn.execute(sql, *args)
        await conn.execute("ALTER TABLE events ENABLE TRIGGER USER")


async def digest_of(pool: asyncpg.Pool) -> Digest:
    await settle(pool)
    async with pool.acquire() as conn:
        return await take_digest(conn)


def kinds(report: VerifyReport, check: str) -> list[str]:
    return [problem.kind for problem in report.check(check).problems]


async def history_for(pool: asyncpg.Pool, seed: int, commands: int = 70) -> History:
    history = await make_history(PostgresEventStore(pool), seed=seed, commands=commands)
    assert (await verify(pool)).ok
    return history


async def event_in_middle(pool: asyncpg.Pool, event_type: str | None = None) -> asyncpg.Record:
    """An event that is neither the first nor the last of its stream."""
    row = await pool.fetchrow(
        """SELECT e.* FROM events e JOIN streams s USING (stream_id)
            WHERE e.stream_version > 1 AND e.stream_version < s.version
              AND ($1::text IS NULL OR e.event_type = $1)
            ORDER BY e.position LIMIT 1 OFFSET 2""",
        event_type,
    )
    assert row is not None
    return row


async def test_the_trigger_is_on_outside_tampering(pool: asyncpg.Pool) -> None:
    await history_for(pool, seed=20, commands=5)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("UPDATE events SET schema_version = 1")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("DELETE FROM events")


# --- one altered event: its own link breaks, and only that one --------------------------------------------

ONE_BYTE_EDITS = {
    "amount digit": "UPDATE events SET data = jsonb_set(data, '{amount}', to_jsonb((data->>'amount')::bigint # 1)) "
    "WHERE event_id = $1",
    "a character of the request id": "UPDATE events SET metadata = jsonb_set(metadata, '{request_id}', "
    "to_jsonb(overlay(metadata->>'request_id' placing 'Z' from 5 for 1))) WHERE event_id = $1",
    "the event type": "UPDATE events SET event_type = 'BalanceAdjustee' WHERE event_id = $1",
    "the schema version": "UPDATE events SET schema_version = 2 WHERE event_id = $1",
    "the recording time": "UPDATE events SET recorded_at = recorded_at + interval '1 microsecond' WHERE event_id = $1",
    "the stored hash": "UPDATE events SET hash = set_byte(hash, 0, get_byte(hash, 0) # 1) WHERE event_id = $1",
}


@pytest.mark.slow
@pytest.mark.parametrize("edit", sorted(ONE_BYTE_EDITS))
async def test_an_altered_event_is_named(pool: asyncpg.Pool, edit: str) -> None:
    await history_for(pool, seed=21)
    victim = await event_in_middle(pool, "BalanceAdjusted")
    await tamper(pool, (ONE_BYTE_EDITS[edit], victim["event_id"]))
    report = await verify(pool)
    assert not report.ok
    problems = report.check("chains").problems
    if edit == "the stored hash":
        # the altered hash no longer recomputes, and the next link no longer chains from it
        assert [(p.kind, p.version) for p in problems] == [
            ("broken_link", victim["stream_version"]),
            ("broken_link", victim["stream_version"] + 1),
        ]
    else:
        assert [(p.kind, p.event_id) for p in problems] == [("broken_link", victim["event_id"])]
    first = report.problems[0]
    assert (first.stream_id, first.version, first.event_id) == (
        victim["stream_id"],
        victim["stream_version"],
        victim["event_id"],
    )
    assert first.expected != first.found and len(first.expected) == 64
    assert victim["stream_id"] in first.message and victim["event_id"] in first.message


# --- removed, swapped, inserted ------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_deleted_event_is_named(pool: asyncpg.Pool) -> None:
    await history_for(pool, seed=22)
    victim = await event_in_middle(pool)
    await tamper(pool, ("DELETE FROM events WHERE event_id = $1", victim["event_id"]))
    report = await verify(pool)
    assert not report.ok
    gap, link = report.check("chains").problems
    assert (gap.kind, gap.stream_id, gap.expected, gap.found) == (
        "version_gap",
        victim["stream_id"],
        victim["stream_version"],
        victim["stream_version"] + 1,
    )
    assert f"version {victim['stream_version']} missing" in gap.message
    assert (link.kind, link.stream_id, link.version) == (
        "broken_link",
        victim["stream_id"],
        victim["stream_version"] + 1,
    )


@pytest.mark.slow
async def test_the_deleted_last_event_of_a_stream_is_named(pool: asyncpg.Pool) -> None:
    await history_for(pool, seed=23)
    stream = await pool.fetchrow(
        "SELECT stream_id, version FROM streams WHERE version >= 3 ORDER BY stream_id LIMIT 1"
    )
    await tamper(
        pool,
        (
            "DELETE FROM events WHERE stream_id = $1 AND stream_version = $2",
            stream["stream_id"],
            stream["version"],
        ),
    )
    report = await verify(pool)
    assert kinds(report, "streams") == ["head_version_mismatch"]
    assert report.check("streams").problems[0].stream_id == stream["stream_id"]


@pytest.mark.slow
async def test_two_events_swapped_within_a_stream(pool: asyncpg.Pool) -> None:
    await history_for(pool, seed=24)
    victim = await event_in_middle(pool)
    sid, version = victim["stream_id"], victim["stream_version"]
    move = "UPDATE events SET stream_version = $3 WHERE stream_id = $1 AND stream_version = $2"
    await tamper(
        pool,
        (move, sid, version, 1_000_000),
        (move, sid, version + 1, version),
        (move, sid, 1_000_000, version + 1),
    )
    report = await verify(pool)
    problems = report.check("chains").problems
    # both swapped events break, and so does the link after them (it chains from the old neighbour)
    assert [(p.kind, p.stream_id, p.version) for p in problems[:2]] == [
        ("broken_link", sid, version),
        ("broken_link", sid, version + 1),
    ]
    assert {p.version for p in problems} <= {version, version + 1, version + 2}


@pytest.mark.slow
async def test_two_events_swapped_in_the_global_order_need_the_digest(pool: asyncpg.Pool) -> None:
    await history_for(pool, seed=25)
    before = await digest_of(pool)
    a, b = await pool.fetch(
        """SELECT DISTINCT ON (stream_id) stream_id, tx_id, position FROM events
           ORDER BY stream_id, position LIMIT 2"""
    )
    assert a["tx_id"] != b["tx_id"]
    # (position is GENERATED ALWAYS: swapping the writing transactions' ids reorders the two)
    move = "UPDATE events SET tx_id = $2 WHERE position = $1"
    await tamper(pool, (move, a["position"], b["tx_id"]), (move, b["position"], a["tx_id"]))
    plain = await verify(pool, drift=False)
    assert plain.ok  # every stream's chain is intact: only the global order changed
    report = await verify(pool, digest=before, drift=False)
    assert not report.ok
    assert kinds(report, "digest") == ["digest_hash_mismatch"]
    assert "reordered" in report.check("digest").problems[0].message


async def insert_forged(
    pool: asyncpg.Pool, *, correct_hash: bool, tx_id: int | None = None, position: int | None = None
) -> dict[str, Any]:
    """Append a forged BalanceAdjusted to a stream (and advance its stream row), as an insider would."""
    head = await pool.fetchrow(
        f"""SELECT {ROW_COLUMNS} FROM events WHERE event_type = 'BalanceAdjusted'
            AND (stream_id, stream_version) IN (SELECT stream_id, version FROM streams)
            ORDER BY position LIMIT 1"""
    )
    assert head is not None
    data = msgspec.json.decode(head["data"])
    data = {
        **data,
        "transaction_id": "cbtxn_forged",
        "amount": -100_000,
        "ending_balance": data["ending_balance"] - 100_000,
    }
    metadata = msgspec.json.decode(head["metadata"])
    version = head["stream_version"] + 1
    recorded_us = to_microseconds(head["recorded_at"]) + 1
    canonical = canonical_bytes(
        stream_id=head["stream_id"],
        stream_version=version,
        event_id="evt_forged",
        event_type="BalanceAdjusted",
        schema_version=1,
        recorded_at_us=recorded_us,
        data=data,
        metadata=metadata,
    )
    digest = chain_hash(bytes(head["hash"]), canonical) if correct_hash else bytes(head["hash"])
    position = (
        position if position is not None else await pool.fetchval("SELECT max(position) + 1 FROM events")
    )
    tx_id = tx_id if tx_id is not None else await pool.fetchval("SELECT max(tx_id) + 1 FROM events")
    await tamper(
        pool,
        (
            """INSERT INTO events (position, tx_id, stream_id, stream_version, event_id, event_type, schema_version,
                                   data, metadata, recorded_at, hash)
               OVERRIDING SYSTEM VALUE
               VALUES ($1, $2, $3, $4, 'evt_forged', 'BalanceAdjusted', 1, $5::jsonb, $6::jsonb, $7, $8)""",
            position,
            tx_id,
            head["stream_id"],
            version,
            msgspec.json.encode(data).decode(),
            head["metadata"],
            to_timestamp(recorded_us),
            digest,
        ),
        (
            "UPDATE streams SET version = $2, head_hash = $3 WHERE stream_id = $1",
            head["stream_id"],
            version,
            digest,
        ),
    )
    return {"stream_id": head["stream_id"], "version": version}


@pytest.mark.slow
async def test_a_forged_event_with_a_wrong_hash_is_named(pool: asyncpg.Pool) -> None:
    await history_for(pool, seed=26)
    forged = await insert_forged(pool, correct_hash=False)
    report = await verify(pool)
    problems = report.check("chains").problems
    assert [(p.kind, p.event_id, p.stream_id) for p in problems] == [
        ("broken_link", "evt_forged", forged["stream_id"])
    ]


@pytest.mark.slow
async def test_a_forged_event_with_a_recomputed_hash_is_named(pool: asyncpg.Pool) -> None:
    """Whoever knows the algorithm can recompute a chain. A forged event in the digested past changes
    the digest; and unless the projections are forged too, the replay names the accounts it moved."""
    await history_for(pool, seed=27)
    before = await digest_of(pool)
    first = await pool.fetchrow("SELECT tx_id, position FROM events ORDER BY tx_id, position LIMIT 1")
    forged = await insert_forged(pool, correct_hash=True, tx_id=first["tx_id"] - 1, position=-1)
    report = await verify(pool, digest=before)
    assert report.check("chains").ok and report.check("streams").ok
    assert "event_count_changed" in kinds(report, "digest")
    count = next(p for p in report.check("digest").problems if p.kind == "event_count_changed")
    assert "1 inserted" in count.message and "already different before the first checkpoint" in count.message
    # placed before its own stream's creation, it does not even replay
    assert [p.kind for p in report.check("drift").problems] == ["replay_failed"]
    # appended after the digest instead, it is beyond any digest's reach; the replay still names the
    # accounts it moved (unless the insider forged the projections too: see the report's limits)
    await tamper(pool, ("DELETE FROM events WHERE event_id = 'evt_forged'",))
    await tamper(
        pool,
        (
            """UPDATE streams SET version = version - 1,
                   head_hash = (SELECT hash FROM events e WHERE e.stream_id = streams.stream_id
                                AND e.stream_version = streams.version - 1)
               WHERE stream_id = $1""",
            forged["stream_id"],
        ),
    )
    assert (await verify(pool, digest=before)).ok
    forged = await insert_forged(pool, correct_hash=True)
    late = await verify(pool, digest=before)
    assert late.check("chains").ok and late.check("streams").ok and late.check("digest").ok
    drifted = {(p.table, p.key) for p in late.check("drift").problems}
    assert ("customers", forged["stream_id"]) in drifted
    assert ("balance_transactions", "cbtxn_forged") in drifted


@pytest.mark.slow
async def test_a_truncated_tail_is_named_by_the_digest(pool: asyncpg.Pool) -> None:
    await history_for(pool, seed=28)
    before = await digest_of(pool)
    stream = await pool.fetchrow(
        "SELECT stream_id, version FROM streams WHERE version >= 4 ORDER BY stream_id LIMIT 1"
    )
    sid, keep = stream["stream_id"], stream["version"] - 2
    await tamper(
        pool,
        ("DELETE FROM events WHERE stream_id = $1 AND stream_version > $2", sid, keep),
        (
            """UPDATE streams SET version = $2,
                   head_hash = (SELECT hash FROM events WHERE stream_id = $1 AND stream_version = $2)
               WHERE stream_id = $1""",
            sid,
            keep,
        ),
    )
    report = await verify(pool, digest=before)
    assert report.check("chains").ok and report.check("streams").ok  # the chain itself is consistent
    count = next(p for p in report.check("digest").problems if p.kind == "event_count_changed")
    assert (count.expected, count.found) == (
        before.events,
        before.events - 2,
    ) and "2 removed" in count.message
    assert "digest_hash_mismatch" in kinds(report, "digest")
    # the replay does not produce the truncated entries any more: named row by row
    assert any((p.key and p.key.startswith("cbtxn_")) or p.key == sid for p in report.check("drift").problems)
    # a thorough insider rebuilds the projections too: then only the digest can tell
    await rebuild(pool)
    assert (await verify(pool)).ok
    again = await verify(pool, digest=before)
    assert not again.ok and {"event_count_changed", "digest_hash_mismatch"} <= set(kinds(again, "digest"))


async def test_a_removed_stream_is_named_by_the_digest(pool: asyncpg.Pool) -> None:
    history = await history_for(pool, seed=29)
    before = await digest_of(pool)
    sid = history.customers[1]
    removed = await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", sid)
    await tamper(
        pool,
        ("DELETE FROM events WHERE stream_id = $1", sid),
        ("DELETE FROM streams WHERE stream_id = $1", sid),
    )
    report = await verify(pool, digest=before)
    digest_problems = {p.kind: p for p in report.check("digest").problems}
    assert digest_problems["stream_count_changed"].found == before.streams - 1
    assert "1 stream(s) removed" in digest_problems["stream_count_changed"].message
    assert digest_problems["event_count_changed"].found == before.events - removed
    assert ("customers", sid) in {(p.table, p.key) for p in report.check("drift").problems}
    await rebuild(pool)  # the thorough insider again
    assert (await verify(pool)).ok
    assert not (await verify(pool, digest=before, drift=False)).ok


async def test_the_removed_digest_position_is_named(pool: asyncpg.Pool) -> None:
    await history_for(pool, seed=30)
    before = await digest_of(pool)
    assert before.last_event is not None
    await tamper(pool, ("DELETE FROM events WHERE event_id = $1", before.last_event["event_id"]))
    report = await verify(pool, digest=before, drift=False)
    moved = next(p for p in report.check("digest").problems if p.kind == "digest_position_changed")
    assert moved.event_id == before.last_event["event_id"]


# --- every time: random single changes -------------------------------------------------------------------

TAMPERS = ("data", "metadata", "delete", "swap_versions", "recorded_at", "event_id", "truncate_and_rewind")


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kind=st.sampled_from(TAMPERS), pick=st.integers(0, 10_000), seed=st.integers(0, 3))
async def test_any_single_tampering_fails_verify(pool: asyncpg.Pool, kind: str, pick: int, seed: int) -> None:
    """Tamper once, verify (with a digest taken before), put the row(s) back exactly, verify again."""
    if not await pool.fetchval("SELECT count(*) FROM events"):
        await make_history(PostgresEventStore(pool), seed=31, commands=60)
    before = await digest_of(pool)
    rows = await pool.fetch(f"SELECT {ROW_COLUMNS} FROM events ORDER BY position")
    row = rows[pick % len(rows)]
    sid, version = row["stream_id"], row["stream_version"]
    stream_rows = [r for r in rows if r["stream_id"] == sid]
    streams_row = await pool.fetchrow("SELECT * FROM streams WHERE stream_id = $1", sid)
    rng = random.Random(pick + seed)
    if kind == "swap_versions" and len(stream_rows) < 2:
        kind = "data"
    if kind == "data":
        key = rng.choice(sorted(msgspec.json.decode(row["data"])))
        statement: tuple[Any, ...] = (
            "UPDATE events SET data = jsonb_set(data, ARRAY[$2], to_jsonb('tampered'::text)) WHERE event_id = $1",
            row["event_id"],
            key,
        )
        await tamper(pool, statement)
    elif kind == "metadata":
        await tamper(
            pool,
            (
                "UPDATE events SET metadata = metadata || '{\"livemode\": true}' WHERE event_id = $1",
                row["event_id"],
            ),
        )
    elif kind == "delete":
        await tamper(pool, ("DELETE FROM events WHERE event_id = $1", row["event_id"]))
    elif kind == "swap_versions":
        other = stream_rows[0] if version != 1 else stream_rows[1]
        move = "UPDATE events SET stream_version = $3 WHERE stream_id = $1 AND stream_version = $2"
        await tamper(
            pool,
            (move, sid, version, 1_000_000),
            (move, sid, other["stream_version"], version),
            (move, sid, 1_000_000, other["stream_version"]),
        )
    elif kind == "recorded_at":
        await tamper(
            pool,
            (
                "UPDATE events SET recorded_at = recorded_at - interval '1 hour' WHERE event_id = $1",
                row["event_id"],
            ),
        )
    elif kind == "event_id":
        await tamper(
            pool, ("UPDATE events SET event_id = event_id || 'x' WHERE event_id = $1", row["event_id"])
        )
    else:  # truncate the stream from this event on, and rewind its stream row to match
        keep = version - 1
        statements: list[tuple[Any, ...]] = [
            ("DELETE FROM events WHERE stream_id = $1 AND stream_version > $2", sid, keep)
        ]
        if keep:
            statements.append(
                (
                    """UPDATE streams SET version = $2,
                           head_hash = (SELECT hash FROM events WHERE stream_id = $1 AND stream_version = $2)
                       WHERE stream_id = $1""",
                    sid,
                    keep,
                )
            )
        else:
            statements.append(("DELETE FROM streams WHERE stream_id = $1", sid))
        await tamper(pool, *statements)
    try:
        report = await verify(pool, digest=before, drift=False)
        assert not report.ok, (kind, report.summary())
        named = {p.stream_id for p in report.problems} | {p.event_id for p in report.problems}
        if kind != "truncate_and_rewind":
            assert sid in named or row["event_id"] in named, (kind, report.summary())
    finally:
        # put everything back exactly as it was
        restore: list[tuple[Any, ...]] = [("DELETE FROM events WHERE stream_id = $1", sid)]
        if await pool.fetchval("SELECT count(*) FROM streams WHERE stream_id = $1", sid) == 0:
            restore.append(
                (
                    """INSERT INTO streams (stream_id, stream_type, account, livemode, version, head_hash)
                       VALUES ($1, $2, $3, $4, $5, $6)""",
                    *[
                        streams_row[c]
                        for c in ("stream_id", "stream_type", "account", "livemode", "version", "head_hash")
                    ],
                )
            )
        else:
            restore.append(
                (
                    "UPDATE streams SET version = $2, head_hash = $3 WHERE stream_id = $1",
                    sid,
                    streams_row["version"],
                    streams_row["head_hash"],
                )
            )
        for original in stream_rows:
            restore.append(
                (
                    f"""INSERT INTO events ({ROW_COLUMNS}) OVERRIDING SYSTEM VALUE
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10, $11)""",
                    *original.values(),
                )
            )
        await tamper(pool, *restore)
    assert (await verify(pool, digest=before, drift=False)).ok


# --- drift: projections that no longer match the log -----------------------------------------------------


async def test_drift_is_named_and_repaired_by_rebuild(pool: asyncpg.Pool) -> None:
    history = await history_for(pool, seed=32)
    victim = history.customers[0]
    txn = await pool.fetchval("SELECT id FROM balance_transactions ORDER BY id LIMIT 1")
    event = await pool.fetchval("SELECT id FROM stripe_events ORDER BY position, seq LIMIT 1")
    await pool.execute("UPDATE customers SET email = 'x@evil.test', name = 'Mallory' WHERE id = $1", victim)
    await pool.execute("DELETE FROM balance_transactions WHERE id = $1", txn)
    await pool.execute(
        """INSERT INTO customers (id, account, livemode, position, version, created, invoice_prefix,
               invoice_settings, next_invoice_sequence, preferred_locales, tax_exempt, metadata, balance)
           VALUES ('cus_forged', 'acct_audit', false, 0, 1, 0, 'X', '{}', 1, '[]', 'none', '{}', 10)"""
    )
    await pool.execute("UPDATE stripe_events SET type = 'customer.deleted' WHERE id = $1", event)
    report = await verify(pool)
    assert not report.ok
    assert report.check("chains").ok and report.check("streams").ok
    drift = {(p.table, p.key): p for p in report.check("drift").problems}
    assert drift[("customers", victim)].kind == "row_drift"
    assert drift[("customers", victim)].fields == ["email", "name"]
    assert drift[("customers", victim)].found == {"email": "x@evil.test", "name": "Mallory"}
    assert drift[("balance_transactions", txn)].kind == "row_missing"
    assert drift[("customers", "cus_forged")].kind == "row_not_in_log"
    assert drift[("stripe_events", event)].fields == ["type"]
    assert len(drift) == 4
    # the forged customer also has no ledger entries behind its balance: the invariants say so too
    assert ("customers", "cus_forged") in {(p.table, p.key) for p in report.check("invariants").problems}
    await rebuild(pool)
    repaired = await verify(pool)
    assert repaired.ok, repaired.summary()


async def test_a_balance_changed_in_the_projection_breaks_the_invariants(pool: asyncpg.Pool) -> None:
    await history_for(pool, seed=33)
    row = await pool.fetchrow(
        "SELECT customer_id, id FROM balance_transactions ORDER BY customer_id, version DESC LIMIT 1"
    )
    await pool.execute(
        "UPDATE balance_transactions SET ending_balance = ending_balance + 1 WHERE id = $1", row["id"]
    )
    report = await verify(pool)
    found = {p.kind for p in report.check("invariants").problems}
    assert {"balance_mismatch", "entry_chain_broken"} <= found
    assert all(p.stream_id == row["customer_id"] for p in report.check("invariants").problems)
    assert [p.fields for p in report.check("drift").problems] == [["ending_balance"]]


async def test_a_currency_change_in_the_log_breaks_the_invariants(pool: asyncpg.Pool) -> None:
    await history_for(pool, seed=34)
    victim = await event_in_middle(pool, "BalanceAdjusted")
    await tamper(
        pool,
        (
            "UPDATE events SET data = jsonb_set(data, '{currency}', '\"eur\"') WHERE event_id = $1",
            victim["event_id"],
        ),
    )
    report = await verify(pool)
    assert "log_currency_not_fixed" in kinds(report, "invariants") or "log_entry_chain_broken" in kinds(
        report, "invariants"
    )
    assert [p.event_id for p in report.check("chains").problems] == [victim["event_id"]]


def test_genesis_is_32_zero_bytes() -> None:
    assert bytes(32) == GENESIS_HASH


async def test_a_second_currencys_ledger_changed_in_the_projection_breaks_the_invariants(
    pool: asyncpg.Pool,
) -> None:
    """One ledger per currency (issue 13): a customer's balance in a currency other than its own is
    checked against that currency's entries, and against a replay."""
    for seed in range(35, 60):  # a history with a customer that has entries in two currencies
        await history_for(pool, seed=seed)
        victim = await pool.fetchrow(
            """SELECT c.id, b.currency FROM customers c JOIN balance_transactions b ON b.customer_id = c.id
               WHERE b.currency <> c.currency ORDER BY c.id LIMIT 1"""
        )
        if victim is not None:
            break
    assert victim is not None, "no history made a second-currency ledger"
    await pool.execute(
        "UPDATE customers SET balances = jsonb_set(balances, ARRAY[$2::text], '1') WHERE id = $1",
        victim["id"],
        victim["currency"],
    )
    report = await verify(pool)
    problems = report.check("invariants").problems
    assert [(p.kind, p.key, p.fields) for p in problems] == [("balance_mismatch", victim["id"], ["balances"])]
    assert victim["currency"] in problems[0].message
    assert [(p.key, p.fields) for p in report.check("drift").problems] == [(victim["id"], ["balances"])]
    await rebuild(pool)
    assert (await verify(pool)).ok
