"""A background task for the lifetime of an aiohttp app, as a cleanup context (nothing starts at import)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web


@contextlib.asynccontextmanager
async def running(work: Awaitable[Any]) -> AsyncIterator[asyncio.Future[Any]]:
    """`work` as a task while the block runs; then it is cancelled and awaited."""
    task = asyncio.ensure_future(work)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def background_context(
    run: Callable[[web.Application], Awaitable[None]],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """`run(app)` as a task from start-up to shutdown, where it is cancelled and awaited."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with running(run(app)):
            yield

    return context
