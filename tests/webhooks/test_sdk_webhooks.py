"""stripe-python's `client.v1.webhook_endpoints`, unmodified, against a `ledgerd serve` process; its
signatures checked by `stripe.Webhook.construct_event` and, when node and npm can install stripe-node,
by stripe-node's `webhooks.constructEvent`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
import stripe

from ledgerd.service.auth import create_key
from tests.support.databases import create_database as _create_database
from tests.support.databases import drop_database as _drop_database
from tests.support.databases import random_name as _random_name
from tests.support.databases import with_database as _with_database
from tests.support.server import listening_socket, port_of, serve_command, wait_until_healthy
from tests.support.webhooks import Receiver, receiving

STRIPE_NODE = "23.1.0"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(admin_conn: asyncpg.Connection, database_url: str, template_db: str) -> AsyncIterator[tuple[str, str]]:
    name = _random_name("ledger_wh_")
    await _create_database(admin_conn, name, template_db)
    db_url = _with_database(database_url, name)
    conn = await asyncpg.connect(db_url)
    try:
        _, key = await create_key(conn, "acct_a", livemode=False)
    finally:
        await conn.close()
    sock = listening_socket()
    port = port_of(sock)
    env = {**os.environ, "DATABASE_URL": db_url, "LEDGER_LOG_LEVEL": "warning",
           "LEDGER_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8", "LEDGER_WEBHOOK_RETRY_SCHEDULE": "0.5"}
    process = spawn(env, sock)
    try:
        await wait_until_healthy(port, process)
        yield f"http://127.0.0.1:{port}", key
    finally:
        process.terminate()
        process.wait(timeout=15)
        sock.close()
        await _drop_database(admin_conn, name)


def spawn(env: dict[str, str], sock: socket.socket) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        serve_command(sock, "--no-migrate"),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(sock.fileno(),),
    )


def client_of(served: tuple[str, str]) -> stripe.StripeClient:
    return stripe.StripeClient(served[1], base_addresses={"api": served[0]}, max_network_retries=0)


async def test_sdk_crud(served: tuple[str, str]) -> None:
    client = client_of(served)
    created = await asyncio.to_thread(
        client.v1.webhook_endpoints.create,
        {"url": "https://hooks.example.com/a", "enabled_events": ["customer.created", "customer.deleted"],
         "description": "sdk", "metadata": {"k": "v"}},
    )
    assert isinstance(created, stripe.WebhookEndpoint)
    assert created.id.startswith("we_") and created.secret and created.secret.startswith("whsec_")
    assert created.enabled_events == ["customer.created", "customer.deleted"] and created.status == "enabled"
    fetched = await asyncio.to_thread(client.v1.webhook_endpoints.retrieve, created.id)
    assert fetched.id == created.id and getattr(fetched, "secret", None) is None
    updated = await asyncio.to_thread(
        client.v1.webhook_endpoints.update, created.id, {"disabled": True, "enabled_events": ["*"]}
    )
    assert updated.status == "disabled" and updated.enabled_events == ["*"]
    more = [
        await asyncio.to_thread(client.v1.webhook_endpoints.create, {"url": f"https://h.example.com/{n}", "enabled_events": ["*"]})
        for n in range(3)
    ]
    listed = await asyncio.to_thread(client.v1.webhook_endpoints.list, {"limit": 2})
    every = [endpoint.id for endpoint in await asyncio.to_thread(lambda: list(listed.auto_paging_iter()))]
    assert every == [more[2].id, more[1].id, more[0].id, created.id]
    deleted = await asyncio.to_thread(client.v1.webhook_endpoints.delete, created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(stripe.InvalidRequestError) as error:
        await asyncio.to_thread(client.v1.webhook_endpoints.create, {"url": "https://x.example.com", "enabled_events": ["invoice.paid"]})
    assert error.value.param == "enabled_events[0]"
    for endpoint in more:
        await asyncio.to_thread(client.v1.webhook_endpoints.delete, endpoint.id)


@pytest.fixture(scope="module")
def stripe_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """A folder with stripe-node installed from npm, or None (with the reason printed) if it cannot be."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        print("stripe-node check skipped: node or npm is not installed")
        yield None
        return
    folder = tmp_path_factory.mktemp("stripe-node")
    try:
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", f"stripe@{STRIPE_NODE}"],
            cwd=folder, check=True, timeout=180, capture_output=True,
        )
    except (subprocess.SubprocessError, OSError) as error:
        print(f"stripe-node check skipped: npm install stripe@{STRIPE_NODE} failed: {error}")
        yield None
        return
    yield folder


NODE_VERIFY = """
const Stripe = require('stripe');
const stripe = new Stripe('sk_test_unused');
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = input.map(({body, header, secret}) => stripe.webhooks.constructEvent(Buffer.from(body, 'base64'), header, secret).id);
process.stdout.write(JSON.stringify(out));
"""


async def test_signatures_verify_with_both_official_sdks(served: tuple[str, str], stripe_node: Path | None) -> None:
    client = client_of(served)
    async with receiving() as receiver:
        endpoint = await asyncio.to_thread(
            client.v1.webhook_endpoints.create, {"url": receiver.url(), "enabled_events": ["customer.created"]}
        )
        secret = endpoint.secret
        assert secret is not None
        customers = [await asyncio.to_thread(client.v1.customers.create, {"name": f"n{n}"}) for n in range(3)]
        await wait_received(receiver, 3)
        ids = []
        for item in receiver.received:
            event = stripe.Webhook.construct_event(item.body, item.headers["Stripe-Signature"], secret)
            assert event.type == "customer.created"
            ids.append(event.data.object.id)
        assert sorted(ids) == sorted(customer.id for customer in customers)
        if stripe_node is None:
            pytest.skip("verified by stripe-python only: stripe-node could not be installed (see output)")
        import base64

        payload = json.dumps([
            {"body": base64.b64encode(item.body).decode(), "header": item.headers["Stripe-Signature"], "secret": secret}
            for item in receiver.received
        ])
        script = stripe_node / "verify.js"
        script.write_text(NODE_VERIFY)
        result = await asyncio.to_thread(
            subprocess.run, ["node", str(script)], input=payload.encode(), cwd=stripe_node,
            capture_output=True, timeout=60, check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        assert json.loads(result.stdout) == [item.event["id"] for item in receiver.received]
        await asyncio.to_thread(client.v1.webhook_endpoints.delete, endpoint.id)


async def wait_received(receiver: Receiver, count: int) -> None:
    await receiver.wait_for(lambda got: len(got) >= count, within=20)
