"""Params of the Webhook Endpoints API, with Stripe-shaped errors naming the parameter.

Same conventions as service/params.py (``""`` unsets, booleans are ``true``/``false``, unknown params are a
400). URLs: http or https with a host, at most 2048 characters; an IP-literal host must be a public
address unless LEDGER_WEBHOOK_ALLOW_CIDRS allows it; live-mode endpoints must use https unless their
(IP-literal) host is allowed that way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec
from msgspec import UNSET, UnsetType
from yarl import URL

from ledgerd.domain.errors import InvalidParameter
from ledgerd.domain.validation import validate_metadata
from ledgerd.projections.stripe_events import EVENT_TYPES
from ledgerd.service import versions
from ledgerd.service.scalars import NO_PARAMS
from ledgerd.service.scalars import accept_ignored as _accept_ignored
from ledgerd.service.scalars import boolean as _boolean
from ledgerd.service.scalars import check_keys as _check_keys
from ledgerd.service.scalars import metadata as _metadata
from ledgerd.service.scalars import metadata_patch as _metadata_patch
from ledgerd.service.scalars import opt_string as _opt_string
from ledgerd.service.scalars import required as _required
from ledgerd.service.scalars import string as _string
from ledgerd.service.scalars import strings as _strings
from ledgerd.service.scalars import unset as _unset
from ledgerd.service.webhooks.config import IPNetwork
from ledgerd.service.webhooks.ssrf import is_allowed, literal_address

MAX_URL: Final = 2048
MAX_DESCRIPTION: Final = 5000
MAX_ENDPOINTS: Final = 16
ALL_EVENTS: Final = "*"
KNOWN_EVENTS: Final = frozenset({*EVENT_TYPES, ALL_EVENTS})
CREATE_PARAMS: Final = frozenset({"url", "enabled_events", "description", "metadata", "api_version", "connect", "expand"})
UPDATE_PARAMS: Final = frozenset({"url", "enabled_events", "description", "metadata", "disabled", "expand"})
FIXED_AT_CREATE: Final = frozenset({"api_version", "connect"})


class EndpointCreate(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    enabled_events: tuple[str, ...]
    description: str | None = None
    metadata: dict[str, str] = {}
    api_version: str | None = None


class EndpointUpdate(msgspec.Struct, frozen=True, kw_only=True):
    url: str | UnsetType = UNSET
    enabled_events: tuple[str, ...] | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    metadata: dict[str, str | None] | UnsetType | None = UNSET  # None clears all
    disabled: bool | UnsetType = UNSET


def check_url(value: Any, *, livemode: bool, allow: Sequence[IPNetwork]) -> str:
    url = _string(value, "url")
    if len(url) > MAX_URL:
        raise InvalidParameter(f"Invalid url: must be at most {MAX_URL} characters.", param="url")
    try:
        parsed = URL(url)
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host or not parsed.is_absolute():
        raise InvalidParameter(
            "Invalid URL: the url must be an absolute http:// or https:// URL with a host.", param="url"
        )
    address = literal_address(parsed.host)
    if address is not None and not is_allowed(address, allow):
        raise InvalidParameter(
            f"Invalid URL: {address} is not a public address; webhooks are only sent to public addresses "
            "(a self-hosted deployment may allow ranges with LEDGER_WEBHOOK_ALLOW_CIDRS).",
            param="url",
        )
    allowed_plain = address is not None and any(
        address in network for network in allow if network.version == address.version
    )
    if livemode and parsed.scheme != "https" and not allowed_plain:
        raise InvalidParameter("Invalid URL: live mode webhook endpoints must use https.", param="url")
    return url


def check_events(value: Any) -> tuple[str, ...]:
    events = _strings(value, "enabled_events")
    if not events:
        raise InvalidParameter("enabled_events must name at least one event type, or '*'.", param="enabled_events")
    for index, name in enumerate(events):
        if name not in KNOWN_EVENTS:
            raise InvalidParameter(
                f"Invalid enabled_events[{index}]: unknown event type {name!r}; use '*' or one of "
                f"{', '.join(EVENT_TYPES)}.",
                param=f"enabled_events[{index}]",
            )
    return tuple(dict.fromkeys(events))


def check_description(value: Any) -> str | None:
    description = _opt_string(value, "description")
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidParameter(
            f"Invalid description: must be at most {MAX_DESCRIPTION} characters.", param="description"
        )
    return description


def endpoint_create(params: Mapping[str, Any], *, livemode: bool, allow: Sequence[IPNetwork]) -> EndpointCreate:
    _check_keys(params, CREATE_PARAMS, NO_PARAMS, "")
    _accept_ignored(params, validate=False)
    url = check_url(_required(params, "url", ""), livemode=livemode, allow=allow)
    events = check_events(_required(params, "enabled_events", ""))
    description = check_description(params["description"]) if "description" in params else None
    metadata = _metadata(params["metadata"], "metadata") if "metadata" in params else {}
    validate_metadata(metadata)
    api_version = _opt_string(params["api_version"], "api_version") if "api_version" in params else None
    if api_version is not None and api_version not in versions.KNOWN:
        raise InvalidParameter(
            f"Invalid api_version: {api_version[:40]!r} is not a Stripe API version (the latest is"
            f" '{versions.LATEST}').",
            param="api_version",
        )
    if "connect" in params and not _unset(params["connect"]) and _boolean(params["connect"], "connect"):
        raise InvalidParameter(
            "Connect endpoints are not supported: this ledger has no connected accounts.",
            param="connect",
            code="parameter_unsupported",
        )
    return EndpointCreate(
        url=url, enabled_events=events, description=description, metadata=metadata, api_version=api_version
    )


def endpoint_update(params: Mapping[str, Any], *, livemode: bool, allow: Sequence[IPNetwork]) -> EndpointUpdate:
    for name in params:
        if name in FIXED_AT_CREATE:
            raise InvalidParameter(
                f"You can't change {name} after you create the endpoint.", param=name, code="parameter_unknown"
            )
    _check_keys(params, UPDATE_PARAMS, NO_PARAMS, "")
    _accept_ignored(params, validate=False)
    fields: dict[str, Any] = {}
    if "url" in params:
        fields["url"] = check_url(_required(params, "url", ""), livemode=livemode, allow=allow)
    if "enabled_events" in params:
        fields["enabled_events"] = check_events(_required(params, "enabled_events", ""))
    if "description" in params:
        fields["description"] = check_description(params["description"])
    if "metadata" in params:
        patch = fields["metadata"] = _metadata_patch(params["metadata"], "metadata")
        if patch is not None:
            validate_metadata(patch)
    if "disabled" in params:
        fields["disabled"] = _boolean(_required(params, "disabled", ""), "disabled")
    return EndpointUpdate(**fields)
