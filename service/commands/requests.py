"""What a command is run with and what it comes back as: the request's context (account, mode, time,
ids), the command with its renderers, and the outcome (events, rows, response)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ledgerd.domain.customer import (
    INITIAL_STATE,
    AnyCommand,
    CustomerState,
    UpdateBalanceTransaction,
    UpdateCustomer,
    UpsertCustomer,
)
from ledgerd.domain.errors import DomainError
from ledgerd.domain.log import RecordedEvent
from ledgerd.projections.sql import Rows
from ledgerd.service.commands.idempotency import IdempotencyRequest
from ledgerd.service.store.base import ClaimKey, IdempotencyScope, ReadRequest

Executable = AnyCommand | UpsertCustomer
Render = Callable[[Rows], dict[str, Any]]
RenderError = Callable[[DomainError], tuple[int, bytes]]


@dataclass(frozen=True)
class RequestContext:
    account: str
    livemode: bool
    occurred_at_us: int  # the process's clock; a stream's events are never recorded before its head
    request_id: str | None = None
    api_key_id: str | None = None
    # Record at the store's clock (the database's, read with the stream head) instead: what the API
    # does, so that processes whose clocks disagree still write one timeline. Tests and tools that
    # date commands themselves leave it off.
    store_clock: bool = False


@dataclass(frozen=True)
class CommandRequest:
    """One command to run, with what its response and a recorded rejection are rendered by."""

    executable: Executable
    context: RequestContext
    idempotency: IdempotencyRequest | None = None
    render: Render | None = None
    render_error: RenderError | None = None

    @property
    def scope(self) -> IdempotencyScope | None:
        if self.idempotency is None:
            return None
        return (self.context.account, self.context.livemode, self.idempotency.key)

    def claim_key(self) -> ClaimKey | None:
        """The external_id the command must look up before it knows or may change its stream."""
        external_id: Any = None
        if isinstance(self.executable, UpsertCustomer):
            external_id = self.executable.create.profile.external_id
        elif isinstance(self.executable, UpdateCustomer):
            external_id = self.executable.patch.external_id
        if not isinstance(external_id, str):
            return None
        return (self.context.account, self.context.livemode, external_id)

    def stream(self) -> str | None:
        """The stream, when known before reading (an upsert by external_id learns it from the claim)."""
        if isinstance(self.executable, UpsertCustomer):
            return None if self.claim_key() is not None else self.executable.create.customer_id
        return self.executable.customer_id

    def lock_keys(self) -> list[str]:
        """What a command that lost a race holds while it decides again (service/commands/runner.py)."""
        keys = [f"stream:{stream}" for stream in (self.stream(),) if stream is not None]
        claim = self.claim_key()
        if claim is not None:
            keys.append(f"claim:{claim[0]}:{claim[1]}:{claim[2]}")
        return keys

    def read_request(self) -> ReadRequest:
        stream, scope, claim = self.stream(), self.scope, self.claim_key()
        transactions: tuple[tuple[str, str], ...] = ()
        if isinstance(self.executable, UpdateBalanceTransaction):
            transactions = ((self.executable.customer_id, self.executable.transaction_id),)
        return ReadRequest(
            streams=(stream,) if stream is not None else (),
            records=(scope,) if scope is not None else (),
            claims=(claim,) if claim is not None else (),
            transactions=transactions,
        )


@dataclass
class Outcome:
    customer_id: str
    events: list[RecordedEvent] = field(default_factory=list)
    state: CustomerState = INITIAL_STATE
    replayed: bool = False
    status: int = 200
    response: bytes = b""
    rows: Rows = field(default_factory=dict)
    original_request_id: str | None = None
    rejection: DomainError | None = None  # recorded under the idempotency key; surfaced once committed
