"""The Webhook Endpoints API over HTTP (form-encoded, like Stripe's SDKs send it), on a real PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from tests.support.databases import create_database as _create_database
from tests.support.databases import drop_database as _drop_database
from tests.support.databases import random_name as _random_name
from tests.support.databases import with_database as _with_database
from tests.support.webhooks import Api, serving

URL = "https://hooks.example.com/stripe"


async def count_rows(api: Api) -> tuple[int, int]:
    [row] = await api.fetch(
        "SELECT (SELECT count(*) FROM webhook_endpoints) AS e, (SELECT count(*) FROM webhook_subscriptions) AS s"
    )
    return row["e"], row["s"]


async def test_create_retrieve_update_list_delete(db_url: str) -> None:
    async with serving(db_url) as api:
        created = await api.endpoint(URL, ("customer.created", "customer.updated"), description="main",
                                     **{"metadata[team]": "billing", "api_version": "2026-10-28.endive"})
        assert re.fullmatch(r"we_[A-Za-z0-9]{24}", created["id"])
        assert re.fullmatch(r"whsec_[A-Za-z0-9]{32}", created["secret"])
        assert created | {"id": None, "secret": None, "created": None} == {
            "id": None, "object": "webhook_endpoint", "api_version": "2026-10-28.endive", "application": None,
            "created": None, "description": "main", "enabled_events": ["customer.created", "customer.updated"],
            "livemode": False, "metadata": {"team": "billing"}, "secret": None, "status": "enabled", "url": URL,
        }
        path = f"/v1/webhook_endpoints/{created['id']}"
        retrieved = await api.ok("GET", path)
        assert "secret" not in retrieved and retrieved == {k: v for k, v in created.items() if k != "secret"}
        updated = await api.ok("POST", path, {"url": URL + "/v2", "enabled_events[0]": "*", "description": "",
                                              "metadata[team]": "", "metadata[on]": "call", "disabled": "true"})
        assert (updated["url"], updated["enabled_events"], updated["description"], updated["metadata"], updated["status"]) == (
            URL + "/v2", ["*"], None, {"on": "call"}, "disabled")
        assert "secret" not in updated
        others = [await api.endpoint(f"{URL}/{n}") for n in range(3)]
        page = await api.ok("GET", "/v1/webhook_endpoints", {"limit": 2})
        assert [item["id"] for item in page["data"]] == [others[2]["id"], others[1]["id"]] and page["has_more"]
        rest = await api.ok("GET", "/v1/webhook_endpoints", {"limit": 2, "starting_after": others[1]["id"]})
        assert [item["id"] for item in rest["data"]] == [others[0]["id"], created["id"]] and not rest["has_more"]
        back = await api.ok("GET", "/v1/webhook_endpoints", {"limit": 1, "ending_before": others[0]["id"]})
        assert [item["id"] for item in back["data"]] == [others[1]["id"]]
        assert await api.ok("DELETE", path) == {"id": created["id"], "object": "webhook_endpoint", "deleted": True}
        status, body = await api.call("GET", path)
        assert status == 404 and body["error"]["code"] == "resource_missing"
        listed = await api.ok("GET", "/v1/webhook_endpoints")
        assert created["id"] not in [item["id"] for item in listed["data"]]


async def test_accounts_and_modes_never_see_each_others_endpoints(db_url: str) -> None:
    async with serving(db_url) as api:
        mine = await api.endpoint(URL)
        live = await api.endpoint(URL, key=api.live_key)
        assert live["livemode"] is True
        for key in (api.other_key, api.live_key):
            for method, form in (("GET", None), ("POST", {"description": "x"}), ("DELETE", None)):
                status, body = await api.call(method, f"/v1/webhook_endpoints/{mine['id']}", form, key=key)
                assert status == 404, (method, body)
        assert [item["id"] for item in (await api.ok("GET", "/v1/webhook_endpoints", key=api.other_key))["data"]] == []
        assert [item["id"] for item in (await api.ok("GET", "/v1/webhook_endpoints", key=api.live_key))["data"]] == [live["id"]]
        status, _ = await api.call("GET", "/v1/webhook_endpoints", {"starting_after": live["id"]})
        assert status == 400


async def test_at_most_16_endpoints_per_account_and_mode(db_url: str) -> None:
    async with serving(db_url) as api:
        for n in range(16):
            await api.endpoint(f"{URL}/{n}")
        status, body = await api.call("POST", "/v1/webhook_endpoints", {"url": URL, "enabled_events[0]": "*"})
        assert status == 400 and "16" in body["error"]["message"]
        await api.endpoint(URL, key=api.live_key)  # the other mode has its own 16
        await api.endpoint(URL, key=api.other_key)
        first = (await api.ok("GET", "/v1/webhook_endpoints", {"limit": 1}))["data"][0]
        await api.ok("DELETE", f"/v1/webhook_endpoints/{first['id']}")
        await api.endpoint(URL)


async def test_an_idempotency_key_makes_a_retried_create_one_endpoint(db_url: str) -> None:
    async with serving(db_url) as api:
        form = {"url": URL, "enabled_events[0]": "*"}
        headers = {"Authorization": f"Bearer {api.key}", "Idempotency-Key": "create-once"}
        answers = []
        for _ in range(2):
            async with api.http.post(api.base_url + "/v1/webhook_endpoints", data=form, headers=headers) as response:
                answers.append((response.status, response.headers.get("Idempotent-Replayed"), await response.json()))
        assert [status for status, _, _ in answers] == [200, 200]
        assert answers[0][2] == answers[1][2] and answers[1][1] == "true" and answers[0][1] is None
        assert await count_rows(api) == (1, 1)
        async with api.http.post(api.base_url + "/v1/webhook_endpoints", data={**form, "description": "x"},
                                 headers=headers) as response:
            body = await response.json()
            assert response.status == 400 and body["error"]["type"] == "idempotency_error", body
        path = f"/v1/webhook_endpoints/{answers[0][2]['id']}"
        delete = {"Authorization": f"Bearer {api.key}", "Idempotency-Key": "delete-once"}
        for _ in range(2):
            async with api.http.delete(api.base_url + path, headers=delete) as response:
                assert response.status == 200 and (await response.json())["deleted"] is True
        assert await count_rows(api) == (1, 2)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shared(admin_conn: asyncpg.Connection, database_url: str, template_db: str) -> AsyncIterator[Api]:
    """One service for the bad-input cases (each checks that it wrote nothing, whatever came before)."""
    name = _random_name("ledger_whapi_")
    await _create_database(admin_conn, name, template_db)
    try:
        async with serving(_with_database(database_url, name)) as api:
            yield api
    finally:
        await _drop_database(admin_conn, name)


CREATE_CASES = [
    ({"enabled_events[0]": "*"}, "url"),
    ({"url": URL}, "enabled_events"),
    ({"url": "ftp://example.com/x", "enabled_events[0]": "*"}, "url"),
    ({"url": "not a url", "enabled_events[0]": "*"}, "url"),
    ({"url": "https://" + "a" * 2050 + ".com/", "enabled_events[0]": "*"}, "url"),
    ({"url[x]": URL, "enabled_events[0]": "*"}, "url"),
    ({"url": URL, "enabled_events[0]": "invoice.paid"}, "enabled_events[0]"),
    ({"url": URL, "enabled_events[0]": "*", "enabled_events[1]": "customer.nope"}, "enabled_events[1]"),
    ({"url": URL, "enabled_events": "*"}, "enabled_events"),
    ({"url": URL, "enabled_events[0]": "*", "description": "d" * 5001}, "description"),
    ({"url": URL, "enabled_events[0]": "*", "metadata": "x"}, "metadata"),
    ({"url": URL, "enabled_events[0]": "*", "metadata[" + "k" * 41 + "]": "v"}, None),
    ({"url": URL, "enabled_events[0]": "*", "api_version": "yesterday"}, "api_version"),
    ({"url": URL, "enabled_events[0]": "*", "api_version": "2099-01-01.future"}, "api_version"),
    ({"url": URL, "enabled_events[0]": "*", "connect": "true"}, "connect"),
    ({"url": URL, "enabled_events[0]": "*", "connect": "maybe"}, "connect"),
    ({"url": URL, "enabled_events[0]": "*", "expand": "x"}, "expand"),
    ({"url": URL, "enabled_events[0]": "*", "colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("form", "param"), CREATE_CASES)
async def test_bad_create_input_is_a_400_naming_the_param_and_writes_nothing(
    shared: Api, form: dict[str, str], param: str | None
) -> None:
    api = shared
    before = await count_rows(api)
    status, body = await api.call("POST", "/v1/webhook_endpoints", form)
    assert status == 400, body
    assert body["error"]["type"] == "invalid_request_error"
    if param is not None:
        assert body["error"]["param"] == param, body
    else:
        assert body["error"]["param"].startswith("metadata"), body
    assert await count_rows(api) == before


async def test_live_mode_needs_https(db_url: str) -> None:
    async with serving(db_url) as api:
        status, body = await api.call(
            "POST", "/v1/webhook_endpoints", {"url": "http://hooks.example.com/", "enabled_events[0]": "*"}, key=api.live_key
        )
        assert status == 400 and body["error"]["param"] == "url" and "https" in body["error"]["message"]
        await api.endpoint("http://hooks.example.com/")  # test mode may use http
    async with serving(db_url, LEDGER_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8") as api:
        await api.endpoint("http://127.0.0.1:9/", key=api.live_key)  # allowed explicitly


UPDATE_CASES = [
    ({"url": ""}, "url"),
    ({"url": "http://10.0.0.1/"}, "url"),
    ({"enabled_events[0]": "charge.succeeded"}, "enabled_events[0]"),
    ({"enabled_events": ""}, "enabled_events"),
    ({"disabled": "yes"}, "disabled"),
    ({"disabled": ""}, "disabled"),
    ({"api_version": "2026-10-28.endive"}, "api_version"),
    ({"connect": "false"}, "connect"),
    ({"secret": "whsec_x"}, "secret"),
    ({"metadata[k]": "v" * 501}, "metadata[k]"),
]


@pytest.mark.parametrize(("form", "param"), UPDATE_CASES)
async def test_bad_update_input_is_a_400_naming_the_param_and_changes_nothing(
    shared: Api, form: dict[str, str], param: str
) -> None:
    api = shared
    created = await api.endpoint(URL)
    path = f"/v1/webhook_endpoints/{created['id']}"
    before = await count_rows(api)
    status, body = await api.call("POST", path, form)
    assert status == 400 and body["error"]["param"] == param, body
    assert await api.ok("GET", path) == {k: v for k, v in created.items() if k != "secret"}
    assert await count_rows(api) == before
    await api.ok("DELETE", path)  # the shared service stays below the 16-endpoint limit


@pytest.mark.parametrize(
    ("form", "param"),
    [({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "x"}, "limit"),
     ({"starting_after": "we_nope"}, "starting_after"), ({"ending_before": "we_nope"}, "ending_before"),
     ({"type": "x"}, "type")],
)
async def test_bad_list_input_is_a_400_naming_the_param(shared: Api, form: dict[str, str], param: str) -> None:
    status, body = await shared.call("GET", "/v1/webhook_endpoints", form)
    assert status == 400 and body["error"]["param"] == param, body


async def test_retrieve_and_delete_take_no_params_and_unknown_ids_are_404(db_url: str) -> None:
    async with serving(db_url) as api:
        created = await api.endpoint(URL)
        path = f"/v1/webhook_endpoints/{created['id']}"
        for method in ("GET", "DELETE"):
            status, body = await api.call(method, path, {"url": URL})
            assert status == 400 and body["error"]["param"] == "url"
        for method, form in (("GET", None), ("POST", {"description": "x"}), ("DELETE", None)):
            status, body = await api.call(method, "/v1/webhook_endpoints/we_missing", form)
            assert status == 404 and body["error"]["code"] == "resource_missing"
        status, _ = await api.call("GET", "/v1/webhook_endpoints/we_%00x")
        assert status == 404
        assert await count_rows(api) == (1, 1)


async def test_events_list_filter_values(db_url: str) -> None:
    async with serving(db_url) as api:
        await api.customer()
        assert len((await api.ok("GET", "/v1/events", {"delivery_success": "true"}))["data"]) == 1
        assert (await api.ok("GET", "/v1/events", {"delivery_success": "false"}))["data"] == []
        status, body = await api.call("GET", "/v1/events", {"delivery_success": "maybe"})
        assert status == 400 and body["error"]["param"] == "delivery_success"
