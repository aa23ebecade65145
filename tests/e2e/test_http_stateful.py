"""A Hypothesis state machine driving a running `ledgerd serve` over HTTP (sync `requests`), checked
against a plain model after every step:

* each customer's `balance` equals the sum of its balance transactions (all pages) and the newest
  transaction's `ending_balance`, and the transactions are exactly the model's, newest first;
* the event log grows by exactly what the accepted commands produce; rejections and replays append nothing;
* deleted customers stay deleted (a stub on GET, 404 on writes, absent from lists);
* the customer list (paged with a random limit) is exactly the model's live customers, newest first.

Every write carries an Idempotency-Key, and one rule retries the last write with the same key: it must
return the same status and body, as a replay when the first result was recorded.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledgerd.domain.money import MAX_AMOUNT
from ledgerd.service.auth import create_key
from tests.support.server import Server

MAX_CUSTOMERS = 5
CURRENCIES = st.sampled_from(["usd", "usd", "usd", "eur"])  # mostly right, occasionally another one
AMOUNTS = st.one_of(
    st.integers(-1_000_000, 1_000_000),
    st.sampled_from([0, MAX_AMOUNT, -MAX_AMOUNT, MAX_AMOUNT + 1]),
)


class Database:
    """A synchronous window on the server's database, on a private event loop (the test is sync)."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection = self.loop.run_until_complete(asyncpg.connect(url))

    def count_events(self) -> int:
        return int(self.loop.run_until_complete(self.conn.fetchval("SELECT count(*) FROM events")))

    def new_account_key(self) -> str:
        account = f"acct_sm_{secrets.token_hex(5)}"
        _, secret = self.loop.run_until_complete(create_key(self.conn, account, False))
        return secret

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


@dataclass
class ModelCustomer:
    id: str
    balance: int = 0
    currency: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    amounts: list[int] = field(default_factory=list)  # balance transactions, oldest first
    others: dict[str, int] = field(default_factory=dict)  # the ledgers in currencies not the customer's


@dataclass
class Sent:
    """A write as sent, its result, and whether the server must have recorded it under its key."""

    method: str
    path: str
    form: dict[str, str]
    key: str
    status: int
    body: bytes
    request_id: str
    recorded: bool


class LedgerMachine(RuleBasedStateMachine):
    server: Server
    db: Database

    customers = Bundle("customers")

    def __init__(self) -> None:
        super().__init__()
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.db.new_account_key()}"
        self.model: dict[str, ModelCustomer] = {}
        self.order: list[str] = []  # customer ids in creation order
        self.events_at_start = self.db.count_events()
        self.expected_events = 0
        self.last: Sent | None = None

    def teardown(self) -> None:
        self.http.close()

    # ---- plumbing --------------------------------------------------------------------------------

    def send(self, method: str, path: str, form: dict[str, str], key: str | None = None) -> requests.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return self.http.request(
            method, self.server.base_url + path, data=form or None, headers=headers, timeout=30
        )

    def write(
        self,
        method: str,
        path: str,
        form: dict[str, str],
        *,
        status: int,
        recorded: bool,
        param: str | None = None,
    ) -> dict[str, Any]:
        """Send a write under a fresh Idempotency-Key and check its status (and error param)."""
        key = f"sm-{secrets.token_hex(8)}"
        response = self.send(method, path, form, key)
        assert response.status_code == status, (method, path, form, response.status_code, response.text)
        assert response.headers.get("Idempotent-Replayed") is None
        body: dict[str, Any] = response.json()
        if status >= 400:
            assert "error" in body, body
            if param is not None:
                assert body["error"].get("param") == param, body
        self.last = Sent(
            method, path, form, key, status, response.content, response.headers["Request-Id"], recorded
        )
        return body

    def live(self, customer_id: str) -> bool:
        return not self.model[customer_id].deleted

    # ---- rules -----------------------------------------------------------------------------------

    @initialize(target=customers)
    def first_customer(self) -> str:
        return self.create_customer(balance=0, currency=None, tag=None)

    @precondition(lambda self: len(self.model) < MAX_CUSTOMERS)
    @rule(
        target=customers,
        balance=st.one_of(st.just(0), st.integers(-100_000, 100_000)),
        currency=st.one_of(st.none(), CURRENCIES),
        tag=st.one_of(st.none(), st.sampled_from(["a", "b"])),
    )
    def create_customer(self, balance: int, currency: str | None, tag: str | None) -> Any:
        form: dict[str, str] = {}
        if balance:
            form["balance"] = str(balance)
        if currency:
            form["currency"] = currency
        if tag:
            form["metadata[tag]"] = tag
        if balance and currency is None:
            # Decided on execution (a non-zero balance needs a currency): recorded under the key.
            self.write("POST", "/v1/customers", form, status=400, recorded=True, param="currency")
            return multiple()
        body = self.write("POST", "/v1/customers", form, status=200, recorded=True)
        customer = ModelCustomer(
            body["id"], balance=balance, currency=currency, metadata={"tag": tag} if tag else {}
        )
        if balance:
            customer.amounts.append(balance)
        self.model[customer.id] = customer
        self.order.append(customer.id)
        self.expected_events += 2 if balance else 1
        assert (body["balance"], body["currency"], body["metadata"]) == (
            customer.balance,
            customer.currency,
            customer.metadata,
        )
        return customer.id

    @rule(customer_id=customers, amount=AMOUNTS, currency=CURRENCIES)
    def adjust_balance(self, customer_id: str, amount: int, currency: str) -> None:
        customer = self.model[customer_id]
        path = f"/v1/customers/{customer_id}/balance_transactions"
        form = {"amount": str(amount), "currency": currency}
        if amount == 0 or abs(amount) > MAX_AMOUNT:
            self.write("POST", path, form, status=400, recorded=False, param="amount")
        elif customer.deleted:
            self.write("POST", path, form, status=404, recorded=True, param="customer")
        elif customer.currency is not None and currency != customer.currency:  # that currency's ledger
            body = self.write("POST", path, form, status=200, recorded=True)
            ending = customer.others[currency] = customer.others.get(currency, 0) + amount
            customer.amounts.append(amount)
            self.expected_events += 1
            assert (body["amount"], body["ending_balance"], body["currency"]) == (amount, ending, currency)
        else:
            body = self.write("POST", path, form, status=200, recorded=True)
            customer.balance += amount
            customer.currency = currency
            customer.amounts.append(amount)
            self.expected_events += 1
            assert (body["amount"], body["ending_balance"], body["currency"]) == (
                amount,
                customer.balance,
                currency,
            )

    @rule(
        customer_id=customers,
        balance=st.integers(-1_000_000, 1_000_000),
        currency=st.one_of(st.none(), CURRENCIES),
    )
    def set_balance(self, customer_id: str, balance: int, currency: str | None) -> None:
        customer = self.model[customer_id]
        path = f"/v1/customers/{customer_id}"
        form = {"balance": str(balance)}
        if currency:
            form["currency"] = currency
        if customer.deleted:
            self.write("POST", path, form, status=404, recorded=True, param="id")
            return
        if currency is not None and customer.currency is not None and currency != customer.currency:
            self.write("POST", path, form, status=400, recorded=True, param="currency")
            return
        new_currency = customer.currency or currency
        if balance != customer.balance and new_currency is None:
            self.write("POST", path, form, status=400, recorded=True, param="balance")
            return
        if abs(balance - customer.balance) > MAX_AMOUNT:  # one entry may not move more than that
            self.write("POST", path, form, status=400, recorded=True, param="balance")
            return
        body = self.write("POST", path, form, status=200, recorded=True)
        if new_currency != customer.currency:
            self.expected_events += 1  # customer.updated for the currency
            customer.currency = new_currency
        if balance != customer.balance:
            self.expected_events += 1  # the adjustment entry
            customer.amounts.append(balance - customer.balance)
            customer.balance = balance
        assert (body["balance"], body["currency"]) == (customer.balance, customer.currency)

    @rule(
        customer_id=customers,
        change=st.one_of(
            st.tuples(st.sampled_from(["a", "b", "tag"]), st.sampled_from(["1", "2", ""])),
            st.just(("", "")),  # metadata= clears every key
        ),
    )
    def update_metadata(self, customer_id: str, change: tuple[str, str]) -> None:
        customer = self.model[customer_id]
        name, value = change
        form = {f"metadata[{name}]": value} if name else {"metadata": ""}
        path = f"/v1/customers/{customer_id}"
        if customer.deleted:
            self.write("POST", path, form, status=404, recorded=True, param="id")
            return
        merged = dict(customer.metadata)
        if not name:
            merged = {}
        elif value:
            merged[name] = value
        else:
            merged.pop(name, None)
        body = self.write("POST", path, form, status=200, recorded=True)
        if merged != customer.metadata:
            self.expected_events += 1
            customer.metadata = merged
        assert body["metadata"] == customer.metadata

    @rule(customer_id=customers)
    def delete_customer(self, customer_id: str) -> None:
        customer = self.model[customer_id]
        path = f"/v1/customers/{customer_id}"
        if customer.deleted:
            self.write("DELETE", path, {}, status=404, recorded=True, param="id")
            return
        body = self.write("DELETE", path, {}, status=200, recorded=True)
        assert body == {"id": customer_id, "object": "customer", "deleted": True}
        customer.deleted = True
        self.expected_events += 1

    @precondition(lambda self: self.last is not None)
    @rule()
    def retry_last_write(self) -> None:
        last = self.last
        assert last is not None
        response = self.send(last.method, last.path, last.form, last.key)
        assert response.status_code == last.status, (last, response.text)
        assert response.content == last.body
        if last.recorded:
            assert response.headers.get("Idempotent-Replayed") == "true"
            assert response.headers.get("Original-Request") == last.request_id
        else:
            assert response.headers.get("Idempotent-Replayed") is None

    @rule(limit=st.integers(1, 100))
    def list_customers(self, limit: int) -> None:
        seen: list[str] = []
        query: dict[str, str | int] = {"limit": limit}
        while True:
            response = self.http.get(self.server.base_url + "/v1/customers", params=query, timeout=30)
            assert response.status_code == 200, response.text
            page = response.json()
            assert page["url"] == "/v1/customers"
            assert len(page["data"]) <= limit
            seen.extend(c["id"] for c in page["data"])
            if not page["has_more"]:
                break
            assert page["data"]
            query["starting_after"] = page["data"][-1]["id"]
        expected = [cid for cid in reversed(self.order) if self.live(cid)]
        assert seen == expected

    # ---- invariants --------------------------------------------------------------------------------

    @invariant()
    def log_grows_only_by_accepted_commands(self) -> None:
        assert self.db.count_events() == self.events_at_start + self.expected_events

    @invariant()
    def balances_are_the_sum_of_their_ledger(self) -> None:
        for customer in self.model.values():
            response = self.http.get(f"{self.server.base_url}/v1/customers/{customer.id}", timeout=30)
            assert response.status_code == 200, response.text
            body = response.json()
            if customer.deleted:
                assert body == {"id": customer.id, "object": "customer", "deleted": True}
                listed = self.http.get(
                    f"{self.server.base_url}/v1/customers/{customer.id}/balance_transactions", timeout=30
                )
                assert listed.status_code == 404
                continue
            assert (body["balance"], body["currency"], body["metadata"]) == (
                customer.balance,
                customer.currency,
                customer.metadata,
            )
            transactions = self.all_transactions(customer.id)
            amounts = [t["amount"] for t in transactions]
            assert amounts == list(reversed(customer.amounts))
            # one ledger per currency: each chains on its own; the customer's own is `balance`
            running: dict[str, int] = {}
            for txn in reversed(transactions):
                running[txn["currency"]] = running.get(txn["currency"], 0) + txn["amount"]
                assert txn["ending_balance"] == running[txn["currency"]]
            assert running.get(body["currency"], 0) == body["balance"]
            assert {code: total for code, total in running.items() if code != body["currency"]} == customer.others

    def all_transactions(self, customer_id: str) -> list[dict[str, Any]]:
        url = f"{self.server.base_url}/v1/customers/{customer_id}/balance_transactions"
        items: list[dict[str, Any]] = []
        query: dict[str, str | int] = {"limit": 7}
        while True:
            response = self.http.get(url, params=query, timeout=30)
            assert response.status_code == 200, response.text
            page = response.json()
            items.extend(page["data"])
            if not page["has_more"]:
                return items
            query["starting_after"] = page["data"][-1]["id"]


def test_ledger_over_http_matches_the_model(server: Server) -> None:
    db = Database(server.db_url)
    LedgerMachine.server = server
    LedgerMachine.db = db
    try:
        run_state_machine_as_test(
            LedgerMachine,
            settings=settings(
                max_examples=15,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
                database=None,
            ),
        )
    finally:
        db.close()
