"""Delivery to a real local receiver (aiohttp on 127.0.0.1), through the service as it runs in production
(dispatcher and workers in the app's cleanup context), against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import time

import asyncpg
import stripe
from standardwebhooks import Webhook as StandardWebhook

from ledgerd.service import versions
from tests.support.webhooks import Api, receiving, serving

ALLOW = {"LEDGER_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8", "LEDGER_WEBHOOK_RETRY_SCHEDULE": "0.3,0.6,1.2"}


async def attempts_of(api: Api, endpoint_id: str) -> list[asyncpg.Record]:
    return await api.fetch("SELECT * FROM webhook_attempts WHERE endpoint_id = $1 ORDER BY id", endpoint_id)


async def test_every_event_is_signed_for_stripe_and_standard_webhooks(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **ALLOW) as api:
        endpoint = await api.endpoint(receiver.url())
        secret = endpoint["secret"]
        customer = await api.customer(name="Jenny")
        await api.ok("POST", f"/v1/customers/{customer['id']}/balance_transactions", {"amount": 100, "currency": "usd"})
        received = await receiver.wait_for(lambda got: len(got) >= 3)
        types = sorted(item.event["type"] for item in received)
        assert types == ["customer.created", "customer.updated", "customer_balance_transaction.created"]
        for item in received:
            # stripe-python's own verification, with its default 300 s tolerance, over the exact bytes.
            event = stripe.Webhook.construct_event(item.body, item.headers["Stripe-Signature"], secret)
            assert event.id == item.event["id"] and event.type == item.event["type"]
            # The Standard Webhooks oracle, with the same secret decoded per that spec.
            verified = StandardWebhook(secret).verify(item.body, item.headers)
            assert verified["id"] == item.headers["webhook-id"] == item.event["id"]
            assert item.headers["Content-Type"].startswith("application/json")
            # A wrong secret fails both.
            try:
                stripe.Webhook.construct_event(item.body, item.headers["Stripe-Signature"], secret + "x")
            except stripe.SignatureVerificationError:
                pass
            else:
                raise AssertionError("a wrong secret verified")
            assert item.event == await api.ok("GET", f"/v1/events/{item.event['id']}") | {
                "pending_webhooks": item.event["pending_webhooks"]
            }
        created = next(item.event for item in received if item.event["type"] == "customer.created")
        assert created["data"]["object"]["id"] == customer["id"]
        assert created["pending_webhooks"] == 1  # sent while its one delivery was pending
        final = await api.wait_pending_zero(created["id"])
        assert final["pending_webhooks"] == 0


async def test_payloads_render_at_the_endpoints_api_version(db_url: str) -> None:
    """An endpoint pinned to a version before 2019-10-17 receives `account_balance`, not `balance`,
    and the event says which version it was rendered at; an unpinned one gets the latest."""
    async with receiving() as receiver, serving(db_url, **ALLOW) as api:
        await api.endpoint(receiver.url("/old"), ("customer.created",), api_version="2019-09-09")
        await api.endpoint(receiver.url("/new"), ("customer.created",))
        await api.customer(name="Jenny", balance=-250, currency="usd")
        received = await receiver.wait_for(lambda got: len(got) >= 2)
        by_path = {item.path: item.event for item in received}
        old, new = by_path["/old"], by_path["/new"]
        assert old["api_version"] == "2019-09-09"
        assert old["data"]["object"]["account_balance"] == -250 and "balance" not in old["data"]["object"]
        assert new["api_version"] == versions.LATEST
        assert new["data"]["object"]["balance"] == -250 and "account_balance" not in new["data"]["object"]


async def test_500s_are_retried_on_the_schedule_until_a_2xx(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **ALLOW) as api:
        receiver.plan("/hook", 500, 503, 200)
        endpoint = await api.endpoint(receiver.url(), ("customer.created",))
        customer = await api.customer()
        received = await receiver.wait_for(lambda got: len(got) >= 3)
        assert len({item.headers["webhook-id"] for item in received}) == 1  # the same event each time
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(received)]
        assert gaps[0] >= 0.3 * 0.8 - 0.05 and gaps[1] >= 0.6 * 0.8 - 0.05, gaps
        event_id = received[0].event["id"]
        assert (await api.wait_pending_zero(event_id))["pending_webhooks"] == 0
        attempts = await attempts_of(api, endpoint["id"])
        assert [(a["status_code"], a["error"]) for a in attempts] == [(500, "http_status"), (503, "http_status"), (200, None)]
        assert attempts[0]["next_attempt_at"] is not None and attempts[-1]["next_attempt_at"] is None
        assert all(a["manual"] is False and a["latency_ms"] >= 0 for a in attempts)
        assert bytes(attempts[-1]["response"]) == b"ok"
        listed = await api.ok("GET", "/v1/events", {"delivery_success": "false"})
        assert all(item["id"] != event_id for item in listed["data"])
        assert customer["id"]


async def test_redirects_and_timeouts_are_failures(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **ALLOW, LEDGER_WEBHOOK_TIMEOUT_S="1") as api:
        receiver.plan("/hook", {"status": 302, "headers": {"Location": receiver.url("/elsewhere")}}, {"sleep": 3}, 200)
        endpoint = await api.endpoint(receiver.url(), ("customer.created",))
        await api.customer()
        await receiver.wait_for(lambda got: len(receiver.at("/hook")) >= 3, within=30)
        await asyncio.sleep(0.3)
        assert receiver.at("/elsewhere") == []  # the redirect was not followed
        attempts = await attempts_of(api, endpoint["id"])
        assert [(a["status_code"], a["error"]) for a in attempts][:2] == [(302, "redirect"), (None, "timeout")]
        assert 900 <= attempts[1]["latency_ms"] < 2500


async def test_after_the_last_retry_the_delivery_fails_and_lists_as_undelivered(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **{**ALLOW, "LEDGER_WEBHOOK_RETRY_SCHEDULE": "0.1,0.1"}) as api:
        receiver.plan("/hook", 500, 500, 500, 200)
        await api.endpoint(receiver.url(), ("customer.created",))
        await api.customer()
        await receiver.wait_for(lambda got: len(got) >= 3)
        await asyncio.sleep(1.0)
        assert len(receiver.received) == 3  # the first attempt and two retries, then no more
        event_id = receiver.received[0].event["id"]
        event = await api.ok("GET", f"/v1/events/{event_id}")
        assert event["pending_webhooks"] == 1
        undelivered = await api.ok("GET", "/v1/events", {"delivery_success": "false"})
        assert [item["id"] for item in undelivered["data"]] == [event_id]
        [delivery] = await api.fetch("SELECT state, attempts FROM webhook_deliveries")
        assert tuple(delivery) == ("failed", 3)


async def test_retry_after_on_429_is_honoured_within_twice_the_scheduled_delay(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **ALLOW) as api:
        receiver.plan("/hook", {"status": 429, "headers": {"Retry-After": "30"}}, 200)
        await api.endpoint(receiver.url(), ("customer.created",))
        await api.customer()
        first, second = await receiver.wait_for(lambda got: len(got) >= 2)
        # scheduled 0.3 s (+-20 %); Retry-After 30 s is clamped to 2x that: between 0.48 and 0.72 s (+ polling)
        assert 0.45 <= second.at - first.at < 1.5, second.at - first.at


async def test_an_endpoint_failing_for_too_long_is_disabled(db_url: str) -> None:
    env = {**ALLOW, "LEDGER_WEBHOOK_RETRY_SCHEDULE": "0.4,0.4,0.4,0.4,0.4,0.4", "LEDGER_WEBHOOK_DISABLE_AFTER_HOURS": "0.0003"}
    async with receiving() as receiver, serving(db_url, **env) as api:
        receiver.plan("/hook", *[500] * 20)
        endpoint = await api.endpoint(receiver.url(), ("customer.created",))
        await api.customer()
        await receiver.wait_for(lambda got: len(got) >= 3)  # 0.0003 h = 1.08 s of failures disables it
        await asyncio.sleep(2.0)
        got = await api.ok("GET", f"/v1/webhook_endpoints/{endpoint['id']}")
        assert got["status"] == "disabled"
        count = len(receiver.received)
        assert 3 <= count < 7  # stopped before the schedule ran out
        await asyncio.sleep(1.0)
        assert len(receiver.received) == count
        [row] = await api.fetch("SELECT disabled_reason FROM webhook_endpoints")
        assert row["disabled_reason"] == "failing"


async def test_410_disables_the_endpoint(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **ALLOW) as api:
        receiver.plan("/hook", 410)
        endpoint = await api.endpoint(receiver.url())
        await api.customer()
        await receiver.wait_for(lambda got: len(got) >= 1)
        await asyncio.sleep(0.5)
        assert (await api.ok("GET", f"/v1/webhook_endpoints/{endpoint['id']}"))["status"] == "disabled"
        await api.customer()
        await asyncio.sleep(1.0)
        assert len(receiver.received) == 1


async def test_disabling_stops_delivery_and_enabling_resumes_it(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **{**ALLOW, "LEDGER_WEBHOOK_RETRY_SCHEDULE": "1.5"}) as api:
        receiver.plan("/hook", 500)
        endpoint = await api.endpoint(receiver.url(), ("customer.created",))
        path = f"/v1/webhook_endpoints/{endpoint['id']}"
        first = await api.customer(name="before")
        await receiver.wait_for(lambda got: len(got) >= 1)
        disabled = await api.ok("POST", path, {"disabled": "true"})
        assert disabled["status"] == "disabled"
        during = await api.customer(name="while disabled")
        await asyncio.sleep(2.5)  # the retry is due meanwhile, and must wait
        assert len(receiver.received) == 1
        assert (await api.ok("POST", path, {"disabled": "false"}))["status"] == "enabled"
        after = await api.customer(name="after")
        await receiver.wait_for(lambda got: len(got) >= 3)
        await asyncio.sleep(0.5)
        names = [item.event["data"]["object"]["name"] for item in receiver.received]
        assert sorted(names[1:]) == ["after", "before"]  # the retry resumed; nothing created while disabled
        assert "while disabled" not in names
        assert first and during and after


async def test_ssrf_guard_refuses_private_destinations(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, LEDGER_WEBHOOK_RETRY_SCHEDULE="0.2") as api:
        for url in ("http://127.0.0.1:9/", "http://10.1.2.3/", "http://169.254.169.254/latest/meta-data",
                    "http://[::1]:8080/", "http://100.64.0.1/", "http://[::ffff:127.0.0.1]/", "http://224.0.0.1/"):
            status, body = await api.call("POST", "/v1/webhook_endpoints", {"url": url, "enabled_events[0]": "*"})
            assert status == 400 and body["error"]["param"] == "url", (url, body)
        assert await api.fetch("SELECT * FROM webhook_endpoints") == []
        # A hostname is accepted at create, and refused at delivery once it resolves to loopback.
        endpoint = await api.endpoint(receiver.url(host="localhost"), ("customer.created",))
        await api.customer()
        deadline = time.monotonic() + 10
        while not (attempts := await attempts_of(api, endpoint["id"])) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert attempts and attempts[0]["error"] == "ssrf_blocked", attempts
        assert b"LEDGER_WEBHOOK_ALLOW_CIDRS" in bytes(attempts[0]["response"])
        assert receiver.received == []


async def test_ssrf_guard_checks_ip_literals_at_delivery_too(db_url: str) -> None:
    """aiohttp never resolves an IP literal: the guard checks it itself (here: allowed when the endpoint was
    created, no longer allowed when the service delivers)."""
    async with receiving() as receiver:
        async with serving(db_url, LEDGER_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8", LEDGER_WEBHOOKS="off") as api:
            endpoint = await api.endpoint(receiver.url(), ("customer.created",))
            await api.customer()
        async with serving(db_url, LEDGER_WEBHOOK_RETRY_SCHEDULE="5") as api:
            deadline = time.monotonic() + 10
            while not (attempts := await attempts_of(api, endpoint["id"])) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            assert attempts and attempts[0]["error"] == "ssrf_blocked", attempts
            assert bytes(attempts[0]["response"]).startswith(b"127.0.0.1 is a non-public address")
        assert receiver.received == []


async def test_no_transaction_is_open_while_a_request_is_in_flight(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **ALLOW) as api:
        receiver.plan("/hook", {"sleep": 2})
        await api.endpoint(receiver.url())
        await api.customer()
        await receiver.wait_for(lambda got: len(got) >= 1)
        samples = []
        for _ in range(8):  # while the receiver holds the request for 2 s
            await asyncio.sleep(0.15)
            samples += await api.fetch(
                """SELECT pid, state, backend_xid, query FROM pg_stat_activity
                   WHERE datname = current_database() AND application_name = 'ledgerd'
                     AND xact_start < now() - interval '300 milliseconds'"""
            )
        assert samples == [], samples  # no transaction of the service lasted across the request
        assert len(receiver.received) == 1 and time.monotonic() - receiver.received[0].at < 2
        [delivery] = await api.fetch("SELECT state, lease_until > now() AS leased FROM webhook_deliveries")
        assert tuple(delivery) == ("pending", True)


async def test_events_go_to_endpoints_subscribed_when_they_were_recorded(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **ALLOW) as api:
        before = await api.customer(name="before any endpoint")
        created_only = await api.endpoint(receiver.url("/created"), ("customer.created",))
        everything = await api.endpoint(receiver.url("/all"))
        await api.endpoint(receiver.url("/other-account"), key=api.other_key)
        await api.endpoint(receiver.url("/live"), key=api.live_key)
        customer = await api.customer(name="after")
        await api.ok("POST", f"/v1/customers/{customer['id']}", {"email": "a@example.com"})
        await receiver.wait_for(lambda got: len(receiver.at("/all")) >= 2 and receiver.at("/created"))
        await asyncio.sleep(0.5)
        assert [item.event["type"] for item in receiver.at("/created")] == ["customer.created"]
        assert sorted(item.event["type"] for item in receiver.at("/all")) == ["customer.created", "customer.updated"]
        assert receiver.at("/other-account") == [] and receiver.at("/live") == []
        sent = {item.event["data"]["object"]["id"] for item in receiver.received}
        assert before["id"] not in sent
        assert created_only and everything


async def test_request_id_and_idempotency_key_are_the_commands(db_url: str) -> None:
    async with serving(db_url) as api:
        headers = {"Authorization": f"Bearer {api.key}", "Idempotency-Key": "idem-webhooks-1"}
        async with api.http.post(api.base_url + "/v1/customers", data={"name": "x"}, headers=headers) as response:
            request_id = response.headers["Request-Id"]
        listed = await api.ok("GET", "/v1/events")
        assert listed["data"][0]["request"] == {"id": request_id, "idempotency_key": "idem-webhooks-1"}


async def test_the_pipeline_carries_on_when_its_database_sessions_are_killed(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **ALLOW) as api:
        await api.endpoint(receiver.url(), ("customer.created",))
        created = []
        for round_ in range(8):
            await api.fetch(  # every pooled session of the service is cut off, mid-whatever it was doing
                """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                   WHERE datname = current_database() AND application_name = 'ledgerd'"""
            )
            status, body = await api.call("POST", "/v1/customers", {"name": f"r{round_}"})
            if status == 200:
                created.append(body["id"])
            await asyncio.sleep(0.15)
        for _ in range(20):  # and a few more on a quiet database
            status, body = await api.call("POST", "/v1/customers", {"name": "after"})
            if status == 200:
                created.append(body["id"])
        assert len(created) >= 20
        await receiver.wait_for(lambda got: {item.event["data"]["object"]["id"] for item in got} >= set(created), within=40)
