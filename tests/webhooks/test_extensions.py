"""The extensions beyond Stripe: retry one event, recover a range from the log, roll a secret with an overlap,
list attempts; and the webhook metrics."""

from __future__ import annotations

import asyncio

import stripe

from tests.support.webhooks import receiving, serving

ALLOW = {"LEDGER_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8", "LEDGER_WEBHOOK_RETRY_SCHEDULE": "0.3"}


async def test_retry_resends_one_event_now_and_records_a_manual_attempt(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **ALLOW) as api:
        endpoint = await api.endpoint(receiver.url(), ("customer.created",))
        await api.customer()
        [first] = await receiver.wait_for(lambda got: len(got) >= 1)
        event_id = first.event["id"]
        await api.wait_pending_zero(event_id)
        again = await api.ok("POST", f"/v1/events/{event_id}/retry", {"webhook_endpoint": endpoint["id"]})
        assert again["id"] == event_id
        received = await receiver.wait_for(lambda got: len(got) >= 2)
        assert received[1].event["id"] == event_id
        await api.wait_pending_zero(event_id)
        attempts = await api.ok("GET", f"/v1/events/{event_id}/attempts")
        assert [a["manual"] for a in attempts["data"]] == [True, False]
        assert all(a["status_code"] == 200 and a["webhook_endpoint"] == endpoint["id"] for a in attempts["data"])
        by_endpoint = await api.ok("GET", f"/v1/webhook_endpoints/{endpoint['id']}/attempts", {"limit": 1})
        assert by_endpoint["has_more"] and by_endpoint["data"][0]["id"] == attempts["data"][0]["id"]
        older = await api.ok("GET", f"/v1/webhook_endpoints/{endpoint['id']}/attempts",
                             {"starting_after": attempts["data"][0]["id"]})
        assert [a["id"] for a in older["data"]] == [attempts["data"][1]["id"]]
        for form, param in (({}, "webhook_endpoint"), ({"webhook_endpoint": "we_nope"}, "webhook_endpoint"),
                            ({"webhook_endpoint": endpoint["id"], "x": "1"}, "x")):
            status, body = await api.call("POST", f"/v1/events/{event_id}/retry", form)
            assert status in (400, 404) and body["error"]["param"] == param, body
        status, _ = await api.call("POST", "/v1/events/evt_nope/retry", {"webhook_endpoint": endpoint["id"]})
        assert status == 404
        status, body = await api.call("GET", f"/v1/events/{event_id}/attempts", {"starting_after": "x"})
        assert status == 400 and body["error"]["param"] == "starting_after"


async def test_recover_backfills_a_new_endpoint_from_the_log(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **ALLOW) as api:
        customers = [await api.customer(name=f"old{n}") for n in range(3)]
        endpoint = await api.endpoint(receiver.url(), ("customer.created",))
        await asyncio.sleep(0.5)
        assert receiver.received == []  # created before the endpoint: not sent by the dispatcher
        recovery = await api.ok("POST", f"/v1/webhook_endpoints/{endpoint['id']}/recover", {"since": 0})
        assert recovery["deliveries"] == 3 and recovery["object"] == "webhook_endpoint_recovery"
        received = await receiver.wait_for(lambda got: len(got) >= 3)
        assert sorted(item.event["data"]["object"]["id"] for item in received) == sorted(c["id"] for c in customers)
        for form, param in (({}, "since"), ({"since": "x"}, "since"), ({"since": "10", "until": "5"}, "until")):
            status, body = await api.call("POST", f"/v1/webhook_endpoints/{endpoint['id']}/recover", form)
            assert status == 400 and body["error"]["param"] == param, body


async def test_rolled_secret_keeps_the_previous_one_signing_during_the_overlap(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **ALLOW) as api:
        endpoint = await api.endpoint(receiver.url(), ("customer.created",))
        rolled = await api.ok("POST", f"/v1/webhook_endpoints/{endpoint['id']}/roll_secret", {"expire_previous_in": 3600})
        assert rolled["secret"] != endpoint["secret"] and rolled["secret"].startswith("whsec_")
        await api.customer()
        [item] = await receiver.wait_for(lambda got: len(got) >= 1)
        assert item.headers["Stripe-Signature"].count("v1=") == 2
        assert len(item.headers["webhook-signature"].split(" ")) == 2
        for secret in (endpoint["secret"], rolled["secret"]):
            stripe.Webhook.construct_event(item.body, item.headers["Stripe-Signature"], secret)
        again = await api.ok("POST", f"/v1/webhook_endpoints/{endpoint['id']}/roll_secret")
        await api.customer()
        await receiver.wait_for(lambda got: len(got) >= 2)
        latest = receiver.received[1]
        assert latest.headers["Stripe-Signature"].count("v1=") == 1  # expire_previous_in=0: the old one stops
        stripe.Webhook.construct_event(latest.body, latest.headers["Stripe-Signature"], again["secret"])
        status, body = await api.call("POST", f"/v1/webhook_endpoints/{endpoint['id']}/roll_secret",
                                      {"expire_previous_in": "86401"})
        assert status == 400 and body["error"]["param"] == "expire_previous_in"


async def test_metrics_count_attempts_by_outcome(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **ALLOW) as api:
        receiver.plan("/hook", 500)
        await api.endpoint(receiver.url(), ("customer.created",))
        await api.customer()
        await receiver.wait_for(lambda got: len(got) >= 2)
        await asyncio.sleep(0.3)
        async with api.http.get(api.base_url + "/metrics") as response:
            text = await response.text()
        assert 'ledger_webhook_attempts_total{outcome="http_status"} 1.0' in text
        assert 'ledger_webhook_attempts_total{outcome="succeeded"} 1.0' in text
        assert "ledger_webhook_deliveries_created_total 1.0" in text
        assert "ledger_webhook_oldest_undelivered_seconds" in text
