"""What the HTTP layer decides about a request before, or while, its body is read.

* A compressed body is refused (415) from its headers alone: aiohttp's own inflating is turned off in
  create_app (`auto_decompress=False`), because it inflates in the event loop, before any handler
  could look at the size (a 1 MB deflate body inflating to 1 GiB held every request for seconds). The
  Stripe SDKs never compress a request.
* A body must arrive within `LEDGER_BODY_TIMEOUT_SECONDS` (408), and a client that hangs up while
  sending it is its own outcome (499, logged and counted as such, never as the 503 of an unavailable
  database).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ledgerd.service.appkeys import CONFIG
from ledgerd.service.errors import StripeError

IDENTITY = frozenset({"", "identity"})
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away before the response"


class ClientDisconnected(StripeError):
    """The client closed the connection before its request was read: nobody receives an answer."""

    def __init__(self) -> None:
        super().__init__(
            CLIENT_CLOSED_REQUEST,
            "The client closed the connection before the request body was received.",
            code="client_closed_request",
        )


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def refuse_encoded_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in IDENTITY:
        raise StripeError(
            415,
            f"Content-Encoding {encoding[:40]!r} is not supported: send the request body uncompressed "
            "(Content-Encoding: identity, or no Content-Encoding header).",
            param="Content-Encoding",
            close_connection=True,  # its body is never read, so it is not drained either
        )
    return await handler(request)


async def read_body(request: web.Request) -> bytes:
    """The whole body, within the configured time; a hang-up is a ClientDisconnected."""
    timeout_s: float = request.app[CONFIG].body_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        if client_gone(request):
            raise ClientDisconnected() from None
        raise StripeError(
            408,
            f"The request body was not received within {timeout_s:g} seconds.",
            code="request_timeout",
            close_connection=True,
        ) from None
    except (ConnectionError, web.RequestPayloadError):
        if client_gone(request):
            raise ClientDisconnected() from None
        raise


# The protocol settings of every connection (web.Application's handler_args).
HANDLER_ARGS: dict[str, Any] = {
    # Long query strings and headers reach the app (and get a Stripe-shaped answer) instead of
    # aiohttp's plain-text 400 at its default 8190-byte limits.
    "max_line_size": 65536,
    "max_field_size": 65536,
    # Never inflate a request body (see the module docstring): refuse_encoded_bodies answers 415.
    "auto_decompress": False,
    # A body left unread (a 415, a 408, a 401 before the body) is drained for at most this long after the
    # answer, so that the client reads the answer before the connection closes (aiohttp's default: 10 s).
    "lingering_time": 1.0,
}
