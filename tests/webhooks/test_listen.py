"""`ledgerd listen --forward-to`: a stable secret across restarts, signed forwarding, and what was recorded
while it was stopped forwarded when it starts again; the service's own workers never send to it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import stripe

from tests.support.webhooks import Receiver, receiving, serving


async def start_listener(db_url: str, receiver: Receiver) -> tuple[subprocess.Popen[bytes], str]:
    process = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "ledgerd.service.cli", "listen", "--forward-to", receiver.url("/local"),
         "--events", "customer.created,customer.deleted", "--account", "acct_a"],
        env={**os.environ, "DATABASE_URL": db_url, "LEDGER_LOG_LEVEL": "warning", "LEDGER_WEBHOOK_RETRY_SCHEDULE": "0.3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 20)).decode()
    found = re.search(r"(whsec_[A-Za-z0-9]{32})", line)
    assert found, line
    return process, found.group(1)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    process.send_signal(sig)
    process.wait(timeout=15)


async def test_listen_forwards_with_a_stable_secret_and_catches_up(db_url: str) -> None:
    async with receiving() as receiver, serving(db_url) as api:  # the service runs its dispatcher and workers
        receiver.plan("/local", 500)  # the first answer fails: the listener retries
        listener, secret = await start_listener(db_url, receiver)
        try:
            first = await api.customer(name="one")
            await api.ok("POST", f"/v1/customers/{first['id']}", {"name": "renamed"})  # not subscribed
            await receiver.wait_for(lambda got: len(got) >= 2)
        finally:
            stop(listener, signal.SIGKILL)
        while_stopped = await api.customer(name="while stopped")
        listener, again = await start_listener(db_url, receiver)
        try:
            assert again == secret
            await receiver.wait_for(lambda got: len({item.event["id"] for item in got}) >= 2)
            await asyncio.sleep(0.5)
        finally:
            stop(listener)
        names = [item.event["data"]["object"]["name"] for item in receiver.received]
        assert names == ["one", "one", "while stopped"]  # retried after the 500; caught up after the restart
        for item in receiver.received:
            assert item.event["type"] == "customer.created"
            stripe.Webhook.construct_event(item.body, item.headers["Stripe-Signature"], secret)
        [endpoint] = (await api.ok("GET", "/v1/webhook_endpoints"))["data"]
        assert endpoint["description"] == "ledgerd listen" and endpoint["url"] == receiver.url("/local")
        assert while_stopped
