"""What a team that integrates with Stripe writes: plain tests on the official SDK, with ledgerd's pytest
plugin standing in for Stripe. Nothing here but the plugin's fixtures (`ledger`, `ledger_key`,
`stripe_client`, `ledger_events`, `ledger_webhooks`) and the `stripe` package."""

from __future__ import annotations

import pytest
import stripe

JAN_1_2030 = 1_893_456_000


@pytest.mark.parametrize("round_", range(6))
def test_each_test_has_an_account_of_its_own(stripe_client: stripe.StripeClient, round_: int) -> None:
    # Six tests (spread over the xdist workers) create "the same" customer; each sees only its own.
    created = stripe_client.v1.customers.create({"email": "jenny@example.com", "metadata": {"round": str(round_)}})
    listed = stripe_client.v1.customers.list({"email": "jenny@example.com"})
    assert [customer.id for customer in listed.data] == [created.id]
    assert listed.data[0].metadata["round"] == str(round_)


def test_balance_and_ledger_entries(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create({"email": "ada@example.com"})
    stripe_client.v1.customers.balance_transactions.create(customer.id, {"amount": -500, "currency": "usd"})
    stripe_client.v1.customers.balance_transactions.create(customer.id, {"amount": 200, "currency": "usd"})
    assert stripe_client.v1.customers.retrieve(customer.id).balance == -300
    entries = stripe_client.v1.customers.balance_transactions.list(customer.id)
    assert [entry.amount for entry in entries.data] == [200, -500]


def test_reset_empties_only_the_callers_account(ledger, ledger_key: str) -> None:
    mine = stripe.StripeClient(ledger_key, base_addresses={"api": ledger.url})
    other_key = "sk_test_neighbour_" + ledger_key[-12:]
    theirs = stripe.StripeClient(other_key, base_addresses={"api": ledger.url})
    customer = mine.v1.customers.create({"name": "before reset"})
    theirs.v1.customers.create({"name": "neighbour"})

    ledger.reset(ledger_key)

    assert mine.v1.customers.list().data == []
    with pytest.raises(stripe.InvalidRequestError) as missing:
        mine.v1.customers.retrieve(customer.id)
    assert missing.value.http_status == 404
    assert [c.name for c in theirs.v1.customers.list().data] == ["neighbour"]


def test_frozen_and_advanced_clock(ledger, ledger_key: str, stripe_client: stripe.StripeClient) -> None:
    ledger.clock(ledger_key, frozen_time=JAN_1_2030)
    customer = stripe_client.v1.customers.create({"email": "future@example.com"})
    assert customer.created == JAN_1_2030

    ledger.clock(ledger_key, advance=86_400)
    entry = stripe_client.v1.customers.balance_transactions.create(customer.id, {"amount": 100, "currency": "eur"})
    assert entry.created == JAN_1_2030 + 86_400

    events = stripe_client.v1.events.list()
    assert [(event.type, event.created) for event in events.data][-1] == ("customer.created", JAN_1_2030)
    clock = ledger.clock(ledger_key)
    assert (clock["now"], clock["frozen"]) == (JAN_1_2030 + 86_400, True)


def test_requests_are_recorded_per_account(ledger, ledger_key: str, stripe_client: stripe.StripeClient) -> None:
    stripe_client.v1.customers.create({"email": "a@example.com"})
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.customers.retrieve("cus_missing")
    recent = ledger.requests(ledger_key)
    assert [(r["method"], r["path"], r["status"]) for r in recent] == [
        ("GET", "/v1/customers/cus_missing", 404),
        ("POST", "/v1/customers", 200),
    ]
    assert all(r["id"].startswith("req_") for r in recent)


def test_strict_mode_refuses_extensions_like_stripe(stripe_client: stripe.StripeClient) -> None:
    # ledgerd accepts external_id (an idempotent upsert) but Stripe does not: in strict mode, neither do we
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.customers.create({"email": "x@example.com", "external_id": "user-1"})  # type: ignore[typeddict-unknown-key]
    assert refused.value.http_status == 400
    assert refused.value.param == "external_id"
    assert "Received unknown parameter: external_id" in str(refused.value.user_message)


def test_list_email_is_case_sensitive_like_stripe(stripe_client: stripe.StripeClient) -> None:
    stripe_client.v1.customers.create({"email": "Mixed.Case@example.com"})
    assert stripe_client.v1.customers.list({"email": "mixed.case@example.com"}).data == []
    assert len(stripe_client.v1.customers.list({"email": "Mixed.Case@example.com"}).data) == 1


def test_events_of_the_tests_own_account(stripe_client: stripe.StripeClient, ledger_events) -> None:
    customer = stripe_client.v1.customers.create({"email": "events@example.com"})
    stripe_client.v1.customers.update(customer.id, {"name": "Events"})
    created = ledger_events.wait_for("customer.created")
    assert created["data"]["object"]["id"] == customer.id
    updated = ledger_events.wait_for("customer.updated")
    assert updated["data"]["previous_attributes"] == {"name": None}
    assert [event["type"] for event in ledger_events.list()] == ["customer.updated", "customer.created"]
    with pytest.raises(AssertionError, match=r"no customer\.deleted event"):
        ledger_events.wait_for("customer.deleted", timeout=0.2)


def test_webhooks_are_collected_signed(stripe_client: stripe.StripeClient, ledger_webhooks) -> None:
    customer = stripe_client.v1.customers.create({"email": "hooks@example.com"})
    stripe_client.v1.customers.update(customer.id, {"name": "Hooks"})

    created = ledger_webhooks.wait_for("customer.created")
    assert created["data"]["object"]["id"] == customer.id
    assert ledger_webhooks.wait_for("customer.*")["type"] == "customer.updated"  # each delivery returned once

    # what was delivered is signed with the endpoint's secret, as your webhook handler will check it
    delivery = ledger_webhooks.deliveries[0]
    event = stripe.Webhook.construct_event(
        delivery["body"], delivery["headers"]["Stripe-Signature"], ledger_webhooks.secret
    )
    assert event.id == created["id"]
    with pytest.raises(AssertionError, match=r"no customer\.deleted webhook"):
        ledger_webhooks.wait_for("customer.deleted", timeout=0.2)
