"""Tampering with the stored canonical bytes (migration 0006) and their agreement with the columns.

`verify` checks the chain set-based from `events.canonical` and proves separately that the columns agree
with those bytes; a stream failing either is walked row by row from its columns. So an edit of `data`
alone, of `canonical` alone, or of both must be named; events without canonical bytes (appended before
the migration) are checked from their columns as before."""

from __future__ import annotations

import asyncpg
import pytest

from ledgerd.service.audit import verify
from tests.integration.test_tampering import event_in_middle, history_for, tamper


async def test_altered_canonical_bytes_are_named(pool: asyncpg.Pool) -> None:
    await history_for(pool, seed=40)
    victim = await event_in_middle(pool, "BalanceAdjusted")
    # same length, one byte different, still valid JSON: "amount" -> "amounu"
    await tamper(
        pool,
        (
            "UPDATE events SET canonical = convert_to(replace(convert_from(canonical, 'UTF8'), "
            "'\"amount\"', '\"amounu\"'), 'UTF8') WHERE event_id = $1",
            victim["event_id"],
        ),
    )
    report = await verify(pool, drift=False)
    assert not report.ok
    problems = report.check("chains").problems
    assert [(p.kind, p.event_id) for p in problems] == [("canonical_mismatch", victim["event_id"])]
    assert victim["stream_id"] in problems[0].message


async def test_canonical_bytes_that_are_not_json_are_named(pool: asyncpg.Pool) -> None:
    await history_for(pool, seed=41)
    victim = await event_in_middle(pool)
    await tamper(
        pool, ("UPDATE events SET canonical = '\\xff00fe'::bytea WHERE event_id = $1", victim["event_id"])
    )
    report = await verify(pool, drift=False)
    assert [(p.kind, p.event_id) for p in report.check("chains").problems] == [
        ("canonical_mismatch", victim["event_id"])
    ]


async def test_canonical_and_hash_rewritten_to_match_still_break_the_chain(pool: asyncpg.Pool) -> None:
    """A forger who rewrites the canonical bytes and recomputes the event's hash: the columns no longer
    hash to it, and the next link no longer chains from it."""
    await history_for(pool, seed=42)
    victim = await event_in_middle(pool, "BalanceAdjusted")
    forged = "convert_to(replace(convert_from(canonical, 'UTF8'), '\"amount\":', '\"amount\":1'), 'UTF8')"
    await tamper(
        pool,
        (
            f"""UPDATE events e SET canonical = {forged},
                   hash = sha256(coalesce((SELECT p.hash FROM events p WHERE p.stream_id = e.stream_id
                                            AND p.stream_version = e.stream_version - 1),
                                          '\\x{"00" * 32}'::bytea) || {forged})
                WHERE event_id = $1""",
            victim["event_id"],
        ),
    )
    report = await verify(pool, drift=False)
    assert [(p.kind, p.version) for p in report.check("chains").problems] == [
        ("broken_link", victim["stream_version"]),
        ("broken_link", victim["stream_version"] + 1),
    ]


async def test_data_and_canonical_disagreeing_by_one_field_is_named(pool: asyncpg.Pool) -> None:
    """The metadata column altered, the canonical bytes (and so the chain) intact."""
    await history_for(pool, seed=43)
    victim = await event_in_middle(pool)
    await tamper(
        pool,
        (
            "UPDATE events SET metadata = metadata || '{\"livemode\": true}'::jsonb WHERE event_id = $1",
            victim["event_id"],
        ),
    )
    report = await verify(pool, drift=False)
    problems = report.check("chains").problems
    assert [(p.kind, p.event_id) for p in problems] == [("broken_link", victim["event_id"])]


async def test_events_without_canonical_bytes_are_checked_from_their_columns(pool: asyncpg.Pool) -> None:
    """A log appended before migration 0006 (canonical NULL): verify passes, walking every stream, and
    still names an altered event."""
    history = await history_for(pool, seed=44)
    await tamper(pool, ("UPDATE events SET canonical = NULL",))
    clean = await verify(pool, drift=False)
    assert clean.ok, clean.summary()
    chains = clean.check("chains")
    assert chains.stats["events"] == history.events
    assert chains.stats["streams"] == chains.stats["walked_streams"] == len(history.customers)
    victim = await event_in_middle(pool, "BalanceAdjusted")
    await tamper(
        pool,
        (
            "UPDATE events SET data = jsonb_set(data, '{amount}', to_jsonb((data->>'amount')::bigint + 1)) "
            "WHERE event_id = $1",
            victim["event_id"],
        ),
    )
    report = await verify(pool, drift=False)
    assert [(p.kind, p.event_id) for p in report.check("chains").problems] == [
        ("broken_link", victim["event_id"])
    ]


async def test_a_clean_log_walks_no_stream(pool: asyncpg.Pool) -> None:
    history = await history_for(pool, seed=45)
    chains = (await verify(pool, drift=False)).check("chains")
    assert chains.ok
    assert chains.stats["walked_streams"] == 0
    assert (chains.stats["events"], chains.stats["streams"]) == (history.events, len(history.customers))


def test_derived_event_ids_are_stable() -> None:
    """Ids already in stored feeds: the derivation must never change (values from the first version)."""
    from ledgerd.projections.stripe_events import derived_event_id

    kind = "customer_balance_transaction.created"
    assert derived_event_id("evt_abc", kind) == "evt_o2XPkKNsgSLYHlpf1V1TTzZF"
    assert derived_event_id("evt_1OtXyz0123456789abcdefgh", kind) == "evt_MbDGvY8WpLeitQuS2vcDIkJ8"


@pytest.mark.slow
async def test_a_log_partly_without_canonical_bytes(pool: asyncpg.Pool) -> None:
    """Streams holding events from before migration 0006 are walked; the others are checked set-based;
    an edit is named in either kind."""
    history = await history_for(pool, seed=46)
    await tamper(
        pool,
        ("UPDATE events SET canonical = NULL WHERE stream_version <= 2 AND hashtext(stream_id) % 2 = 0",),
    )
    chains = (await verify(pool, drift=False)).check("chains")
    assert chains.ok, chains.problems
    assert (chains.stats["events"], chains.stats["streams"]) == (history.events, len(history.customers))
    assert 0 < chains.stats["walked_streams"] < len(history.customers)
    legacy = await pool.fetchrow(
        "SELECT event_id FROM events WHERE canonical IS NULL AND event_type = 'BalanceAdjusted' LIMIT 1"
    )
    current = await pool.fetchrow(
        """SELECT event_id FROM events WHERE event_type = 'BalanceAdjusted' AND stream_id NOT IN
           (SELECT stream_id FROM events WHERE canonical IS NULL) LIMIT 1"""
    )
    assert legacy is not None and current is not None
    edit = "UPDATE events SET data = jsonb_set(data, '{description}', '\"edited\"') WHERE event_id = $1"
    await tamper(pool, (edit, legacy["event_id"]), (edit, current["event_id"]))
    problems = (await verify(pool, drift=False)).check("chains").problems
    assert sorted((p.kind, p.event_id) for p in problems) == sorted(
        [("broken_link", legacy["event_id"]), ("broken_link", current["event_id"])]
    )
