"""An event keeps the API version its account had when the event was created (Stripe's rule): changing
the account's default later re-renders neither GET /v1/events nor webhook payloads of older events."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from ledgerd.service import versions
from ledgerd.service.accounts import save_settings
from tests.support.webhooks import Api, receiving, serving

ALLOW = {"LEDGER_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8"}


async def set_default_version(db_url: str, account: str, version: str) -> None:
    # A change applies from the second it is made in (events have whole seconds): keep it out of the
    # previous event's second, and the next event out of its own.
    await asyncio.sleep(1.05)
    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction():
            await save_settings(conn, account, api_version=version, default_currency=None)
    finally:
        await conn.close()
    await asyncio.sleep(1.2)  # and the service's settings cache lives 1 s


async def events_at_latest(api: Api) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api.key}", "Stripe-Version": versions.LATEST}
    async with api.http.get(api.base_url + "/v1/events", headers=headers) as response:
        assert response.status == 200
        body = await response.json()
    return {
        event["data"]["object"]["name"]: event
        for event in body["data"]
        if event["type"] == "customer.created"
    }


async def test_events_render_at_the_version_their_account_had_when_they_were_created(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url, **ALLOW) as api:
        await set_default_version(db_url, "acct_a", "2019-09-09")
        await api.endpoint(receiver.url(), ("customer.created",))  # not pinned: the account's version
        await api.customer(name="before", account_balance=-100, currency="usd")
        await set_default_version(db_url, "acct_a", "2020-08-27")
        await api.customer(name="after", balance=-200, currency="usd")

        events = await events_at_latest(api)
        before, after = events["before"], events["after"]
        assert before["api_version"] == "2019-09-09"
        assert (
            before["data"]["object"]["account_balance"] == -100 and "balance" not in before["data"]["object"]
        )
        assert after["api_version"] == "2020-08-27"
        assert after["data"]["object"]["balance"] == -200 and "account_balance" not in after["data"]["object"]

        received = await receiver.wait_for(lambda got: len(got) >= 2)
        sent = {item.event["data"]["object"]["name"]: item.event for item in received}
        assert (
            sent["before"]["api_version"] == "2019-09-09"
            and "account_balance" in sent["before"]["data"]["object"]
        )
        assert sent["after"]["api_version"] == "2020-08-27" and "balance" in sent["after"]["data"]["object"]

        # Setting the same version again is not a change: the history keeps one row per change.
        await set_default_version(db_url, "acct_a", "2020-08-27")
        rows = await api.fetch(
            "SELECT api_version FROM account_api_versions WHERE account = 'acct_a' ORDER BY effective_at"
        )
        assert [row["api_version"] for row in rows] == ["2019-09-09", "2020-08-27"]
