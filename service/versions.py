"""Stripe API versions: the table of dated versions, and the version gates between them.

A request is answered at one version: its `Stripe-Version` header, else its account's default
(`ledgerd api-keys create --api-version`), else the latest. The server works at the latest version
only; a gate is a small declared transformation, applied to the request params on the way in and to
every object of the response on the way out, for requests older than the version that introduced the
change (Stripe's own design: the core speaks the newest shape, a chain of gates renders older ones).

The table is Stripe's list of versions as the official SDKs enumerate them (stripe-node 23.1.0
`cjs/resources/WebhookEndpoints.d.ts` and stripe-python `stripe/params/_webhook_endpoint_create_params.py`,
the `api_version` enum of webhook endpoint create; `tests/unit/test_versions.py` checks it against the
installed stripe-python); the gates cite the changelog entry they implement (docs.stripe.com/changelog).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ledgerd.service.errors import StripeError

_TABLE = """
    2011-01-01 2011-06-21 2011-06-28 2011-08-01 2011-09-15 2011-11-17 2012-02-23 2012-03-25 2012-06-18
    2012-06-28 2012-07-09 2012-09-24 2012-10-26 2012-11-07 2013-02-11 2013-02-13 2013-07-05 2013-08-12
    2013-08-13 2013-10-29 2013-12-03 2014-01-31 2014-03-13 2014-03-28 2014-05-19 2014-06-13 2014-06-17
    2014-07-22 2014-07-26 2014-08-04 2014-08-20 2014-09-08 2014-10-07 2014-11-05 2014-11-20 2014-12-08
    2014-12-17 2014-12-22 2015-01-11 2015-01-26 2015-02-10 2015-02-16 2015-02-18 2015-03-24 2015-04-07
    2015-06-15 2015-07-07 2015-07-13 2015-07-28 2015-08-07 2015-08-19 2015-09-03 2015-09-08 2015-09-23
    2015-10-01 2015-10-12 2015-10-16 2016-02-03 2016-02-19 2016-02-22 2016-02-23 2016-02-29 2016-03-07
    2016-06-15 2016-07-06 2016-10-19 2017-01-27 2017-02-14 2017-04-06 2017-05-25 2017-06-05 2017-08-15
    2017-12-14 2018-01-23 2018-02-05 2018-02-06 2018-02-28 2018-05-21 2018-07-27 2018-08-23 2018-09-06
    2018-09-24 2018-10-31 2018-11-08 2019-02-11 2019-02-19 2019-03-14 2019-05-16 2019-08-14 2019-09-09
    2019-10-08 2019-10-17 2019-11-05 2019-12-03 2020-03-02 2020-08-27 2022-08-01 2022-11-15 2023-08-16
    2023-10-16 2024-04-10 2024-06-20 2024-09-30.acacia 2024-10-28.acacia 2024-11-20.acacia
    2024-12-18.acacia 2025-01-27.acacia 2025-02-24.acacia 2025-03-01.dashboard 2025-03-31.basil
    2025-04-30.basil 2025-05-28.basil 2025-06-30.basil 2025-07-30.basil 2025-08-27.basil
    2025-09-30.clover 2025-10-29.clover 2025-11-17.clover 2025-12-15.clover 2026-01-28.clover
    2026-02-25.clover 2026-03-25.dahlia 2026-04-22.dahlia 2026-05-27.dahlia 2026-06-24.dahlia
    2026-07-29.dahlia 2026-08-26.dahlia 2026-09-30.endive 2026-10-28.endive
"""  # one version per word, oldest first
VERSIONS: Final[tuple[str, ...]] = tuple(_TABLE.split())
LATEST: Final[str] = VERSIONS[-1]
KNOWN: Final[frozenset[str]] = frozenset(VERSIONS)
ORDER: Final[Mapping[str, int]] = {version: index for index, version in enumerate(VERSIONS)}

# The endpoints whose params a gate's request side rewrites: (method, route pattern).
CUSTOMER_WRITES: Final[frozenset[tuple[str, str]]] = frozenset(
    {("POST", "/v1/customers"), ("POST", "/v1/customers/{customer}")}
)


def embedded_list(url: str) -> dict[str, Any]:
    return {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": url}


def customer_lists(customer: dict[str, Any]) -> dict[str, Any]:
    """What a customer carried before 2020-08-27: its sources, subscriptions and tax ids (none here)."""
    base = f"/v1/customers/{customer['id']}"
    return {name: embedded_list(f"{base}/{name}") for name in ("sources", "subscriptions", "tax_ids")}


@dataclass(frozen=True)
class Gate:
    """A change made at `version`; requests at an older version get the old behaviour.

    `renames` maps object type -> {current field: old field}: responses at older versions show the old
    name, and the params of `params_of` endpoints are accepted under the old name only. `defaults` maps
    object type -> the fields it included by default before (rendered at older versions unless
    present); `removes` maps object type -> the fields it did not have yet (an older gate's defaults
    that this change introduced). `forbids_list_total_count`: from this version `expand[]=total_count` on a list is a 400.
    """

    version: str
    change: str
    source: str
    renames: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    params_of: frozenset[tuple[str, str]] = frozenset()
    defaults: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)
    removes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    forbids_list_total_count: bool = False


def vat_id(customer: dict[str, Any]) -> dict[str, Any]:
    return {"business_vat_id": None}  # no tax ids are kept here


def tax_info(customer: dict[str, Any]) -> dict[str, Any]:
    return {"tax_info": None, "tax_info_verification": None}


def default_currency(customer: dict[str, Any]) -> dict[str, Any]:
    return {"default_currency": customer.get("currency")}


GATES: Final[tuple[Gate, ...]] = (  # oldest first
    Gate(
        version="2018-08-23",
        change="Customer `business_vat_id` (a string) becomes `tax_info` (a hash) and `tax_info_verification`.",
        source="https://docs.stripe.com/changelog/2018-08-23/customers-provide-tax-info-object",
        defaults={"customer": vat_id},
        removes={"customer": ("tax_info", "tax_info_verification")},
    ),
    Gate(
        version="2019-10-17",
        change="Customer `account_balance` is renamed `balance`.",
        source="https://docs.stripe.com/changelog/2019-10-17/renames-account-balance-customer-object",
        renames={"customer": {"balance": "account_balance"}},
        params_of=CUSTOMER_WRITES,
    ),
    Gate(
        version="2019-12-03",
        change="The deprecated customer `tax_info` and `tax_info_verification` are removed.",
        source="https://docs.stripe.com/changelog/2019-12-03/removes-deprecated-tax-information-fields",
        defaults={"customer": tax_info},
    ),
    Gate(
        version="2020-08-27",
        change="Customer `sources`, `subscriptions` and `tax_ids` are no longer included by default.",
        source="https://docs.stripe.com/changelog/2020-08-27/deprecates-auto-expansion-customer-sources",
        defaults={"customer": customer_lists},
    ),
    Gate(
        version="2022-08-01",
        change="Customer `default_currency` is removed (it was the customer's `currency`).",
        source="https://docs.stripe.com/changelog/2022-08-01/removes-default-currency-customer-object",
        defaults={"customer": default_currency},
    ),
    Gate(
        version="2025-03-31.basil",
        change="`total_count` can no longer be expanded on lists (search results keep it).",
        source="https://docs.stripe.com/changelog/basil/2025-03-31/deprecate-total-count-expansion",
        forbids_list_total_count=True,
    ),
)


def older(version: str, than: str) -> bool:
    return ORDER[version] < ORDER[than]


def gates_for(version: str) -> tuple[Gate, ...]:
    """The gates a request at `version` passes through, newest first (the order Stripe undoes them)."""
    return tuple(gate for gate in reversed(GATES) if older(version, gate.version))


def resolve(header: str | None, account_default: str | None) -> str:
    """The version a request is answered at; an unknown `Stripe-Version` is a 400."""
    if header is not None:
        requested = header.strip()
        if requested not in KNOWN:
            shown = requested if len(requested) <= 100 else requested[:100] + "..."
            raise StripeError(400, f"Invalid Stripe API version: {shown}", param="Stripe-Version")
        return requested
    if account_default is not None and account_default in KNOWN:
        return account_default
    return LATEST


def check_known(version: str) -> str:
    """For the CLI: the version, or ValueError naming the latest."""
    if version not in KNOWN:
        raise ValueError(f"unknown Stripe API version {version!r}; the latest is {LATEST}")
    return version


def list_total_count_allowed(version: str) -> bool:
    return not any(gate.forbids_list_total_count and not older(version, gate.version) for gate in GATES)


# ---------------------------------------------------------------------------------------------------
# request side
# ---------------------------------------------------------------------------------------------------


def downgrade_params(version: str, method: str, route: str, params: dict[str, Any]) -> dict[str, Any]:
    """The params of a request at `version` as the current API names them."""
    for gate in gates_for(version):
        if (method, route) not in gate.params_of:
            continue
        for renames in gate.renames.values():
            for current, old in renames.items():
                if current in params:  # a StripeError: its param is the one sent, never renamed back
                    raise StripeError(
                        400,
                        f"Received unknown parameter: {current} (API version {version} calls it {old})",
                        param=current,
                        code="parameter_unknown",
                    )
                if old in params:
                    params = {(current if key == old else key): value for key, value in params.items()}
    return params


def old_param_name(version: str, method: str, route: str, param: str) -> str:
    """A rejected param as a request at `version` named it (`balance` -> `account_balance`)."""
    for gate in gates_for(version):
        if (method, route) in gate.params_of:
            for renames in gate.renames.values():
                param = renames.get(param, param)
    return param


# ---------------------------------------------------------------------------------------------------
# response side
# ---------------------------------------------------------------------------------------------------


# The version an event's `data` renders at: one for all, or per event (its account's version when it
# was created, service/accounts.py).
EventVersion = str | Callable[[Mapping[str, Any]], str]


def render_at(document: Any, version: str, *, event_version: EventVersion) -> Any:
    """`document` (a response body, already JSON-decoded) as `version` shows it. An event's
    `data` is rendered at `event_version` (its account's version), which it names in `api_version`."""
    gates = gates_for(version)
    return _walk(document, gates, event_version)


def needs_rendering(version: str) -> bool:
    return bool(gates_for(version))


def render_event_data(event: dict[str, Any], version: str) -> dict[str, Any]:
    """An event as an endpoint pinned to `version` receives it (for webhook deliveries too)."""
    data = event.get("data")
    rendered = dict(event, api_version=version)
    if isinstance(data, dict):
        gates = gates_for(version)
        walked = {key: _walk(value, gates, version) for key, value in data.items()}
        kind = data.get("object", {}).get("object") if isinstance(data.get("object"), dict) else None
        previous = walked.get("previous_attributes")
        if isinstance(kind, str) and isinstance(previous, dict):  # the changed fields, by their old names
            for gate in gates:
                renames = gate.renames.get(kind, {})
                previous = {renames.get(key, key): item for key, item in previous.items()}
            walked["previous_attributes"] = previous
        rendered["data"] = walked
    return rendered


def _walk(value: Any, gates: tuple[Gate, ...], event_version: EventVersion) -> Any:
    if isinstance(value, list):
        return [_walk(item, gates, event_version) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("object")
    if kind == "event":
        return render_event_data(
            value, event_version if isinstance(event_version, str) else event_version(value)
        )
    walked = {key: _walk(item, gates, event_version) for key, item in value.items()}
    if isinstance(kind, str):
        walked = _gate_object(kind, walked, gates)
    return walked


def _gate_object(kind: str, obj: dict[str, Any], gates: tuple[Gate, ...]) -> dict[str, Any]:
    if obj.get("deleted") is True:
        return obj
    for gate in gates:
        for name, make in gate.defaults.items():
            if name == kind:
                obj = {**make(obj), **obj}
        removed = gate.removes.get(kind, ())
        if removed:
            obj = {key: item for key, item in obj.items() if key not in removed}
        renames = gate.renames.get(kind)
        if renames:
            obj = {renames.get(key, key): item for key, item in obj.items()}
    return obj
