"""`--strict`: answer like Stripe where ledgerd deliberately does better, so a test suite that passes
locally does not depend on an extension production will refuse.

Refused with the 400 Stripe gives for an unknown parameter: ``external_id`` (customer create and
update), ``currency`` on customer create, ``as_of`` on any read. JSON request bodies get a 400 asking
for a form-encoded body (Stripe's v1 API takes nothing else; the wording is not checked against
Stripe's); the ``/history`` extension is an unknown URL. The list filter ``email`` becomes
case-sensitive and search lags (`Config.search_lag_s`): both are in service/routes/customers.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ledgerd.domain.errors import InvalidParameter
from ledgerd.service.errors import StripeError

# the route (aiohttp's canonical path) -> parameters that are ledgerd extensions there
EXTENSION_PARAMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("POST", "/v1/customers"): ("external_id", "currency"),
    ("POST", "/v1/customers/{customer}"): ("external_id",),
    ("GET", "/v1/customers/{customer}"): ("as_of",),
    ("GET", "/v1/customers/{customer}/balance_transactions"): ("as_of",),
}
EXTENSION_ROUTES = frozenset({("GET", "/v1/customers/{customer}/history")})
JSON_BODY_MESSAGE = (
    "Invalid request (check that your POST content type is application/x-www-form-urlencoded). "
    "If you have any questions, we can help at https://support.stripe.com/."
)


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


@web.middleware
async def strict_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    from ledgerd.service.routes.plumbing import read_params

    resource = request.match_info.route.resource
    route = (request.method, resource.canonical if resource is not None else "")
    if route in EXTENSION_ROUTES:
        raise web.HTTPNotFound()
    json_post = request.method == "POST" and request.path.startswith("/v1/") and is_json(request.content_type)
    if json_post and await request.read():
        raise StripeError(400, JSON_BODY_MESSAGE)
    refused = EXTENSION_PARAMS.get(route)
    if refused:
        payload: dict[str, Any] = await read_params(request)  # the body is cached for the handler
        for name in refused:
            if name in payload:
                raise InvalidParameter(
                    f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
                )
    return await handler(request)
