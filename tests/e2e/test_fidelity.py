"""Stripe fidelity (issue 13) with the official stripe-python SDK, unmodified, against `ledgerd serve`:
API versions (a client pinned to 2019-09-09 speaks `account_balance`), account settings made by the CLI
(default version, default currency), `expand[]`, `Stripe-Account`, email validation, test tokens.

Each test makes its own account with `ledgerd api-keys create`, so "nothing written" is checked on an
account nobody else touches."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
import requests
import stripe

from ledgerd.service import versions
from tests.support.server import Server


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": server.db_url}
    return subprocess.run(
        [sys.executable, "-m", "ledgerd.service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def new_key(server: Server, *settings: str) -> str:
    """A test-mode key of a fresh account, made by the CLI with the given settings flags."""
    account = f"acct_{uuid.uuid4().hex[:12]}"
    done = cli(server, "api-keys", "create", "--account", account, *settings)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def client(server: Server, key: str, **options: Any) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": server.base_url}, max_network_retries=0, **options)


def raw(server: Server, key: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return requests.request(method, server.base_url + path, headers=headers, timeout=30, **kwargs)


def nothing_written(server: Server, key: str) -> bool:
    customers = raw(server, key, "GET", "/v1/customers").json()["data"]
    events = raw(server, key, "GET", "/v1/events").json()["data"]
    return customers == [] and events == []


# ---------------------------------------------------------------------------------------------------
# API versions
# ---------------------------------------------------------------------------------------------------


def test_a_client_pinned_to_2019_09_09_sends_and_reads_account_balance(server: Server) -> None:
    key = new_key(server, "--default-currency", "usd")
    old = client(server, key, stripe_version="2019-09-09")
    created = old.v1.customers.create({"email": "old@example.com", "account_balance": -500})  # type: ignore[typeddict-unknown-key]
    assert created.account_balance == -500 and "balance" not in created
    assert created.currency == "usd"
    assert (
        created.sources.data == [] and created.subscriptions.data == []
    )  # included by default before 2020-08-27
    assert created.last_response.headers["Stripe-Version"] == "2019-09-09"
    fetched = old.v1.customers.retrieve(created.id)
    assert fetched.account_balance == -500
    updated = old.v1.customers.update(created.id, {"account_balance": 100})  # type: ignore[typeddict-unknown-key]
    assert updated.account_balance == 100
    latest = client(server, key).v1.customers.retrieve(created.id)  # the SDK pins the latest version
    assert latest.balance == 100 and "account_balance" not in latest and "sources" not in latest
    assert latest.last_response.headers["Stripe-Version"] == versions.LATEST
    with pytest.raises(stripe.InvalidRequestError) as caught:
        old.v1.customers.update(created.id, {"balance": 5})
    assert caught.value.code == "parameter_unknown" and caught.value.param == "balance"
    assert client(server, key).v1.customers.retrieve(created.id).balance == 100
    with pytest.raises(stripe.InvalidRequestError) as caught:  # errors name the param as the version does
        old.v1.customers.update(created.id, {"account_balance": "abc"})  # type: ignore[typeddict-unknown-key]
    assert caught.value.code == "parameter_invalid_integer" and caught.value.param == "account_balance"


def test_the_accounts_default_version_answers_requests_without_the_header_and_renders_events(
    server: Server,
) -> None:
    key = new_key(server, "--api-version", "2019-09-09", "--default-currency", "usd")
    response = raw(server, key, "POST", "/v1/customers", data={"account_balance": "700"})
    assert response.status_code == 200, response.text
    assert response.headers["Stripe-Version"] == "2019-09-09"
    assert response.json()["account_balance"] == 700
    customer = response.json()["id"]
    moved = raw(server, key, "POST", f"/v1/customers/{customer}", data={"account_balance": "100"})
    assert moved.status_code == 200 and moved.json()["account_balance"] == 100
    pinned = raw(server, key, "GET", "/v1/events", headers={"Stripe-Version": versions.LATEST})
    assert pinned.headers["Stripe-Version"] == versions.LATEST
    events = pinned.json()["data"]
    assert {event["type"] for event in events} >= {"customer.created", "customer.updated"}
    for event in events:
        assert event["api_version"] == "2019-09-09"  # events render at the account's version
        if event["type"].startswith("customer."):
            assert "account_balance" in event["data"]["object"] and "balance" not in event["data"]["object"]
    [updated] = [event for event in events if event["type"] == "customer.updated"]
    assert updated["data"]["previous_attributes"] == {"account_balance": 700}
    one = raw(server, key, "GET", f"/v1/events/{events[0]['id']}").json()
    assert one["api_version"] == "2019-09-09"


def test_an_unknown_stripe_version_is_a_400_and_writes_nothing(server: Server) -> None:
    key = new_key(server)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client(server, key, stripe_version="2019-09-10").v1.customers.create({"email": "x@example.com"})
    assert caught.value.http_status == 400
    assert caught.value.user_message == "Invalid Stripe API version: 2019-09-10"
    assert nothing_written(server, key)


def test_the_cli_refuses_an_unknown_version_or_currency_and_makes_no_key(server: Server) -> None:
    for flags, said in (
        (("--api-version", "2019-13-01"), "unknown Stripe API version"),
        (("--default-currency", "usdollar"), "--default-currency"),
    ):
        done = cli(server, "api-keys", "create", "--account", "acct_refused", *flags)
        assert done.returncode == 2 and said in done.stderr and done.stdout == ""
    ok = new_key(server, "--api-version", "2020-08-27")
    assert raw(server, ok, "GET", "/v1/customers").headers["Stripe-Version"] == "2020-08-27"


# ---------------------------------------------------------------------------------------------------
# default currency
# ---------------------------------------------------------------------------------------------------


def test_balance_without_currency_uses_the_accounts_default_currency(server: Server) -> None:
    sdk = client(server, new_key(server, "--default-currency", "eur"))
    created = sdk.v1.customers.create({"balance": 1000})
    assert created.balance == 1000 and created.currency == "eur"
    [entry] = sdk.v1.customers.balance_transactions.list(created.id).data
    assert entry.currency == "eur" and entry.type == "initial"
    plain = sdk.v1.customers.create({"email": "later@example.com"})
    assert plain.currency is None
    moved = sdk.v1.customers.update(plain.id, {"balance": -200})
    assert moved.balance == -200 and moved.currency == "eur"


def test_without_a_default_currency_the_400_names_currency_and_writes_nothing(server: Server) -> None:
    key = new_key(server)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client(server, key).v1.customers.create({"balance": 1000})
    assert caught.value.param == "currency"
    assert nothing_written(server, key)


# ---------------------------------------------------------------------------------------------------
# expand[]
# ---------------------------------------------------------------------------------------------------


def test_expanding_a_customer(server: Server) -> None:
    sdk = client(server, new_key(server))
    created = sdk.v1.customers.create(
        {
            "balance": -250,
            "currency": "usd",  # type: ignore[typeddict-unknown-key]
            "expand": ["invoice_credit_balance", "tax", "tax_ids", "sources", "subscriptions"],
        }
    )
    assert created.invoice_credit_balance.to_dict() == {"usd": 250}  # positive = credit
    assert created.tax.automatic_tax == "unrecognized_location"
    assert created.tax.ip_address is None and created.tax.location is None
    for name in ("tax_ids", "sources", "subscriptions"):
        assert (
            getattr(created, name).data == []
            and getattr(created, name).url == f"/v1/customers/{created.id}/{name}"
        )
    plain = sdk.v1.customers.retrieve(created.id)
    assert "invoice_credit_balance" not in plain and "tax" not in plain  # not returned by default
    again = sdk.v1.customers.retrieve(created.id, {"expand": ["invoice_credit_balance"]})
    assert again.invoice_credit_balance.to_dict() == {"usd": 250}
    empty = sdk.v1.customers.create({"expand": ["invoice_credit_balance"]})
    assert empty.invoice_credit_balance.to_dict() == {}
    updated = sdk.v1.customers.update(created.id, {"balance": 100, "expand": ["invoice_credit_balance"]})
    assert updated.invoice_credit_balance.to_dict() == {"usd": -100}


def test_search_and_list_total_count(server: Server) -> None:
    key = new_key(server)
    sdk = client(server, key)
    for index in range(3):
        sdk.v1.customers.create({"email": f"count{index}@example.com", "metadata": {"batch": "tc"}})
    found = sdk.v1.customers.search(
        {"query": "metadata['batch']:'tc'", "limit": 1, "expand": ["total_count"]}
    )
    assert found.total_count == 3 and len(found.data) == 1 and found.has_more
    with pytest.raises(stripe.InvalidRequestError) as caught:  # removed from lists in 2025-03-31.basil
        sdk.v1.customers.list({"expand": ["total_count"]})
    assert caught.value.code == "property_forbidden" and caught.value.param == "expand"
    older = client(server, key, stripe_version="2024-06-20").v1.customers.list(
        {"limit": 2, "expand": ["total_count"]}
    )
    assert older.total_count == 3 and len(older.data) == 2


def test_expanding_a_balance_transactions_customer(server: Server) -> None:
    sdk = client(server, new_key(server))
    customer = sdk.v1.customers.create({"email": "bt@example.com"})
    entry = sdk.v1.customers.balance_transactions.create(
        customer.id, {"amount": -300, "currency": "usd", "expand": ["customer"]}
    )
    assert isinstance(entry.customer, stripe.Customer) and entry.customer.id == customer.id
    assert entry.customer.balance == -300
    fetched = sdk.v1.customers.balance_transactions.retrieve(
        customer.id, entry.id, {"expand": ["customer.invoice_credit_balance"]}
    )
    assert fetched.customer.invoice_credit_balance.to_dict() == {"usd": 300}
    sdk.v1.customers.balance_transactions.create(customer.id, {"amount": 50, "currency": "usd"})
    page = sdk.v1.customers.balance_transactions.list(customer.id, {"expand": ["data.customer"]})
    assert [item.customer.id for item in page.data] == [customer.id, customer.id]
    assert sdk.v1.customers.balance_transactions.list(customer.id).data[0].customer == customer.id


@pytest.mark.parametrize(
    ("expand", "code", "message"),
    [
        (["metadata"], None, "This property cannot be expanded (metadata)."),
        (["data.customer"], None, "This property cannot be expanded (data)."),
        (
            ["invoice_credit_balance.usd"],
            None,
            "This property cannot be expanded (invoice_credit_balance.usd).",
        ),
        (
            ["a.b.c.d.e"],
            "property_expansion_max_depth",
            "You cannot expand more than 4 levels of a property.",
        ),
    ],
)
def test_a_path_that_cannot_be_expanded_is_a_400_and_writes_nothing(
    server: Server, expand: list[str], code: str | None, message: str
) -> None:
    key = new_key(server)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client(server, key).v1.customers.create({"email": "no@example.com", "expand": expand})
    assert caught.value.param == "expand" and caught.value.code == (code or "parameter_invalid")
    assert caught.value.user_message is not None and caught.value.user_message.startswith(message)
    assert nothing_written(server, key)


def test_lists_suggest_the_data_prefix(server: Server) -> None:
    sdk = client(server, new_key(server))
    customer = sdk.v1.customers.create({})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sdk.v1.customers.balance_transactions.list(customer.id, {"expand": ["customer"]})
    assert "try expanding 'data.customer'" in str(caught.value.user_message)


# ---------------------------------------------------------------------------------------------------
# Stripe-Account, email, test tokens
# ---------------------------------------------------------------------------------------------------


def test_stripe_account_for_another_account_is_stripes_403(server: Server) -> None:
    key = new_key(server)
    with pytest.raises(stripe.PermissionError) as caught:
        client(server, key, stripe_account="acct_1Connected").v1.customers.create({"email": "c@example.com"})
    assert caught.value.http_status == 403
    assert caught.value.json_body["error"]["code"] == "platform_account_required"  # the SDK keeps no code on 403
    assert str(caught.value.user_message).startswith(
        "Only Stripe Connect platforms can work with other accounts."
    )
    assert nothing_written(server, key)
    with pytest.raises(stripe.PermissionError):
        client(server, key, stripe_account="acct_1Connected").v1.customers.list()


def test_an_invalid_email_is_email_invalid_and_writes_nothing(server: Server) -> None:
    key = new_key(server)
    sdk = client(server, key)
    for email in ("x@com", "jenny\uff20example.com", "jenny @example.com"):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            sdk.v1.customers.create({"email": email})
        assert caught.value.code == "email_invalid" and caught.value.param == "email"
    assert nothing_written(server, key)
    customer = sdk.v1.customers.create({"email": "ok@example.com"})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sdk.v1.customers.update(customer.id, {"email": "@localhost"})
    assert caught.value.code == "email_invalid"
    assert sdk.v1.customers.retrieve(customer.id).email == "ok@example.com"


def test_stripe_test_tokens_create_a_customer_and_other_payment_values_stay_unsupported(
    server: Server,
) -> None:
    key = new_key(server)
    sdk = client(server, key)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sdk.v1.customers.create({"payment_method": "pm_1Real"})
    assert caught.value.code == "parameter_unsupported" and caught.value.param == "payment_method"
    assert nothing_written(server, key)
    by_pm = sdk.v1.customers.create({"email": "pm@example.com", "payment_method": "pm_card_visa"})
    by_token = sdk.v1.customers.create({"email": "tok@example.com", "source": "tok_visa"})
    assert by_pm.default_source is None and by_token.default_source is None  # nothing is stored
    assert by_pm.invoice_settings.default_payment_method is None


# ---------------------------------------------------------------------------------------------------
# multi-currency balances
# ---------------------------------------------------------------------------------------------------


def test_a_customer_has_one_ledger_per_currency(server: Server) -> None:
    key = new_key(server)
    sdk = client(server, key)
    customer = sdk.v1.customers.create({"balance": 1000, "currency": "usd"})  # type: ignore[typeddict-unknown-key]
    eur = sdk.v1.customers.balance_transactions.create(customer.id, {"amount": -300, "currency": "eur"})
    assert (eur.currency, eur.ending_balance) == ("eur", -300)
    more = sdk.v1.customers.balance_transactions.create(customer.id, {"amount": -200, "currency": "eur"})
    assert more.ending_balance == -500  # the eur ledger's own chain
    usd = sdk.v1.customers.balance_transactions.create(customer.id, {"amount": 5, "currency": "usd"})
    assert usd.ending_balance == 1005
    fetched = sdk.v1.customers.retrieve(customer.id, {"expand": ["invoice_credit_balance"]})
    assert (fetched.balance, fetched.currency) == (1005, "usd")  # the customer's own currency's
    assert fetched.invoice_credit_balance.to_dict() == {"usd": -1005, "eur": 500}  # positive = credit
    listed = sdk.v1.customers.list({"expand": ["data.invoice_credit_balance"]}).data
    assert [c.invoice_credit_balance.to_dict() for c in listed] == [{"usd": -1005, "eur": 500}]
    entry = sdk.v1.customers.balance_transactions.retrieve(customer.id, eur.id, {"expand": ["customer"]})
    assert entry.customer.balance == 1005
    # an eur entry leaves the customer's balance alone: no customer.updated for it
    events = raw(server, key, "GET", "/v1/events").json()["data"]
    updates = [event for event in events if event["type"] == "customer.updated"]
    assert [event["data"]["previous_attributes"] for event in updates] == [{"balance": 1000}]
    # the past, folded from the log, per currency too
    then = raw(
        server, key, "GET", f"/v1/customers/{customer.id}",
        params={"as_of": str(eur.created), "expand[]": "invoice_credit_balance"},
    ).json()
    assert then["invoice_credit_balance"]["usd"] in (-1000, -1005)
    # and the audit holds: every currency's chain, the projections against a replay
    done = cli(server, "verify", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
