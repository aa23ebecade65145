"""The official stripe-python SDK, unmodified, against a running `ledgerd serve` (base URL changed only)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
import stripe

from tests.support.server import Server


def plain(value: object) -> object:
    """StripeObjects compare as objects; compare their JSON-shaped content instead."""
    return value.to_dict() if isinstance(value, stripe.StripeObject) else value


def test_create_retrieve_with_stripe_defaults(server: Server) -> None:
    client = server.client()
    created = client.v1.customers.create(
        {
            "email": "jenny@example.com",
            "name": "Jenny Rosen",
            "metadata": {"order_id": "6735"},
            "address": {"line1": "1 Main St", "city": "Springfield"},
            "preferred_locales": ["en", "fr"],
        }
    )
    assert isinstance(created, stripe.Customer)
    assert created.id.startswith("cus_") and len(created.id) == 18
    assert created.object == "customer"
    assert created.email == "jenny@example.com"
    assert plain(created.metadata) == {"order_id": "6735"}
    assert created.address is not None and created.address.line1 == "1 Main St"
    assert created.preferred_locales == ["en", "fr"]
    assert created.balance == 0 and created.currency is None
    assert created.livemode is False
    assert created.tax_exempt == "none" and created.next_invoice_sequence == 1
    assert created.invoice_prefix is not None and len(created.invoice_prefix) == 8
    assert created.delinquent is False
    fetched = client.v1.customers.retrieve(created.id)
    assert fetched.to_dict() == created.to_dict()


def test_update_unsets_one_metadata_key_then_all(server: Server) -> None:
    client = server.client()
    customer = client.v1.customers.create({"name": "A", "metadata": {"a": "1", "b": "2"}})
    updated = client.v1.customers.update(customer.id, {"metadata": {"a": ""}, "phone": "+15555550100"})
    assert plain(updated.metadata) == {"b": "2"}
    assert updated.phone == "+15555550100"
    cleared = client.v1.customers.update(customer.id, {"metadata": "", "name": ""})  # type: ignore[typeddict-item]
    assert plain(cleared.metadata) == {}
    assert cleared.name is None
    assert plain(client.v1.customers.retrieve(customer.id).metadata) == {}


def test_delete_then_retrieve_returns_stub_and_updates_fail(server: Server) -> None:
    client = server.client()
    customer = client.v1.customers.create({"email": "gone@example.com"})
    deleted = client.v1.customers.delete(customer.id)
    assert deleted.deleted is True and deleted.id == customer.id
    again = client.v1.customers.retrieve(customer.id)
    assert again.to_dict().get("deleted") is True
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.update(customer.id, {"name": "zombie"})
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"


def test_list_auto_paging_iter_sees_every_customer_once_newest_first(server: Server) -> None:
    client = server.client(server.key)
    marker = uuid.uuid4().hex[:8]
    ids = [client.v1.customers.create({"email": f"page-{marker}-{i}@example.com"}).id for i in range(23)]
    seen = [c.id for c in client.v1.customers.list({"limit": 5}).auto_paging_iter()]
    mine = [customer_id for customer_id in seen if customer_id in set(ids)]
    assert mine == list(reversed(ids))
    assert len(seen) == len(set(seen))


def test_list_filters_email_case_insensitively(server: Server) -> None:
    client = server.client()
    marker = uuid.uuid4().hex[:8]
    customer = client.v1.customers.create({"email": f"Mixed.{marker}@Example.com"})
    found = client.v1.customers.list({"email": f"mixed.{marker}@example.com"})
    assert [c.id for c in found.data] == [customer.id]


def test_search_is_read_your_writes(server: Server) -> None:
    client = server.client()
    marker = uuid.uuid4().hex[:10]
    customer = client.v1.customers.create({"email": f"{marker}@example.com", "metadata": {"tier": marker}})
    by_email = client.v1.customers.search({"query": f"email:'{marker}@example.com'"})
    assert [c.id for c in by_email.data] == [customer.id]
    by_metadata = client.v1.customers.search({"query": f"metadata['tier']:'{marker}'"})
    assert [c.id for c in by_metadata.data] == [customer.id]


def test_search_bad_query_is_a_400_naming_query(server: Server) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        server.client().v1.customers.search({"query": "nonsense:'x'"})
    assert caught.value.http_status == 400
    assert caught.value.param == "query"


def test_balance_transactions_create_list_retrieve_update(server: Server) -> None:
    client = server.client()
    customer = client.v1.customers.create({"email": "ledger@example.com"})
    credit = client.v1.customers.balance_transactions.create(
        customer.id, {"amount": -500, "currency": "usd", "description": "goodwill"}
    )
    assert isinstance(credit, stripe.CustomerBalanceTransaction)
    assert credit.id.startswith("cbtxn_")
    assert (credit.amount, credit.ending_balance, credit.type) == (-500, -500, "adjustment")
    debit = client.v1.customers.balance_transactions.create(customer.id, {"amount": 1200, "currency": "usd"})
    assert debit.ending_balance == 700
    refreshed = client.v1.customers.retrieve(customer.id)
    assert (refreshed.balance, refreshed.currency) == (700, "usd")
    listed = client.v1.customers.balance_transactions.list(customer.id)
    assert [t.id for t in listed.data] == [debit.id, credit.id]
    fetched = client.v1.customers.balance_transactions.retrieve(customer.id, credit.id)
    assert fetched.description == "goodwill"
    updated = client.v1.customers.balance_transactions.update(
        customer.id, credit.id, {"description": "apology", "metadata": {"ticket": "42"}}
    )
    assert (updated.description, plain(updated.metadata), updated.amount) == (
        "apology",
        {"ticket": "42"},
        -500,
    )


def test_currency_is_fixed_by_the_first_transaction(server: Server) -> None:
    client = server.client()
    customer = client.v1.customers.create({})
    client.v1.customers.balance_transactions.create(customer.id, {"amount": 100, "currency": "eur"})
    # another currency goes to its own ledger (tests/e2e/test_fidelity.py); the customer's stays eur
    usd = client.v1.customers.balance_transactions.create(customer.id, {"amount": 40, "currency": "usd"})
    assert usd.ending_balance == 40
    fetched = client.v1.customers.retrieve(customer.id)
    assert (fetched.balance, fetched.currency) == (100, "eur")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.update(customer.id, {"currency": "usd"})  # type: ignore[typeddict-unknown-key]
    assert caught.value.http_status == 400 and caught.value.param == "currency"


def test_idempotent_retry_replays_and_appends_nothing(server: Server) -> None:
    client = server.client()
    customer = client.v1.customers.create({})
    key = str(uuid.uuid4())
    params: stripe.params.CustomerBalanceTransactionCreateParams = {"amount": 250, "currency": "usd"}
    first = client.v1.customers.balance_transactions.create(customer.id, params, {"idempotency_key": key})
    second = client.v1.customers.balance_transactions.create(customer.id, params, {"idempotency_key": key})
    assert second.id == first.id
    assert second.last_response is not None
    assert second.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(client.v1.customers.balance_transactions.list(customer.id).data) == 1
    with pytest.raises(stripe.IdempotencyError) as caught:
        client.v1.customers.balance_transactions.create(
            customer.id, {"amount": 999, "currency": "usd"}, {"idempotency_key": key}
        )
    assert "amount" in str(caught.value.user_message)
    assert client.v1.customers.retrieve(customer.id).balance == 250


def test_errors_map_to_sdk_exception_classes(server: Server) -> None:
    client = server.client()
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_doesnotexist00")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    assert missing.value.request_id is not None and missing.value.request_id.startswith("req_")
    with pytest.raises(stripe.AuthenticationError):
        server.client("sk_test_wrongwrongwrong").v1.customers.list()
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.customers.create({"favourite_colour": "blue"})  # type: ignore[typeddict-unknown-key]
    assert (unknown.value.code, unknown.value.param) == ("parameter_unknown", "favourite_colour")
    with pytest.raises(stripe.InvalidRequestError) as unsupported:
        client.v1.customers.create({"payment_method": "pm_1NxYzReal"})  # a real id, not a test token
    assert unsupported.value.param == "payment_method"
    customer = client.v1.customers.create({})
    with pytest.raises(stripe.InvalidRequestError) as missing_param:
        client.v1.customers.balance_transactions.create(customer.id, {"currency": "usd"})  # type: ignore[typeddict-item]
    assert (missing_param.value.code, missing_param.value.param) == ("parameter_missing", "amount")


def test_accounts_and_modes_are_isolated(server: Server) -> None:
    mine = server.client().v1.customers.create({"email": "private@example.com"})
    for other in (server.client(server.other_key), server.client(server.live_key)):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            other.v1.customers.retrieve(mine.id)
        assert caught.value.http_status == 404
        with pytest.raises(stripe.InvalidRequestError):
            other.v1.customers.balance_transactions.create(mine.id, {"amount": 1, "currency": "usd"})
        assert mine.id not in {c.id for c in other.v1.customers.list({"limit": 100}).data}
    live = server.client(server.live_key).v1.customers.create({})
    assert live.livemode is True


def test_events_surface_every_change(server: Server) -> None:
    client = server.client()
    customer = client.v1.customers.create({"email": "events@example.com"})
    client.v1.customers.update(customer.id, {"name": "Evented"})
    txn = client.v1.customers.balance_transactions.create(customer.id, {"amount": 300, "currency": "usd"})
    events = [
        e for e in client.v1.events.list({"limit": 20}).data if e.data.object.id in (customer.id, txn.id)
    ]
    types = [e.type for e in events]
    assert types[:4] == [
        "customer_balance_transaction.created",
        "customer.updated",
        "customer.updated",
        "customer.created",
    ]
    balance_update = events[1]
    assert plain(balance_update.data.previous_attributes) == {"balance": 0}
    assert plain(events[2].data.previous_attributes) == {"name": None}
    created = client.v1.events.list({"type": "customer.*", "limit": 100})
    assert all(e.type.startswith("customer.") for e in created.data)
    one = client.v1.events.retrieve(events[0].id)
    assert one.data.object.id == txn.id
    assert one.request is not None and one.request.id is not None and one.request.id.startswith("req_")


async def test_events_table_is_the_only_writer_of_truth(server: Server) -> None:
    """Every balance (one ledger per currency) equals the sum of its ledger entries after all of the above."""
    conn = await asyncpg.connect(server.db_url)
    try:
        drift = await conn.fetch(
            """SELECT c.id FROM customers c
               LEFT JOIN (SELECT customer_id, currency, sum(amount) AS total FROM balance_transactions
                          GROUP BY 1, 2) t ON t.customer_id = c.id AND t.currency = c.currency
               WHERE c.balance <> coalesce(t.total, 0)
               UNION ALL
               SELECT b.customer_id FROM balance_transactions b JOIN customers c ON c.id = b.customer_id
               GROUP BY b.customer_id, b.currency, c.balances
               HAVING (c.balances ->> b.currency)::bigint IS DISTINCT FROM sum(b.amount)"""
        )
    finally:
        await conn.close()
    assert drift == []
