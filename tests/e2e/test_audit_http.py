"""Point-in-time reads and history over HTTP (extensions): folded from the log, not the projections."""

from __future__ import annotations

import time

import requests

from tests.support.server import Server


def call(
    server: Server, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: object
) -> requests.Response:
    headers = {"Authorization": f"Bearer {server.key}", **(headers or {})}
    return requests.request(method, server.base_url + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def wait_for_next_second() -> int:
    """Sleep into a new unix second; return the second that just ended."""
    ended = int(time.time())
    time.sleep(ended + 1.05 - time.time())
    return ended


def test_customer_and_ledger_as_of_an_instant(server: Server) -> None:
    before_creation = wait_for_next_second()
    customer = call(server, "POST", "/v1/customers", data={"email": "past@example.com"}).json()
    path = f"/v1/customers/{customer['id']}"
    call(server, "POST", f"{path}/balance_transactions", data={"amount": "100", "currency": "usd"})
    first_second = wait_for_next_second()
    call(server, "POST", f"{path}/balance_transactions", data={"amount": "50", "currency": "usd"})
    call(server, "POST", path, data={"email": "present@example.com"})

    then = call(server, "GET", path, params={"as_of": str(first_second)})
    assert then.status_code == 200
    assert (then.json()["balance"], then.json()["email"]) == (100, "past@example.com")
    now = call(server, "GET", path).json()
    assert (now["balance"], now["email"]) == (150, "present@example.com")

    ledger_then = call(server, "GET", f"{path}/balance_transactions", params={"as_of": str(first_second)})
    assert [t["amount"] for t in ledger_then.json()["data"]] == [100]
    assert ledger_then.json()["data"][0]["ending_balance"] == 100

    missing = call(server, "GET", path, params={"as_of": str(before_creation - 5)})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "resource_missing"
    bad = call(server, "GET", path, params={"as_of": "yesterday"})
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "as_of")


def test_history_lists_every_event_with_its_changes(server: Server) -> None:
    customer = call(server, "POST", "/v1/customers", data={"name": "Before"}).json()
    path = f"/v1/customers/{customer['id']}"
    call(server, "POST", path, data={"name": "After"}, headers={"Idempotency-Key": "history-key-1"})
    call(server, "POST", f"{path}/balance_transactions", data={"amount": "-300", "currency": "eur"})
    history = call(server, "GET", f"{path}/history")
    assert history.status_code == 200
    entries = history.json()["data"]
    assert [(e["version"], e["type"]) for e in entries] == [
        (1, "CustomerCreated"),
        (2, "CustomerUpdated"),
        (3, "BalanceAdjusted"),
    ]
    assert entries[1]["changes"]["name"] == {"before": "Before", "after": "After"}
    assert entries[1]["idempotency_key"] == "history-key-1"
    assert entries[1]["request_id"].startswith("req_")
    other = requests.get(
        f"{server.base_url}{path}/history",
        headers={"Authorization": f"Bearer {server.other_key}"},
        timeout=10,
    )
    assert other.status_code == 404
