"""Per-request Stripe fidelity, after authentication: the account's settings, the API version the
request is answered at (`Stripe-Version`, else the account's default), `Stripe-Account` refused like
Stripe refuses it for an account that is not a Connect platform, and the response rendered at the
version (service.versions gates; events at their account's version when they were created). The `Stripe-Version` response
header is set for every answered request, errors included (an `on_response_prepare` hook)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from ledgerd.domain.errors import DomainError
from ledgerd.service import versions
from ledgerd.service.accounts import NO_SETTINGS, AccountSettings, SettingsCache
from ledgerd.service.appkeys import ACCOUNT, ACCOUNT_SETTINGS, API_VERSION, pool_of
from ledgerd.service.errors import StripeError

NOT_A_PLATFORM = (
    "Only Stripe Connect platforms can work with other accounts. This ledger has no connected accounts: "
    "leave out the Stripe-Account header (it named '{}')."
)


def settings_of(request: web.Request) -> AccountSettings:
    settings: AccountSettings = request.get(ACCOUNT_SETTINGS, NO_SETTINGS)
    return settings


def api_version_of(request: web.Request) -> str:
    version: str = request.get(API_VERSION, versions.LATEST)
    return version


def refuse_stripe_account(request: web.Request) -> None:
    target = request.headers.get("Stripe-Account")
    if target is None or target.strip() == request[ACCOUNT]:
        return
    shown = target.strip()[:100]
    raise StripeError(
        403, NOT_A_PLATFORM.format(shown), code="platform_account_required", param="Stripe-Account"
    )


def fidelity_middleware(cache: SettingsCache) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if ACCOUNT not in request:  # a public path: no key, no version
            return await handler(request)
        settings = await cache.get(pool_of(request), request[ACCOUNT])
        request[ACCOUNT_SETTINGS] = settings
        refuse_stripe_account(request)
        request[API_VERSION] = versions.resolve(request.headers.get("Stripe-Version"), settings.api_version)
        try:
            response = await handler(request)
        except DomainError as error:  # name the param as this version does; error_middleware answers
            if error.param is not None:
                error.param = versions.old_param_name(
                    api_version_of(request), request.method, route_of(request), error.param
                )
            raise
        if isinstance(response, web.Response) and response.status < 400:
            render(request, response, settings)
        return response

    return middleware


def render(request: web.Request, response: web.Response, settings: AccountSettings) -> None:
    version = api_version_of(request)
    events = request.path.startswith("/v1/events")
    if not (versions.needs_rendering(version) or events) or not isinstance(response.body, bytes):
        return
    document = msgspec.json.decode(response.body)

    def event_version(event: Mapping[str, Any]) -> str:  # the account's version when it was created
        created = event.get("created")
        return (
            settings.version_at(created) if isinstance(created, int) else settings.api_version
        ) or versions.LATEST

    response.body = msgspec.json.encode(versions.render_at(document, version, event_version=event_version))


async def version_header(request: web.Request, response: web.StreamResponse) -> None:
    version = request.get(API_VERSION)
    if version is not None:
        response.headers["Stripe-Version"] = version


def versioned_params(request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
    """Request params renamed from the request's API version to the current names."""
    version = api_version_of(request)
    if not versions.needs_rendering(version):
        return params
    return versions.downgrade_params(version, request.method, route_of(request), params)


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path
