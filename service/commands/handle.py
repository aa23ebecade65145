"""The entry point for running a command: validate it, run it, surface a recorded rejection."""

from __future__ import annotations

from ledgerd.domain.customer import UpsertCustomer
from ledgerd.domain.validation import validate
from ledgerd.service.commands.idempotency import IdempotencyRequest
from ledgerd.service.commands.requests import (
    CommandRequest,
    Executable,
    Outcome,
    Render,
    RenderError,
    RequestContext,
)
from ledgerd.service.commands.runner import Runner, SoloRunner
from ledgerd.service.store.base import EventStore


async def handle(runner: Runner, request: CommandRequest) -> Outcome:
    """Run one command to completion. Raises its DomainError when rejected; a rejection recorded under
    its idempotency key (as Stripe records requests that began executing) is raised once committed."""
    executable = request.executable
    if isinstance(executable, UpsertCustomer):
        validate(executable.create)
        validate(executable.update)
    else:
        validate(executable)
    outcome = await runner.run(request)
    if outcome.rejection is not None:
        raise outcome.rejection
    return outcome


async def execute(
    store: EventStore,
    executable: Executable,
    context: RequestContext,
    *,
    idempotency: IdempotencyRequest | None = None,
    render: Render | None = None,
    render_error: RenderError | None = None,
    runner: Runner | None = None,
) -> Outcome:
    """`handle` for callers outside HTTP (the CLI, tests): the solo runner on `store` unless given one."""
    request = CommandRequest(executable, context, idempotency, render, render_error)
    return await handle(runner if runner is not None else SoloRunner(store), request)
