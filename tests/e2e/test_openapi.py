"""The OpenAPI document (`service.openapi`): valid OpenAPI 3.1, in step with the router and the params
layer, and true of real responses from a running `ledgerd serve`."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import jsonschema
import pytest
import requests
from aiohttp.test_utils import make_mocked_request
from openapi_spec_validator import OpenAPIV31SpecValidator

from ledgerd.domain.money import MAX_AMOUNT
from ledgerd.service import openapi, params, routes
from ledgerd.service.app import PUBLIC_PATHS, create_app
from ledgerd.service.config import Config
from ledgerd.service.explorer import DOCS_PATH, DOCS_PREFIX
from ledgerd.service.openapi import OPENAPI_PATH, document
from ledgerd.service.webhooks import params as webhook_params
from tests.support.server import Server

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
JSON = "application/json"


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, op


def app_routes() -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves; HEAD is aiohttp's automatic twin of GET."""
    config = Config(
        database_url="postgresql://unused@127.0.0.1/unused", log_level="warning", access_log=False
    )
    app = create_app(config)  # builds the router only: the pool is opened on startup, which never runs
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path")
        if route.method != "HEAD":
            found.add((route.method, template))
    return found


# ---------------------------------------------------------------------------------------------------
# the document itself
# ---------------------------------------------------------------------------------------------------


def test_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(doc).validate()
    for name, schema in doc["components"]["schemas"].items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:  # pragma: no cover - the message names the schema
            pytest.fail(f"components.schemas.{name}: {exc.message}")
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))


def test_document_is_built_once_and_served_as_is() -> None:
    first, second = document(), document()
    assert first == second and first is not second  # a copy each time: callers may mutate it
    first["paths"].clear()
    assert document()["paths"]
    response = asyncio.run(openapi.openapi_view(make_mocked_request("GET", OPENAPI_PATH)))
    assert response.content_type == JSON
    assert response.body is not None
    assert json.loads(bytes(response.body)) == document()


def test_every_route_is_documented_and_nothing_else() -> None:
    documented = {(method, path) for method, path, _ in operations(document())}
    served = app_routes()
    served -= {("GET", DOCS_PATH), ("GET", DOCS_PREFIX + "{name}")}  # the explorer page: not API
    assert documented == served


def test_public_paths_need_no_key_and_the_rest_do() -> None:
    doc = document()
    assert {OPENAPI_PATH, "/healthz", "/readyz", "/metrics"} <= PUBLIC_PATHS
    for method, path, op in operations(doc):
        if path in PUBLIC_PATHS:
            assert op.get("security") == [], f"{method} {path}"
            assert "401" not in op["responses"]
        else:
            assert "security" not in op, f"{method} {path}"  # the global bearer/basic requirement
            for status in ("400", "401", "429", "500", "503"):
                assert status in op["responses"], f"{method} {path} lacks {status}"
            if method in ("POST", "DELETE"):
                assert {"404", "409", "413"} <= set(op["responses"]), f"{method} {path}"
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["basicAuth"] == {**schemes["basicAuth"], "type": "http", "scheme": "basic"}


def body_properties(doc: dict[str, Any], method: str, path: str) -> set[str]:
    content = doc["paths"][path][method]["requestBody"]["content"]
    form = content["application/x-www-form-urlencoded"]["schema"]
    assert content[JSON]["schema"] == form  # one schema for both media types
    name = form["$ref"].rsplit("/", 1)[1]
    return set(doc["components"]["schemas"][name]["properties"])


def query_names(doc: dict[str, Any], method: str, path: str) -> set[str]:
    return {p["name"] for p in doc["paths"][path][method].get("parameters", []) if p["in"] == "query"}


def test_parameters_match_the_params_layer() -> None:
    doc = document()
    customers, customer = "/v1/customers", "/v1/customers/{customer}"
    transactions = f"{customer}/balance_transactions"
    assert body_properties(doc, "post", customers) == params.CUSTOMER_PARAMS
    assert body_properties(doc, "post", customer) == params.CUSTOMER_PARAMS
    assert body_properties(doc, "post", transactions) == params.TRANSACTION_CREATE_PARAMS
    assert body_properties(doc, "post", f"{transactions}/{{transaction}}") == params.TRANSACTION_UPDATE_PARAMS
    assert not params.UNSUPPORTED_CUSTOMER_PARAMS & params.CUSTOMER_PARAMS
    pagination = params.PAGINATION_PARAMS
    assert query_names(doc, "get", customers) == pagination | routes.CUSTOMER_LIST_FILTERS
    assert query_names(doc, "get", transactions) == pagination | routes.TRANSACTION_LIST_FILTERS | {"as_of"}
    assert query_names(doc, "get", "/v1/events") == pagination | routes.EVENT_LIST_FILTERS
    assert query_names(doc, "get", "/v1/customers/search") == params.SEARCH_PARAMS
    assert query_names(doc, "get", customer) == {"expand", "as_of"}
    assert query_names(doc, "get", f"{customer}/history") == pagination
    for path in (f"{transactions}/{{transaction}}", "/v1/events/{event}"):
        assert query_names(doc, "get", path) == {"expand"}
    assert query_names(doc, "delete", customer) == {"expand"}
    endpoints, endpoint = "/v1/webhook_endpoints", "/v1/webhook_endpoints/{webhook_endpoint}"
    assert body_properties(doc, "post", endpoints) == webhook_params.CREATE_PARAMS
    assert body_properties(doc, "post", endpoint) == webhook_params.UPDATE_PARAMS
    assert query_names(doc, "get", endpoints) == pagination
    assert query_names(doc, "get", endpoint) == query_names(doc, "delete", endpoint) == {"expand"}


def test_limits_match_the_code() -> None:
    doc = document()
    assert openapi.MAX_IDEMPOTENCY_KEY == routes.MAX_IDEMPOTENCY_KEY
    max_body = next(f.default for f in fields(Config) if f.name == "max_body_bytes")
    assert doc["x-limits"]["max_body_bytes"] == max_body
    schemas = doc["components"]["schemas"]
    amount = schemas["customer_balance_transaction_create_params"]["properties"]["amount"]
    assert (amount["minimum"], amount["maximum"]) == (-MAX_AMOUNT, MAX_AMOUNT)
    tax_exempt = schemas["customer"]["properties"]["tax_exempt"]
    assert tax_exempt["enum"] == ["exempt", "none", "reverse"]


# ---------------------------------------------------------------------------------------------------
# real responses against the document
# ---------------------------------------------------------------------------------------------------


class Api:
    """A small requests client that checks every response against the document."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.doc = document()
        self.checked: set[tuple[str, str, int]] = set()

    def call(
        self,
        method: str,
        template: str,
        *,
        path_params: dict[str, str] | None = None,
        key: str | None = "default",
        **kwargs: Any,
    ) -> requests.Response:
        url = self.server.base_url + template.format(**(path_params or {}))
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {self.server.key if key == 'default' else key}"
        response = requests.request(method, url, headers=headers, timeout=10, **kwargs)
        self.check(method, template, response)
        return response

    def check(self, method: str, template: str, response: requests.Response) -> None:
        op = self.doc["paths"][template][method.lower()]
        status = str(response.status_code)
        assert status in op["responses"], (
            f"{method} {template}: undocumented status {status}: {response.text}"
        )
        documented = self.resolve(op["responses"][status])
        media = response.headers["Content-Type"].split(";")[0].strip()
        assert media in documented["content"], f"{method} {template} {status}: undocumented {media}"
        for name, header in documented.get("headers", {}).items():
            header = self.resolve(header)
            if header.get("required"):
                assert name in response.headers, f"{method} {template} {status}: no {name} header"
            if name in response.headers:
                validate(self.doc, header["schema"], response.headers[name])
        if media == JSON:
            validate(self.doc, documented["content"][media]["schema"], response.json())
        self.checked.add((method, template, response.status_code))

    def resolve(self, value: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in value:
            node: Any = self.doc
            for part in value["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            value = node
        return value


def validate(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Validate against a schema of the document, its `#/components/...` references resolved."""
    root = {"components": doc["components"], **schema}
    jsonschema.Draft202012Validator(root).validate(instance)


@pytest.fixture(scope="module")
def api(server: Server) -> Api:
    return Api(server)


def unique() -> str:
    """A tag for the names and keys one sequence of calls uses, so that it can run again on the same server."""
    return uuid.uuid4().hex[:10]


def customer_calls(api: Api) -> None:
    tag = unique()
    form = {
        "email": "jenny@example.com",
        "name": "Jenny Rosen",
        "phone": "+15555550123",
        "description": "VIP",
        "business_name": "Rosen LLC",
        "individual_name": "Jenny",
        "external_id": f"crm-{tag}",
        "address[line1]": "1 Main St",
        "address[city]": "Springfield",
        "shipping[name]": "Jenny",
        "shipping[address][country]": "US",
        "shipping[phone]": "+1555",
        "balance": "-500",
        "currency": "usd",
        "invoice_prefix": "JENNY1",
        "invoice_settings[custom_fields][0][name]": "VAT",
        "invoice_settings[custom_fields][0][value]": "GB123",
        "invoice_settings[footer]": "Thanks",
        "invoice_settings[rendering_options][amount_tax_display]": "exclude_tax",
        "invoice_settings[rendering_options][template]": "tmpl_1",
        "next_invoice_sequence": "7",
        "preferred_locales[0]": "en",
        "preferred_locales[1]": "fr-CA",
        "tax_exempt": "reverse",
        "metadata[plan]": "pro",
        "metadata[seats]": "3",
        "expand[]": "default_source",
        "validate": "true",
    }
    once = {"Idempotency-Key": f"openapi-create-{tag}"}
    created = api.call("POST", "/v1/customers", data=form, headers=once)
    assert created.status_code == 200, created.text
    customer = created.json()["id"]
    replay = api.call("POST", "/v1/customers", data=form, headers=once)
    assert replay.headers["Idempotent-Replayed"] == "true"
    mismatch = api.call(
        "POST",
        "/v1/customers",
        data={"email": "x@example.com"},
        headers=once,
    )
    assert mismatch.status_code == 400
    assert (
        api.call(
            "POST", "/v1/customers", json={"email": "json@example.com", "metadata": {"a": "1"}}
        ).status_code
        == 200
    )
    upsert = api.call("POST", "/v1/customers", json={"external_id": f"crm-{tag}", "name": f"Jenny R. {tag}"})
    assert upsert.json()["id"] == customer
    one = {"customer": customer}
    assert api.call("GET", "/v1/customers/{customer}", path_params=one).status_code == 200
    then = api.call("GET", "/v1/customers/{customer}", path_params=one, params={"as_of": "4102444800"})
    assert then.status_code == 200 and then.json()["id"] == customer
    history = api.call("GET", "/v1/customers/{customer}/history", path_params=one)
    assert history.status_code == 200 and history.json()["data"][0]["type"] == "CustomerCreated"
    ledger_then = api.call(
        "GET",
        "/v1/customers/{customer}/balance_transactions",
        path_params=one,
        params={"as_of": "4102444800"},
    )
    assert ledger_then.status_code == 200
    updated = api.call(
        "POST",
        "/v1/customers/{customer}",
        path_params=one,
        data={"email": "", "metadata[plan]": "", "metadata[new]": "x", "balance": "250", "address": ""},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["email"] is None and updated.json()["balance"] == 250
    listed = api.call(
        "GET", "/v1/customers", params={"limit": "2", "created[gte]": "0", "email": "JENNY@example.com"}
    )
    assert listed.status_code == 200 and listed.json()["data"] == []
    assert api.call("GET", "/v1/customers", params={"limit": "100"}).json()["data"]
    page = api.call("GET", "/v1/customers", params={"limit": "1"}).json()
    assert page["has_more"]
    api.call("GET", "/v1/customers", params={"starting_after": page["data"][0]["id"], "expand[0]": "data.tax"})
    found = api.call("GET", "/v1/customers/search", params={"query": f"name:'Jenny R. {tag}'", "limit": "1"})
    assert [c["id"] for c in found.json()["data"]] == [customer]
    api.call(
        "GET", "/v1/customers/search", params={"query": "metadata['new']:'x' OR email~'json'", "limit": "1"}
    )
    deleted = api.call("DELETE", "/v1/customers/{customer}", path_params=one)
    assert deleted.json() == {"id": customer, "object": "customer", "deleted": True}
    assert api.call("GET", "/v1/customers/{customer}", path_params=one).json()["deleted"] is True
    assert (
        api.call("POST", "/v1/customers/{customer}", path_params=one, data={"name": "x"}).status_code == 404
    )
    assert api.call("DELETE", "/v1/customers/{customer}", path_params=one).status_code == 404


def balance_transaction_and_event_calls(api: Api) -> None:
    customer = api.call("POST", "/v1/customers", data={"name": "Ledger"}).json()["id"]
    one = {"customer": customer}
    template = "/v1/customers/{customer}/balance_transactions"
    created = api.call(
        "POST", template, path_params=one, data={"amount": "-500", "currency": "eur", "metadata[k]": "v"}
    )
    assert created.status_code == 200, created.text
    transaction = created.json()["id"]
    api.call(
        "POST", template, path_params=one, json={"amount": 200, "currency": "eur", "description": "debit"}
    )
    other = api.call("POST", template, path_params=one, data={"amount": "1", "currency": "usd"})
    assert other.json()["ending_balance"] == 1  # another currency: its own ledger
    listed = api.call("GET", template, path_params=one, params={"limit": "1", "created[lte]": "99999999999"})
    assert listed.json()["has_more"] is True
    both = {**one, "transaction": transaction}
    single = f"{template}/{{transaction}}"
    assert api.call("GET", single, path_params=both).json()["amount"] == -500
    updated = api.call("POST", single, path_params=both, data={"description": "goodwill", "metadata[k]": ""})
    assert updated.json()["metadata"] == {}
    assert api.call("GET", single, path_params={**one, "transaction": "cbtxn_missing"}).status_code == 404
    assert api.call("GET", template, path_params={"customer": "cus_missing"}).status_code == 404
    api.call("POST", "/v1/customers/{customer}", path_params=one, data={"balance": "0", "metadata[a]": "b"})
    events = api.call("GET", "/v1/events", params={"limit": "100"}).json()["data"]
    kinds = {event["type"] for event in events}
    assert {"customer.created", "customer.updated", "customer_balance_transaction.created"} <= kinds
    assert "customer_balance_transaction.updated" in kinds
    for event in events[:20]:
        api.call("GET", "/v1/events/{event}", path_params={"event": event["id"]})
    api.call("GET", "/v1/events", params={"types[0]": "customer.updated", "types[1]": "customer.deleted"})
    api.call(
        "GET", "/v1/events", params={"type": "customer_balance_transaction.*", "delivery_success": "true"}
    )
    assert api.call("GET", "/v1/events/{event}", path_params={"event": "evt_missing"}).status_code == 404


def error_calls(api: Api) -> None:
    missing = api.call("GET", "/v1/customers/{customer}", path_params={"customer": "cus_missing"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_missing"
    unknown = api.call("POST", "/v1/customers", data={"nickname": "x"})
    assert unknown.json()["error"] == {
        **unknown.json()["error"],
        "code": "parameter_unknown",
        "param": "nickname",
    }
    unsupported = api.call("POST", "/v1/customers", data={"source": "tok_1NxYzReal"})
    assert unsupported.json()["error"]["code"] == "parameter_unsupported"
    assert api.call("GET", "/v1/customers", params={"limit": "0"}).status_code == 400
    assert api.call("GET", "/v1/customers/search", params={"query": "nope:'x'"}).status_code == 400
    assert api.call("POST", "/v1/customers", json=[1]).status_code == 400
    assert api.call("GET", "/v1/customers", key=None).status_code == 401
    assert api.call("GET", "/v1/customers", key="sk_test_wrong").status_code == 401
    basic = api.call("GET", "/v1/customers", key=None, auth=(api.server.key, ""))
    assert basic.status_code == 200
    too_big = api.call("POST", "/v1/customers", data={"description": "x" * (1024 * 1024 + 1)})
    assert too_big.status_code == 413
    bad_key = api.call("POST", "/v1/customers", data={"name": "x"}, headers={"Idempotency-Key": "k" * 256})
    assert bad_key.status_code == 400


def operations_calls(api: Api) -> None:
    assert api.call("GET", "/healthz", key=None).json() == {"status": "ok"}
    assert api.call("GET", "/readyz", key=None).json() == {"status": "ready"}
    assert "ledger_http_requests" in api.call("GET", "/metrics", key=None).text
    response = api.call("GET", OPENAPI_PATH, key=None)  # served without a key
    assert response.status_code == 200
    assert response.json() == document()


def webhook_endpoint_calls(api: Api) -> None:
    form = {"url": "https://hooks.example.com/x", "enabled_events[0]": "customer.created", "metadata[k]": "v"}
    created = api.call("POST", "/v1/webhook_endpoints", data=form)
    assert created.status_code == 200, created.text
    one = {"webhook_endpoint": created.json()["id"]}
    single = "/v1/webhook_endpoints/{webhook_endpoint}"
    api.call("POST", "/v1/webhook_endpoints", json={"url": "https://h.example.com", "enabled_events": ["*"]})
    assert api.call("POST", "/v1/webhook_endpoints", data={"url": "x"}).status_code == 400
    assert api.call("GET", "/v1/webhook_endpoints", params={"limit": "1"}).json()["has_more"] is True
    assert api.call("GET", single, path_params=one).json()["metadata"] == {"k": "v"}
    assert api.call("POST", single, path_params=one, data={"disabled": "true"}).json()["status"] == "disabled"
    rolled = api.call("POST", single + "/roll_secret", path_params=one, data={"expire_previous_in": "60"})
    assert rolled.json()["secret"].startswith("whsec_")
    assert api.call("POST", single + "/recover", path_params=one, data={"since": "0"}).json()["deliveries"] >= 0
    assert api.call("GET", single + "/attempts", path_params=one, params={"limit": "5"}).status_code == 200
    event = api.call("GET", "/v1/events", params={"limit": "1"}).json()["data"][0]["id"]
    assert api.call("GET", "/v1/events/{event}/attempts", path_params={"event": event}).status_code == 200
    retried = api.call("POST", "/v1/events/{event}/retry", path_params={"event": event}, data={"webhook_endpoint": one["webhook_endpoint"]})
    assert retried.status_code == 400  # the endpoint is disabled
    assert api.call("DELETE", single, path_params=one).json()["deleted"] is True
    assert api.call("GET", single, path_params=one).status_code == 404


CALLS = (customer_calls, balance_transaction_and_event_calls, error_calls, operations_calls, webhook_endpoint_calls)


def test_customer_calls_match_the_document(api: Api) -> None:
    customer_calls(api)


def test_balance_transaction_and_event_calls_match_the_document(api: Api) -> None:
    balance_transaction_and_event_calls(api)


def test_error_calls_match_the_document(api: Api) -> None:
    error_calls(api)


def test_webhook_endpoint_calls_match_the_document(api: Api) -> None:
    webhook_endpoint_calls(api)


def test_operations_and_openapi_json_match_the_document(api: Api) -> None:
    operations_calls(api)


def test_balance_adjustments_stay_within_the_documented_amount(api: Api) -> None:
    """Every ledger entry's `amount` is within +/-MAX_AMOUNT, as documented (and in the README): setting
    `balance` further than that from the current balance is a 400 naming `balance`."""
    created = api.call("POST", "/v1/customers", data={"currency": "usd", "balance": str(MAX_AMOUNT)})
    one = {"customer": created.json()["id"]}
    too_far = api.call(
        "POST", "/v1/customers/{customer}", path_params=one, data={"balance": str(-MAX_AMOUNT)}
    )
    assert too_far.status_code == 400 and too_far.json()["error"]["param"] == "balance"
    within = api.call("POST", "/v1/customers/{customer}", path_params=one, data={"balance": "0"})
    assert within.status_code == 200
    entries = api.call("GET", "/v1/customers/{customer}/balance_transactions", path_params=one).json()
    assert [entry["amount"] for entry in entries["data"]] == [-MAX_AMOUNT, MAX_AMOUNT]


def test_every_documented_operation_was_exercised(server: Server) -> None:
    """Runs every sequence of calls itself (on a fresh client), so it checks the same under -k, xdist or
    any order: each documented operation got at least one real call checked against the document."""
    api = Api(server)
    for calls in CALLS:
        calls(api)
    exercised = {(method, template) for method, template, _ in api.checked}
    documented = {(method, path) for method, path, _ in operations(api.doc)}
    missing = documented - exercised
    assert not missing, f"no real call checked: {sorted(missing)}"


def test_form_encodings_name_real_properties() -> None:
    doc = document()
    for method, path, op in operations(doc):
        form = op.get("requestBody", {}).get("content", {}).get("application/x-www-form-urlencoded")
        if form is None:
            continue
        name = form["schema"]["$ref"].rsplit("/", 1)[1]
        properties = doc["components"]["schemas"][name]["properties"]
        assert set(form["encoding"]) <= set(properties), f"{method} {path}"
        assert "metadata" in form["encoding"] or "metadata" not in properties, f"{method} {path}"
