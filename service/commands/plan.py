"""Deciding one command on what was read, and computing everything its write carries. No I/O but the
rare fold of a stream whose snapshot is missing or stale (`Loader`).

A batch plans its commands in order on one `Overlay`: a command sees the streams, ledger entries,
idempotency records and external_id claims its predecessors in the batch left, exactly as if they had
committed before it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ledgerd.domain.customer import (
    INITIAL_STATE,
    AdjustBalance,
    AnyCommand,
    AnyEvent,
    BalanceAdjusted,
    BalanceTransactionState,
    BalanceTransactionUpdated,
    CustomerState,
    UpdateBalanceTransaction,
    UpdateCustomer,
    UpsertCustomer,
    decide,
    decide_transaction_update,
    fold,
    resolve_upsert,
    transaction_created,
    transaction_updated,
)
from ledgerd.domain.errors import DomainError, InvalidParameter, ResourceMissing
from ledgerd.domain.log import GENESIS_HASH, EventMetadata, RecordedEvent, StreamHeader, chain_links, prepare
from ledgerd.projections import balance_transactions, customers, project
from ledgerd.projections.sql import Rows
from ledgerd.projections.stripe_events import Source
from ledgerd.service.commands.idempotency import IdempotencyRequest, check_replay
from ledgerd.service.commands.requests import CommandRequest, Outcome, RequestContext
from ledgerd.service.commands.snapshots import decode_snapshot, encode_snapshot
from ledgerd.service.ids import new_id
from ledgerd.service.store.base import (
    ClaimKey,
    IdempotencyRecord,
    IdempotencyScope,
    Reads,
    StreamHead,
    Write,
)

Loader = Callable[[str], Awaitable[list[RecordedEvent]]]


@dataclass
class Planned:
    """A command decided: its outcome (complete once written) and what to write, if anything."""

    outcome: Outcome
    write: Write | None


@dataclass
class Overlay:
    """What the commands planned so far in a batch leave for the next ones."""

    reads: Reads
    states: dict[str, tuple[CustomerState, StreamHead]] = field(default_factory=dict)
    transactions: dict[str, BalanceTransactionState] = field(default_factory=dict)
    records: dict[IdempotencyScope, IdempotencyRecord] = field(default_factory=dict)
    claims: dict[ClaimKey, str | None] = field(default_factory=dict)

    def record(self, scope: IdempotencyScope) -> IdempotencyRecord | None:
        return self.records.get(scope) or self.reads.records.get(scope)

    def claim(self, key: ClaimKey) -> str | None:
        return self.claims[key] if key in self.claims else self.reads.claims.get(key)


async def customer_state(
    overlay: Overlay, stream_id: str, load: Loader
) -> tuple[CustomerState, StreamHead | None]:
    if stream_id in overlay.states:
        return overlay.states[stream_id]
    head = overlay.reads.heads.get(stream_id)
    if head is None:
        return INITIAL_STATE, None
    state = decode_snapshot(head.snapshot, head.version)
    if state is None:
        state = fold([recorded.event for recorded in await load(stream_id)])
    return state, head


def transaction_state(
    overlay: Overlay, customer: CustomerState, stream_id: str, transaction_id: str
) -> BalanceTransactionState:
    """A ledger entry as its events left it (read from the log), or as this batch left it."""
    known = overlay.transactions.get(transaction_id)
    if known is not None:
        return msgspec.structs.replace(known, customer=customer)
    state = BalanceTransactionState(transaction_id=transaction_id, customer=customer)
    for recorded in overlay.reads.transaction_events.get((stream_id, transaction_id), []):
        event = recorded.event
        if isinstance(event, BalanceAdjusted) and event.transaction_id == transaction_id:
            state = msgspec.structs.replace(
                transaction_created(customer, event), version=recorded.stream_version
            )
        elif (
            isinstance(event, BalanceTransactionUpdated)
            and event.transaction_id == transaction_id
            and state.found
        ):
            state = transaction_updated(state, event)
    return state


def resolve(request: CommandRequest, overlay: Overlay) -> AnyCommand:
    executable, claim = request.executable, request.claim_key()
    if isinstance(executable, UpsertCustomer):
        return resolve_upsert(executable, overlay.claim(claim) if claim is not None else None)
    if isinstance(executable, UpdateCustomer) and claim is not None:
        holder = overlay.claim(claim)
        if holder is not None and holder != executable.customer_id:
            raise InvalidParameter(
                f"external_id '{claim[2]}' already belongs to customer '{holder}'.",
                param="external_id",
                code="external_id_in_use",
            )
    return executable


def owned_by(state: CustomerState, context: RequestContext) -> bool:
    return not state.exists or (state.account == context.account and state.livemode == context.livemode)


def missing(command: AnyCommand) -> ResourceMissing:
    param = "customer" if isinstance(command, AdjustBalance | UpdateBalanceTransaction) else "id"
    return ResourceMissing(f"No such customer: '{command.customer_id}'", param=param)


async def plan(request: CommandRequest, overlay: Overlay, load: Loader) -> Planned:
    """Replay the recorded result, or decide. A rejection is raised, unless it must be recorded under
    the request's idempotency key (then it is planned like any result). IdempotencyConflict is raised."""
    scope = request.scope
    if scope is not None and request.idempotency is not None:
        record = overlay.record(scope)
        if record is not None:
            check_replay(record, request.idempotency)
            return Planned(replay_of(record), None)
    try:
        return await decide_and_plan(request, overlay, load)
    except DomainError as error:
        if scope is None or request.render_error is None or request.idempotency is None:
            raise
        status, body = request.render_error(error)
        stream_id = request.stream()
        head = overlay.reads.heads.get(stream_id) if stream_id is not None else None
        if stream_id is not None and stream_id in overlay.states:
            head = overlay.states[stream_id][1]
        write = record_only(request, overlay, stream_id, head, status, body)
        outcome = Outcome(customer_id=stream_id or "", status=status, response=body, rejection=error)
        return Planned(outcome, write)


def record_only(
    request: CommandRequest,
    overlay: Overlay,
    stream_id: str | None,
    head: StreamHead | None,
    status: int,
    body: bytes,
) -> Write | None:
    """The write of a command that appends nothing: its idempotency record, if it has a key, valid only
    while the stream is still at the version it was decided on."""
    if request.idempotency is None or request.scope is None:
        return None
    record = record_of(request, request.idempotency, status, body)
    overlay.records[request.scope] = record
    header = None
    if stream_id is not None and head is not None:
        header = StreamHeader(stream_id=stream_id, stream_type="customer", account="", livemode=False)
    return Write(
        header=header,
        expected_version=head.version if head is not None else 0,
        metadata=metadata_of(request),
        recorded_at_us=request.context.occurred_at_us,
        record=record,
    )


def replay_of(record: IdempotencyRecord) -> Outcome:
    return Outcome(
        customer_id="",
        replayed=True,
        status=record.status,
        response=record.response,
        original_request_id=record.request_id,
    )


def record_of(
    request: CommandRequest, idempotency: IdempotencyRequest, status: int, body: bytes
) -> IdempotencyRecord:
    return IdempotencyRecord(
        account=request.context.account,
        livemode=request.context.livemode,
        key=idempotency.key,
        method=idempotency.method,
        path=idempotency.path,
        params_hash=idempotency.params_hash,
        params=idempotency.params,
        status=status,
        response=body,
        request_id=request.context.request_id,
    )


def metadata_of(request: CommandRequest) -> EventMetadata:
    context = request.context
    return EventMetadata(
        account=context.account,
        livemode=context.livemode,
        request_id=context.request_id,
        idempotency_key=request.idempotency.key if request.idempotency else None,
        api_key_id=context.api_key_id,
    )


def event_ids(count: int) -> list[str]:
    return [new_id("evt_", 24) for _ in range(count)]


def recording_time(context: RequestContext, store_clock_us: int | None, head: StreamHead | None) -> int:
    """One clock per stream: the database's (or the caller's) time, but never at or before the stream's
    last event, so per-stream time only moves forward whatever the clocks of the writing processes."""
    at = store_clock_us if context.store_clock and store_clock_us is not None else context.occurred_at_us
    if head is not None and head.recorded_at_us is not None and at <= head.recorded_at_us:
        at = head.recorded_at_us + 1
    return at


async def decide_and_plan(request: CommandRequest, overlay: Overlay, load: Loader) -> Planned:
    command = resolve(request, overlay)
    stream_id = command.customer_id
    state, head = await customer_state(overlay, stream_id, load)
    context = request.context
    if not owned_by(state, context):
        raise missing(command)  # another account's customer is indistinguishable from a missing one
    at = recording_time(context, overlay.reads.clock_us, head)
    if at != command.occurred_at:
        store_clock = context.store_clock and overlay.reads.clock_us is not None
        command = msgspec.structs.replace(
            command, occurred_at=at if store_clock else max(at, command.occurred_at)
        )
        at = command.occurred_at
    transactions: dict[str, BalanceTransactionState] = {}
    if isinstance(command, UpdateBalanceTransaction):
        txn = transaction_state(overlay, state, stream_id, command.transaction_id)
        transactions[command.transaction_id] = txn
        events: list[AnyEvent] = decide_transaction_update(command, txn)
    else:
        events = decide(command, state)
    version = head.version if head is not None else 0
    if not events:  # nothing changes; a result recorded under a key was decided on this version
        outcome = await respond(
            request, Outcome(customer_id=stream_id, state=state, rows=rows_of(state, transactions))
        )
        return Planned(
            outcome, record_only(request, overlay, stream_id, head, outcome.status, outcome.response)
        )

    header = StreamHeader(
        stream_id=stream_id,
        stream_type="customer",
        account=state.account if state.exists else context.account,
        livemode=state.livemode if state.exists else context.livemode,
    )
    metadata = metadata_of(request)
    pending = [
        prepare(event, event_id) for event, event_id in zip(events, event_ids(len(events)), strict=True)
    ]
    links = chain_links(header, version, head.head_hash if head else GENESIS_HASH, pending, metadata, at)
    metadata_doc = msgspec.to_builtins(metadata)
    sources = [
        (Source(link.event.event_id, stream_id, link.version, None, at, metadata_doc), event)
        for link, event in zip(links, events, strict=True)
    ]
    projected = project(state, sources, transactions)
    snapshot = encode_snapshot(projected.state)
    rows: Rows = {(customers.TABLE, stream_id): projected.customer}
    for tid, txn_row in projected.transaction_rows.items():
        rows[(balance_transactions.TABLE, tid)] = txn_row
    outcome = Outcome(
        customer_id=stream_id,
        state=projected.state,
        rows=rows,
        events=[recorded_of(link, stream_id, metadata_doc, at) for link in links],
    )
    outcome = await respond(request, outcome)
    claim, release = claims_of(request, command, state, projected.state)
    write = Write(
        header=header,
        expected_version=version,
        metadata=metadata,
        recorded_at_us=at,
        links=links,
        snapshot=snapshot,
        customer=projected.customer,
        customer_created=projected.created,
        transactions=[
            (row, tid in projected.new_transactions) for tid, row in projected.transaction_rows.items()
        ],
        feed=projected.feed,
        record=record_of(request, request.idempotency, outcome.status, outcome.response)
        if request.idempotency is not None
        else None,
        claim=claim,
        release=release,
    )
    new_head = StreamHead(version=links[-1].version, head_hash=links[-1].hash, recorded_at_us=at)
    overlay.states[stream_id] = (projected.state, new_head)
    overlay.transactions.update(projected.transactions)
    if write.record is not None and request.scope is not None:
        overlay.records[request.scope] = write.record
    if release is not None:
        overlay.claims[release] = None
    if claim is not None:
        overlay.claims[claim] = stream_id
    return Planned(outcome, write)


def recorded_of(link: Any, stream_id: str, metadata: dict[str, Any], at: int) -> RecordedEvent:
    """The event as it will be stored; its position and transaction are known once written."""
    return RecordedEvent(
        position=0,
        tx_id=0,
        stream_id=stream_id,
        stream_version=link.version,
        event_id=link.event.event_id,
        event_type=link.event.event_type,
        schema_version=link.event.schema_version,
        data=link.event.data,
        metadata=metadata,
        recorded_at_us=at,
        hash=link.hash,
    )


def rows_of(state: CustomerState, transactions: dict[str, BalanceTransactionState]) -> Rows:
    rows: Rows = {(customers.TABLE, state.customer_id): customers.row(state)}
    for tid, txn in transactions.items():
        if txn.found:
            rows[(balance_transactions.TABLE, tid)] = balance_transactions.row(txn)
    return rows


async def respond(request: CommandRequest, outcome: Outcome) -> Outcome:
    if request.render is not None:
        outcome.status, outcome.response = 200, msgspec.json.encode(request.render(outcome.rows))
    return outcome


def claims_of(
    request: CommandRequest, command: AnyCommand, before: CustomerState, after: CustomerState
) -> tuple[ClaimKey | None, ClaimKey | None]:
    """The external_id claim the command takes, and the one it gives up."""
    account, livemode = request.context.account, request.context.livemode
    old = before.profile.external_id if before.exists and not before.deleted else None
    new = after.profile.external_id if after.exists and not after.deleted else None
    if old == new:
        return None, None
    take = (account, livemode, new) if new is not None else None
    give = (account, livemode, old) if old is not None else None
    return take, give
