"""A background task for the lifetime of an aiohttp app, as a cleanup context (nothing starts at import)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web


def background_context(
    run: Callable[[web.Application], Awaitable[None]],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """`run(app)` as a task from start-up to shutdown, where it is cancelled and awaited."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        task: asyncio.Task[Any] = asyncio.ensure_future(run(app))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return context
