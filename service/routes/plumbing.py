"""What every API handler shares: the request's params, clock and context, running a command and
answering its outcome, path ids, `expand[]` trees and list bodies.

Each write handler turns a request into one command and runs it through `service.commands.handle`;
the response body is rendered from the projection rows the command itself computed (and wrote). Handlers
hold no try/except: `service.errors.error_middleware` maps every failure.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from ledgerd.domain.errors import InvalidParameter, ResourceMissing
from ledgerd.projections.sql import Rows
from ledgerd.service import expand, forms, params, versions
from ledgerd.service.appkeys import (
    ACCOUNT,
    API_KEY_ID,
    LIVEMODE,
    METRICS,
    REPLAYED,
    REQUEST_ID,
    RUNNER,
    TEST_MODE,
)
from ledgerd.service.commands.handle import handle
from ledgerd.service.commands.idempotency import IdempotencyRequest
from ledgerd.service.commands.requests import CommandRequest, Executable, Outcome, RequestContext
from ledgerd.service.errors import StripeError, domain_error_response, json_response
from ledgerd.service.fidelity import api_version_of, versioned_params
from ledgerd.service.transport import read_body

MAX_IDEMPOTENCY_KEY = 255

Renderer = Callable[[Rows], dict[str, Any]]
Expander = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def caller_now_us(request: web.Request) -> int:
    """The caller's clock: the wall clock, or the account's test clock on an ephemeral ledger."""
    test_mode = request.app.get(TEST_MODE)
    if test_mode is not None:
        now: int = test_mode.now_us(request[ACCOUNT])
        return now
    return time.time_ns() // 1000


async def read_params(request: web.Request) -> dict[str, Any]:
    return versioned_params(request, await parsed_params(request))  # params named as this version names them


async def parsed_params(request: web.Request) -> dict[str, Any]:
    if request.method in ("GET", "DELETE", "HEAD"):
        return forms.parse_query(request.rel_url.raw_query_string)
    body = await read_body(request)
    if not body:
        return forms.parse_query(request.rel_url.raw_query_string) if request.method == "DELETE" else {}
    if request.content_type == "application/json":
        return forms.parse_json(body)
    return forms.parse_form(body)


def pop_as_of(payload: dict[str, Any]) -> int | None:
    """The `as_of` extension: unix seconds; the object as it was at the end of that second."""
    raw = payload.pop("as_of", None)
    if raw is None:
        return None
    if not isinstance(raw, str | int) or isinstance(raw, bool) or not str(raw).isdigit():
        raise InvalidParameter(f"Invalid integer: {raw}", param="as_of", code="parameter_invalid_integer")
    value = int(raw)
    if value >= 2**53:
        raise InvalidParameter("as_of must be a unix time in seconds.", param="as_of")
    return value


async def read_only_expand(
    request: web.Request, root: expand.Node, *, allow: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], expand.Tree]:
    """Params of an endpoint that takes nothing but ``expand`` (retrieve, delete) and the names in `allow`:
    anything else is a 400. Returns the params and the expansion `root` allows."""
    payload = await read_params(request)
    for name in payload:
        if name != "expand" and name not in allow:
            raise InvalidParameter(
                f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
            )
    return payload, expansion_of(payload, root)


def context_of(request: web.Request) -> RequestContext:
    return RequestContext(
        account=request[ACCOUNT],
        livemode=request[LIVEMODE],
        occurred_at_us=caller_now_us(request),
        request_id=request[REQUEST_ID],
        api_key_id=request[API_KEY_ID],
        # The database's clock (plan.py, recording_time), except on an ephemeral ledger: one process owns its
        # database there, and the account's test clock (frozen or advanced by the test) must date its events.
        store_clock=request.app.get(TEST_MODE) is None,
    )


def idempotency_of(request: web.Request, payload: dict[str, Any]) -> IdempotencyRequest | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not (key.isascii() and key.isprintable()):
        raise StripeError(
            400,
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters.",
            code="idempotency_key_invalid",
            param="Idempotency-Key",
        )
    return IdempotencyRequest(key=key, method=request.method, path=request.path, params=payload)


def outcome_response(outcome: Outcome, request: web.Request, body: bytes | None = None) -> web.Response:
    """The HTTP answer of a command's outcome (its stored response, or `body`), with the idempotency headers."""
    headers: dict[str, str] = {}
    key = request.headers.get("Idempotency-Key")
    if key:
        headers["Idempotency-Key"] = key.strip()
    if outcome.replayed:
        request[REPLAYED] = True
        request.app[METRICS].idempotent_replays.inc()
        headers["Idempotent-Replayed"] = "true"
        original = outcome.original_request_id
        if original:
            headers["Original-Request"] = original
        if outcome.status >= 400:
            headers["Stripe-Should-Retry"] = "false"
    else:
        request.app[METRICS].events_appended.inc(len(outcome.events))
    return json_response(outcome.status, outcome.response if body is None else body, headers)


async def run_command(
    request: web.Request,
    command: Executable,
    payload: dict[str, Any],
    render: Renderer,
    expander: Expander | None = None,
) -> web.Response:
    outcome = await handle(
        request.app[RUNNER],
        CommandRequest(
            command,
            context_of(request),
            idempotency_of(request, payload),
            render=render,
            render_error=domain_error_response,
        ),
    )
    if expander is None or outcome.status != 200:
        return outcome_response(outcome, request)
    expanded = await expander(msgspec.json.decode(outcome.response))  # the stored response stays unexpanded
    return outcome_response(outcome, request, msgspec.json.encode(expanded))


PATH_NOUNS = {"customer": "customer", "transaction": "customer balance transaction", "event": "event"}


def path_id(request: web.Request, name: str, param: str) -> str:
    """A path segment naming an object. PostgreSQL text cannot hold NUL, so such an id names nothing."""
    value = request.match_info[name]
    if "\x00" in value:
        shown = value.replace("\x00", "\\x00")
        raise ResourceMissing(f"No such {PATH_NOUNS[name]}: '{shown}'", param=param)
    return value


def customer_missing(customer_id: str, param: str = "id") -> ResourceMissing:
    return ResourceMissing(f"No such customer: '{customer_id}'", param=param)


def list_body(url: str, items: list[dict[str, Any]], has_more: bool) -> bytes:
    return msgspec.json.encode({"object": "list", "data": items, "has_more": has_more, "url": url})


# -- expand[] (issue 13): what each response may expand is declared in service/expand.py --------------


def expansion_of(payload: dict[str, Any], root: expand.Node) -> expand.Tree:
    """The paths of `expand` as a tree; a 400 naming `expand` for one `root` cannot expand."""
    return expand.parse(params.check_expand(payload), root)


def list_expansion(
    request: web.Request, paths: tuple[str, ...], root: expand.Node, *, search: bool = False
) -> expand.Tree:
    tree = expand.parse(paths, root)
    if (
        "total_count" in tree
        and not search
        and not versions.list_total_count_allowed(api_version_of(request))
    ):
        raise InvalidParameter(
            "total_count can no longer be expanded on lists (API version 2025-03-31.basil and later); "
            "page with has_more instead.",
            param="expand",
            code="property_forbidden",
        )
    return tree


async def expanded_list(
    body: dict[str, Any], tree: expand.Tree, expander: Expander | None, total_count: int | None
) -> web.Response:
    if expander is not None and "data" in tree:
        body = dict(body, data=[await expander(item) for item in body["data"]])
    if total_count is not None:
        body["total_count"] = total_count
    return json_response(200, msgspec.json.encode(body))
