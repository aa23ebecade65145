"""The one generic command handler: load -> fold -> decide -> append (+ inline projections and the
idempotency record) in one transaction. Conflicts are retried inside, a bounded number of times.

Per-stream serialization: every command first takes a transaction-scoped advisory lock on its
stream, so concurrent commands on one customer queue instead of failing their version check. The
version check still guards the append, and a lost race is retried rather than surfaced.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from ledgerd.domain.customer import (
    INITIAL_STATE,
    AdjustBalance,
    AnyCommand,
    AnyEvent,
    BalanceTransactionState,
    CustomerState,
    UpdateBalanceTransaction,
    UpdateCustomer,
    UpsertCustomer,
    decide,
    decide_transaction_update,
    evolve,
    evolve_transaction,
    resolve_upsert,
)
from ledgerd.domain.errors import DomainError, InvalidParameter, ResourceMissing
from ledgerd.domain.validation import validate
from ledgerd.service.ids import random_token
from ledgerd.service.store.base import (
    DuplicateKey,
    EventMetadata,
    EventStore,
    IdempotencyRecord,
    RecordedEvent,
    StoreSession,
    StreamHeader,
    WrongExpectedVersion,
    prepare,
)

if TYPE_CHECKING:
    from ledgerd.service.group_commit import GroupCommitter

MAX_ATTEMPTS = 8


def new_id(prefix: str, length: int) -> str:
    return prefix + random_token(length)


class IdempotencyConflict(Exception):
    """The key was used before with different parameters (or on another endpoint)."""

    def __init__(self, key: str, differences: list[str], other_path: str | None = None) -> None:
        self.key = key
        self.differences = differences
        self.other_path = other_path
        super().__init__(f"idempotency key {key!r} reused with different parameters: {differences}")


@dataclass(frozen=True)
class Claims:
    """The locks a command takes before anything else, taken for the whole batch up front."""

    stream_id: str
    stream_lock_key: str
    idempotency_lock_key: str | None = None
    idempotency_scope: tuple[str, bool, str] | None = None


class ConflictRetriesExhausted(Exception):
    """Contention did not settle within MAX_ATTEMPTS; the client may retry."""


@dataclass(frozen=True)
class RequestContext:
    account: str
    livemode: bool
    occurred_at_us: int
    request_id: str | None = None
    api_key_id: str | None = None


@dataclass(frozen=True)
class IdempotencyRequest:
    key: str
    method: str
    path: str
    params: dict[str, Any]

    @property
    def params_hash(self) -> bytes:
        return hashlib.sha256(canonical_params(self.method, self.path, self.params)).digest()


def canonical_params(method: str, path: str, params: dict[str, Any]) -> bytes:
    return msgspec.json.encode([method, path, params], order="sorted")


@dataclass
class Outcome:
    customer_id: str
    events: list[RecordedEvent]
    state: CustomerState
    replayed: bool = False
    status: int = 200
    response: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict)


Responder = Callable[[StoreSession, "Outcome"], Awaitable[tuple[int, bytes]]]
ErrorResponder = Callable[[DomainError], tuple[int, bytes]]

Executable = AnyCommand | UpsertCustomer


def differing_params(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    names = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}[{key}]" if prefix else key
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names.extend(differing_params(a, b, path))
        elif a != b:
            names.append(path)
    return names


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


@dataclass(frozen=True)
class Loaded:
    state: Any  # CustomerState, or BalanceTransactionState for UpdateBalanceTransaction
    version: int
    head_hash: bytes | None


async def load_state(session: StoreSession, command: AnyCommand) -> Loaded:
    """Serialize on the stream, then its state: the stored snapshot when it is current, else the fold
    of its events. UpdateBalanceTransaction needs the one transaction's history, so it folds."""
    head = await session.lock_and_read_head(stream_lock_key(command.customer_id), command.customer_id)
    if head is None:
        initial: Any = (
            BalanceTransactionState(transaction_id=command.transaction_id)
            if isinstance(command, UpdateBalanceTransaction)
            else INITIAL_STATE
        )
        return Loaded(initial, 0, None)
    if not isinstance(command, UpdateBalanceTransaction):
        snapshot = decode_snapshot(head.snapshot, head.version)
        if snapshot is not None:
            return Loaded(snapshot, head.version, head.head_hash)
    events = await session.load(command.customer_id)
    if isinstance(command, UpdateBalanceTransaction):
        txn_state = BalanceTransactionState(transaction_id=command.transaction_id)
        for recorded in events:
            txn_state = evolve_transaction(txn_state, decode_event_of(recorded))
        return Loaded(txn_state, len(events), events[-1].hash if events else None)
    state = INITIAL_STATE
    for recorded in events:
        state = evolve(state, decode_event_of(recorded))
    return Loaded(state, len(events), events[-1].hash if events else None)


def decode_event_of(recorded: RecordedEvent) -> AnyEvent:
    return recorded.event


def owned_by(state: CustomerState, context: RequestContext) -> bool:
    return not state.exists or (state.account == context.account and state.livemode == context.livemode)


def raise_missing(command: AnyCommand) -> None:
    param = "customer" if isinstance(command, AdjustBalance | UpdateBalanceTransaction) else "id"
    raise ResourceMissing(f"No such customer: '{command.customer_id}'", param=param)


def customer_state(state: Any) -> CustomerState:
    return state.customer if isinstance(state, BalanceTransactionState) else state


def fold_new(state: CustomerState, events: list[AnyEvent]) -> CustomerState:
    for event in events:
        state = evolve(state, event)
    return state


async def run_once(
    session: StoreSession,
    executable: Executable,
    context: RequestContext,
    idempotency: IdempotencyRequest | None,
) -> tuple[AnyCommand, list[RecordedEvent], CustomerState]:
    command = await resolve(session, executable, context)
    loaded = await load_state(session, command)
    state, version = loaded.state, loaded.version
    if not owned_by(customer_state(state), context):
        # Another account's (or the other mode's) customer is indistinguishable from a missing one.
        raise_missing(command)
    if isinstance(command, UpdateBalanceTransaction):
        new_events = decide_transaction_update(command, state)
    else:
        new_events = decide(command, state)
    base = customer_state(state)
    if not new_events:
        return command, [], base
    header = StreamHeader(
        stream_id=command.customer_id,
        stream_type="customer",
        account=base.account if base.exists else context.account,
        livemode=base.livemode if base.exists else context.livemode,
    )
    metadata = EventMetadata(
        account=context.account,
        livemode=context.livemode,
        request_id=context.request_id,
        idempotency_key=idempotency.key if idempotency else None,
        api_key_id=context.api_key_id,
    )
    pending = [prepare(event, new_id("evt_", 24)) for event in new_events]
    after = fold_new(base, new_events)
    recorded = await session.append(
        header,
        version,
        pending,
        metadata,
        context.occurred_at_us,
        head_hash=loaded.head_hash,
        snapshot=encode_snapshot(after),
    )
    return command, recorded, after


async def resolve(session: StoreSession, executable: Executable, context: RequestContext) -> AnyCommand:
    if isinstance(executable, UpdateCustomer):
        await claim_external_id(session, executable, context)
    if not isinstance(executable, UpsertCustomer):
        return executable
    external_id = executable.create.profile.external_id
    if external_id is None:
        return executable.create
    await session.lock(f"external_id:{context.account}:{context.livemode}:{external_id}")
    existing = await session.find_customer_by_external_id(context.account, context.livemode, external_id)
    return resolve_upsert(executable, existing)


async def claim_external_id(session: StoreSession, command: UpdateCustomer, context: RequestContext) -> None:
    """An external_id is unique per account and mode: taking one another customer holds is a 400."""
    external_id = command.patch.external_id
    if not isinstance(external_id, str):
        return
    await session.lock(f"external_id:{context.account}:{context.livemode}:{external_id}")
    owner = await session.find_customer_by_external_id(context.account, context.livemode, external_id)
    if owner is not None and owner != command.customer_id:
        raise InvalidParameter(
            f"external_id '{external_id}' already belongs to customer '{owner}'.",
            param="external_id",
            code="external_id_in_use",
        )


async def execute(
    store: EventStore,
    executable: Executable,
    context: RequestContext,
    *,
    idempotency: IdempotencyRequest | None = None,
    respond: Responder | None = None,
    respond_error: ErrorResponder | None = None,
    committer: GroupCommitter | None = None,
) -> Outcome:
    """Run one command to completion. Raises DomainError for a rejected command (after recording it
    under its idempotency key, as Stripe does for requests that began executing). With a committer,
    the command may share its transaction with concurrent ones (service/group_commit.py)."""
    validate(executable.create if isinstance(executable, UpsertCustomer) else executable)
    if isinstance(executable, UpsertCustomer):
        validate(executable.update)
    for attempt in range(MAX_ATTEMPTS):
        try:
            result = await execute_attempt(
                store, executable, context, idempotency, respond, respond_error, committer
            )
        except (WrongExpectedVersion, DuplicateKey):
            await asyncio.sleep(random.uniform(0, 0.002 * (2**attempt)))
            continue
        if isinstance(result, DomainError):
            raise result  # recorded under its idempotency key and committed; now surface it
        return result
    raise ConflictRetriesExhausted(f"gave up after {MAX_ATTEMPTS} conflicting attempts")


async def execute_attempt(
    store: EventStore,
    executable: Executable,
    context: RequestContext,
    idempotency: IdempotencyRequest | None,
    respond: Responder | None,
    respond_error: ErrorResponder | None,
    committer: GroupCommitter | None,
) -> Outcome | DomainError:
    stream = stream_known_up_front(executable)

    async def body(session: StoreSession) -> Outcome | DomainError:
        return await attempt_in(session, executable, context, idempotency, respond, respond_error, stream)

    if committer is not None and stream is not None and context.request_id is not None:
        key = idempotency.key if idempotency is not None else None
        claims = Claims(
            stream_id=stream[1],
            stream_lock_key=stream[0],
            idempotency_lock_key=idempotency_lock_key(context, key) if key is not None else None,
            idempotency_scope=(context.account, context.livemode, key) if key is not None else None,
        )
        result: Outcome | DomainError = await committer.run(claims, context.request_id, body)
        return result
    async with store.session() as session:
        return await body(session)


async def attempt_in(
    session: StoreSession,
    executable: Executable,
    context: RequestContext,
    idempotency: IdempotencyRequest | None,
    respond: Responder | None,
    respond_error: ErrorResponder | None,
    stream: tuple[str, str] | None,
) -> Outcome | DomainError:
    """One attempt inside the given transaction. A rejection recorded under an idempotency key is
    returned (the record must commit), any other rejection raised."""
    if idempotency is not None:
        replay = await find_replay(session, context, idempotency, stream)
        if replay is not None:
            return replay
    try:
        command, recorded, state = await run_once(session, executable, context, idempotency)
    except DomainError as error:
        if idempotency is None or respond_error is None:
            raise
        status, body = respond_error(error)
        await save_record(session, context, idempotency, status, body)
        return error
    outcome = Outcome(customer_id=command.customer_id, events=recorded, state=state)
    if respond is not None:
        outcome.status, outcome.response = await respond(session, outcome)
    if idempotency is not None:
        await save_record(session, context, idempotency, outcome.status, outcome.response)
    return outcome


def stream_lock_key(customer_id: str) -> str:
    return f"stream:{customer_id}"


def idempotency_lock_key(context: RequestContext, key: str) -> str:
    return f"idempotency:{context.account}:{context.livemode}:{key}"


def stream_known_up_front(executable: Executable) -> tuple[str, str] | None:
    """(lock key, stream) of a command that will lock its stream right after the idempotency key.
    Not for commands that resolve an external_id first: they take that lock before the stream's."""
    if isinstance(executable, UpsertCustomer):
        if executable.create.profile.external_id is None:  # resolves to the create, lock-free
            return stream_lock_key(executable.create.customer_id), executable.create.customer_id
        return None
    if isinstance(executable, UpdateCustomer) and isinstance(executable.patch.external_id, str):
        return None
    return stream_lock_key(executable.customer_id), executable.customer_id


async def find_replay(
    session: StoreSession,
    context: RequestContext,
    idempotency: IdempotencyRequest,
    stream: tuple[str, str] | None,
) -> Outcome | None:
    """The recorded outcome of the key, if any. `stream` = (lock key, stream) of a command that locks
    its stream right after the key (stream_known_up_front): the store may lock and read it now."""
    # Concurrent requests with one key queue here; the later ones then replay the first's result.
    record = await session.lock_and_find_idempotency(
        idempotency_lock_key(context, idempotency.key),
        context.account,
        context.livemode,
        idempotency.key,
        then_stream=stream,
    )
    if record is None:
        return None
    if record.method != idempotency.method or record.path != idempotency.path:
        raise IdempotencyConflict(idempotency.key, [], other_path=record.path)
    if record.params_hash != idempotency.params_hash:
        raise IdempotencyConflict(idempotency.key, differing_params(record.params, idempotency.params))
    return Outcome(
        customer_id="",
        events=[],
        state=INITIAL_STATE,
        replayed=True,
        status=record.status,
        response=record.response,
        extra={"original_request_id": record.request_id},
    )


async def save_record(
    session: StoreSession, context: RequestContext, idempotency: IdempotencyRequest, status: int, body: bytes
) -> None:
    await session.save_idempotency(
        IdempotencyRecord(
            account=context.account,
            livemode=context.livemode,
            key=idempotency.key,
            method=idempotency.method,
            path=idempotency.path,
            params_hash=idempotency.params_hash,
            params=idempotency.params,
            status=status,
            response=body,
            request_id=context.request_id,
        )
    )
