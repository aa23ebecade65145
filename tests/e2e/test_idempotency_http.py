"""Idempotency-Key over raw HTTP: replays are byte-identical and append nothing, conflicts are
`idempotency_error`s, concurrent requests with one key converge on one execution, validation errors are not
recorded but state-dependent rejections are, and keys are scoped per account and mode."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.test_http import REQUEST_ID, Api, Reply, count_events
from tests.support.server import Server


@pytest_asyncio.fixture(loop_scope="session")
async def api(server: Server) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, server)


def new_key() -> str:
    return f"idem-{secrets.token_hex(8)}"


def assert_replay_of(first: Reply, again: Reply) -> None:
    assert again.status == first.status
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.headers.get("Original-Request") == first.headers["Request-Id"]
    assert REQUEST_ID.match(again.headers["Request-Id"])
    assert again.headers["Request-Id"] != first.headers["Request-Id"]
    assert "Idempotent-Replayed" not in first.headers


async def new_customer(api: Api, form: str = "name=idem") -> str:
    customer_id: str = (await api.ok("POST", "/v1/customers", form=form))["id"]
    return customer_id


@pytest.mark.parametrize("endpoint", ["create", "update", "delete", "transaction", "transaction_update"])
async def test_same_key_same_params_replays_the_first_response(
    api: Api, server: Server, endpoint: str
) -> None:
    cid = await new_customer(api)
    method, path, form, again_form = "POST", "/v1/customers", "name=A&metadata[a]=1&metadata[b]=2", None
    if endpoint == "update":
        path, form = f"/v1/customers/{cid}", "name=B&balance=40&currency=usd"
    elif endpoint == "delete":
        method, path, form = "DELETE", f"/v1/customers/{cid}", None
    elif endpoint == "transaction":
        path, form = f"/v1/customers/{cid}/balance_transactions", "amount=-300&currency=usd&metadata[k]=v"
        # The same parameters in another order and spelling are the same request.
        again_form = "metadata%5Bk%5D=v&currency=usd&amount=-300"
    elif endpoint == "transaction_update":
        txn = await api.ok("POST", f"/v1/customers/{cid}/balance_transactions", form="amount=1&currency=usd")
        path, form = f"/v1/customers/{cid}/balance_transactions/{txn['id']}", "description=first"
    key = new_key()
    first = await api.call(method, path, form=form, headers={"Idempotency-Key": key})
    assert first.status == 200, first.body
    assert first.headers.get("Idempotency-Key") == key
    before = await count_events(server.db_url)
    for _ in range(2):
        again = await api.call(method, path, form=again_form or form, headers={"Idempotency-Key": key})
        assert_replay_of(first, again)
    assert await count_events(server.db_url) == before
    if endpoint == "create":
        listed = await api.ok("GET", "/v1/customers", query="limit=100")
        assert sum(1 for c in listed["data"] if c["id"] == first.json["id"]) == 1
    if endpoint == "transaction":
        txns = await api.ok("GET", f"/v1/customers/{cid}/balance_transactions")
        assert [t["id"] for t in txns["data"]] == [first.json["id"]]
        assert (await api.ok("GET", f"/v1/customers/{cid}"))["balance"] == -300


async def test_a_replay_returns_the_first_body_even_after_later_changes(api: Api, server: Server) -> None:
    key = new_key()
    first = await api.post("/v1/customers", "name=Original", headers={"Idempotency-Key": key})
    cid = first.json["id"]
    await api.ok("POST", f"/v1/customers/{cid}", form="name=Changed")
    again = await api.post("/v1/customers", "name=Original", headers={"Idempotency-Key": key})
    assert_replay_of(first, again)
    assert again.json["name"] == "Original"
    assert (await api.ok("GET", f"/v1/customers/{cid}"))["name"] == "Changed"


async def test_same_key_different_params_is_an_idempotency_error(api: Api, server: Server) -> None:
    cid = await new_customer(api)
    path = f"/v1/customers/{cid}/balance_transactions"
    key = new_key()
    first = await api.post(
        path, "amount=100&currency=usd&metadata[a]=1&metadata[b]=2", headers={"Idempotency-Key": key}
    )
    assert first.status == 200
    before = await count_events(server.db_url)
    for form, differing, same in (
        ("amount=999&currency=usd&metadata[a]=1&metadata[b]=2", ["amount"], ["currency", "metadata"]),
        ("amount=100&currency=usd&metadata[a]=1&metadata[b]=3", ["metadata[b]"], ["amount", "metadata[a]"]),
        ("amount=100&currency=usd&metadata[a]=1", ["metadata[b]"], ["amount"]),
        ("amount=100&currency=usd&metadata[a]=1&metadata[b]=2&description=x", ["description"], ["amount"]),
    ):
        reply = await api.post(path, form, headers={"Idempotency-Key": key})
        assert reply.status == 400, reply.body
        assert reply.error["type"] == "idempotency_error"
        assert key in reply.error["message"]
        for name in differing:
            assert name in reply.error["message"], (form, reply.error)
        for name in same:
            assert f"differ: {name}" not in reply.error["message"], (form, reply.error)
        assert reply.headers.get("Idempotent-Replayed") is None
        assert reply.headers.get("Stripe-Should-Retry") == "false"
    assert await count_events(server.db_url) == before
    # The conflict did not disturb the record: the original request still replays.
    assert_replay_of(
        first,
        await api.post(
            path, "amount=100&currency=usd&metadata[a]=1&metadata[b]=2", headers={"Idempotency-Key": key}
        ),
    )
    assert (await api.ok("GET", f"/v1/customers/{cid}"))["balance"] == 100


async def test_same_key_on_another_endpoint_is_an_idempotency_error(api: Api, server: Server) -> None:
    cid = await new_customer(api)
    key = new_key()
    first = await api.post("/v1/customers", "name=E", headers={"Idempotency-Key": key})
    assert first.status == 200
    before = await count_events(server.db_url)
    others = [
        ("POST", f"/v1/customers/{cid}", "name=E"),
        ("POST", f"/v1/customers/{cid}/balance_transactions", "amount=1&currency=usd"),
        ("DELETE", f"/v1/customers/{cid}", None),
    ]
    for method, path, form in others:
        reply = await api.call(method, path, form=form, headers={"Idempotency-Key": key})
        assert reply.status == 400, (path, reply.body)
        assert reply.error["type"] == "idempotency_error"
        assert "/v1/customers" in reply.error["message"]
    # Same path, another method.
    update_key = new_key()
    assert (
        await api.post(f"/v1/customers/{cid}", "name=U", headers={"Idempotency-Key": update_key})
    ).status == 200
    before = await count_events(server.db_url)
    reply = await api.call("DELETE", f"/v1/customers/{cid}", headers={"Idempotency-Key": update_key})
    assert reply.status == 400 and reply.error["type"] == "idempotency_error"
    assert await count_events(server.db_url) == before
    assert (await api.ok("GET", f"/v1/customers/{cid}"))["name"] == "U"


async def test_concurrent_requests_with_one_key_execute_once(api: Api, server: Server) -> None:
    cid = await new_customer(api)
    path = f"/v1/customers/{cid}/balance_transactions"
    # How many events one such command appends.
    before = await count_events(server.db_url)
    await api.ok("POST", path, form="amount=1&currency=usd")
    per_command = await count_events(server.db_url) - before
    assert per_command >= 1

    key = new_key()
    before = await count_events(server.db_url)
    replies = await asyncio.gather(
        *(api.post(path, "amount=250&currency=usd", headers={"Idempotency-Key": key}) for _ in range(20))
    )
    assert [r.status for r in replies] == [200] * 20, [r.body for r in replies]
    assert len({r.body for r in replies}) == 1
    originals = [r for r in replies if r.headers.get("Idempotent-Replayed") != "true"]
    assert len(originals) == 1
    for reply in replies:
        if reply is not originals[0]:
            assert reply.headers.get("Original-Request") == originals[0].headers["Request-Id"]
    assert await count_events(server.db_url) == before + per_command
    txns = (await api.ok("GET", path, query="limit=100"))["data"]
    assert [t["amount"] for t in txns] == [250, 1]
    assert (await api.ok("GET", f"/v1/customers/{cid}"))["balance"] == 251


async def test_concurrent_creates_with_one_key_make_one_customer(api: Api, server: Server) -> None:
    key = new_key()
    before = await count_events(server.db_url)
    replies = await asyncio.gather(
        *(
            api.post("/v1/customers", f"email={key}%40example.com", headers={"Idempotency-Key": key})
            for _ in range(20)
        )
    )
    assert [r.status for r in replies] == [200] * 20
    assert len({r.body for r in replies}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in replies) == 19
    assert await count_events(server.db_url) == before + 1
    listed = await api.ok("GET", "/v1/customers", query=f"email={key}%40example.com")
    assert len(listed["data"]) == 1


@pytest.mark.parametrize(
    ("bad", "param"),
    [
        ("amount=100&currency=usd&colour=red", "colour"),  # unknown parameter
        ("currency=usd", "amount"),  # missing parameter
        ("amount=ten&currency=usd", "amount"),  # wrong type
        ("amount=0&currency=usd", "amount"),  # rejected by validation before execution
        ("amount=100&currency=usd&description=" + "d" * 400, "description"),  # too long
    ],
    ids=["unknown", "missing", "type", "zero", "too-long"],
)
async def test_validation_errors_are_not_recorded(api: Api, server: Server, bad: str, param: str) -> None:
    cid = await new_customer(api)
    path = f"/v1/customers/{cid}/balance_transactions"
    key = new_key()
    before = await count_events(server.db_url)
    for _ in range(2):  # the same mistake again is re-validated, not replayed
        rejected = await api.post(path, bad, headers={"Idempotency-Key": key})
        assert rejected.status == 400, rejected.body
        assert rejected.error["param"] == param
        assert rejected.headers.get("Idempotent-Replayed") is None
    assert await count_events(server.db_url) == before
    fixed = await api.post(path, "amount=100&currency=usd", headers={"Idempotency-Key": key})
    assert fixed.status == 200, fixed.body
    assert fixed.headers.get("Idempotent-Replayed") is None
    assert_replay_of(fixed, await api.post(path, "amount=100&currency=usd", headers={"Idempotency-Key": key}))
    assert (await api.ok("GET", f"/v1/customers/{cid}"))["balance"] == 100


async def test_state_dependent_rejections_are_recorded_and_replayed(api: Api, server: Server) -> None:
    cid = await new_customer(api, "name=usd&currency=usd")
    path = f"/v1/customers/{cid}"  # the customer's currency cannot change once set: decided on its state
    key = new_key()
    before = await count_events(server.db_url)
    first = await api.post(path, "currency=eur&name=eur", headers={"Idempotency-Key": key})
    assert first.status == 400
    assert first.error["param"] == "currency"
    again = await api.post(path, "currency=eur&name=eur", headers={"Idempotency-Key": key})
    assert_replay_of(first, again)
    assert again.headers.get("Stripe-Should-Retry") == "false"
    assert await count_events(server.db_url) == before
    assert (await api.ok("GET", path))["name"] == "usd"


async def test_a_recorded_rejection_replays_even_when_a_rerun_would_succeed(api: Api, server: Server) -> None:
    # 50 metadata keys is the most a customer may hold: a 51st is rejected on the customer's state.
    full = "&".join(f"metadata[k{i}]=v" for i in range(50))
    cid = await new_customer(api, full)
    key = new_key()
    first = await api.post(f"/v1/customers/{cid}", "metadata[extra]=v", headers={"Idempotency-Key": key})
    assert first.status == 400, first.body
    assert first.error["param"] == "metadata"
    await api.ok("POST", f"/v1/customers/{cid}", form="metadata[k0]=")  # now there is room
    before = await count_events(server.db_url)
    again = await api.post(f"/v1/customers/{cid}", "metadata[extra]=v", headers={"Idempotency-Key": key})
    assert_replay_of(first, again)
    assert await count_events(server.db_url) == before
    assert "extra" not in (await api.ok("GET", f"/v1/customers/{cid}"))["metadata"]


async def test_key_length_is_limited_to_255(api: Api, server: Server) -> None:
    before = await count_events(server.db_url)
    reply = await api.post("/v1/customers", "name=long-key", headers={"Idempotency-Key": "k" * 256})
    assert reply.status == 400
    assert reply.error["type"] == "invalid_request_error"
    assert "255" in reply.error["message"]
    assert await count_events(server.db_url) == before
    longest = "k" * 254 + secrets.token_hex(1)[:1]
    first = await api.post("/v1/customers", "name=long-key", headers={"Idempotency-Key": longest})
    assert first.status == 200
    assert_replay_of(
        first, await api.post("/v1/customers", "name=long-key", headers={"Idempotency-Key": longest})
    )


async def test_keys_are_scoped_per_account_and_mode(api: Api, server: Server) -> None:
    key = new_key()
    form = "name=scoped&metadata[m]=1"
    before = await count_events(server.db_url)
    replies = [
        await api.post("/v1/customers", form, key=secret, headers={"Idempotency-Key": key})
        for secret in (server.key, server.other_key, server.live_key)
    ]
    assert [r.status for r in replies] == [200, 200, 200]
    assert all(r.headers.get("Idempotent-Replayed") is None for r in replies)
    assert len({r.json["id"] for r in replies}) == 3
    assert [r.json["livemode"] for r in replies] == [False, False, True]
    assert await count_events(server.db_url) == before + 3
    # Each scope now replays its own first result.
    for secret, first in zip((server.key, server.other_key, server.live_key), replies, strict=True):
        again = await api.post("/v1/customers", form, key=secret, headers={"Idempotency-Key": key})
        assert_replay_of(first, again)
    assert await count_events(server.db_url) == before + 3
