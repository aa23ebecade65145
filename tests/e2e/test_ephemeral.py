"""The test mode of `ledgerd serve --ephemeral` (service/testmode.py) and `--strict` (service/strict.py),
over HTTP on a real PostgreSQL database; and the `serve --ephemeral` process itself."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from ledgerd.service.app import create_app
from ledgerd.service.config import Config

JAN_1_2030 = 1_893_456_000


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(
        self, method: str, path: str, key: str | None, data: Any = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with self.session.request(method, self.base + path, data=data, headers=headers, **kwargs) as r:
            return r.status, await r.json()


Start = Callable[..., Any]


@pytest_asyncio.fixture
async def start(db_url: str) -> AsyncIterator[Start]:
    servers: list[TestServer] = []
    session = aiohttp.ClientSession()

    async def start_app(**overrides: Any) -> Api:
        server = TestServer(create_app(Config.from_env(db_url, access_log=False, **overrides)))
        await server.start_server()
        servers.append(server)
        return Api(session, str(server.make_url("")).rstrip("/"))

    yield start_app
    await session.close()
    for server in servers:
        await server.close()


def key() -> str:
    return "sk_test_" + secrets.token_hex(8)


async def test_every_test_key_is_an_account_of_its_own(start: Start) -> None:
    api = await start(ephemeral=True)
    a, b = key(), key()
    status, created = await api.call("POST", "/v1/customers", a, {"email": "same@example.com"})
    assert status == 200
    await api.call("POST", "/v1/customers", b, {"email": "same@example.com"})
    _, listed_a = await api.call("GET", "/v1/customers", a)
    _, listed_b = await api.call("GET", "/v1/customers", b)
    assert [c["id"] for c in listed_a["data"]] == [created["id"]]
    assert len(listed_b["data"]) == 1 and listed_b["data"][0]["id"] != created["id"]
    status, missing = await api.call("GET", f"/v1/customers/{created['id']}", b)
    assert (status, missing["error"]["code"]) == (404, "resource_missing")
    _, events = await api.call("GET", "/v1/events", b)
    assert all(event["data"]["object"]["id"] != created["id"] for event in events["data"])


@pytest.mark.parametrize(
    ("secret", "says"),
    [("sk_live_" + "a" * 24, "Live mode keys are refused"), ("sk_test_", "Invalid API Key"),
     ("pk_test_abc", "Invalid API Key"), ("sk_test_white space", "Invalid API Key")],
)
async def test_live_and_malformed_keys_are_refused(start: Start, secret: str, says: str) -> None:
    api = await start(ephemeral=True)
    status, body = await api.call("GET", "/v1/customers", secret)
    assert status == 401
    assert says in body["error"]["message"]


async def test_reset_empties_only_the_callers_account(start: Start) -> None:
    api = await start(ephemeral=True)
    mine, theirs = key(), key()
    _, customer = await api.call("POST", "/v1/customers", mine, {"name": "old"})
    await api.call("POST", "/v1/customers", theirs, {"name": "neighbour"})
    status, reset = await api.call("POST", "/_ledger/reset", mine)
    assert status == 200 and reset["object"] == "ledger.reset"
    _, listed = await api.call("GET", "/v1/customers", mine)
    assert listed["data"] == []
    status, _ = await api.call("GET", f"/v1/customers/{customer['id']}", mine)
    assert status == 404
    _, events = await api.call("GET", "/v1/events", mine)
    assert events["data"] == []
    _, neighbour = await api.call("GET", "/v1/customers", theirs)
    assert [c["name"] for c in neighbour["data"]] == ["neighbour"]
    _, again = await api.call("POST", "/v1/customers", mine, {"name": "new"})  # the key works on
    _, listed = await api.call("GET", "/v1/customers", mine)
    assert [c["id"] for c in listed["data"]] == [again["id"]]


async def test_the_clock_dates_writes_events_and_as_of(start: Start) -> None:
    api = await start(ephemeral=True)
    me, other = key(), key()
    status, clock = await api.call("POST", "/_ledger/clock", me, {"frozen_time": str(JAN_1_2030)})
    assert (status, clock["now"], clock["frozen"]) == (200, JAN_1_2030, True)
    _, customer = await api.call("POST", "/v1/customers", me, {"name": "v1"})
    assert customer["created"] == JAN_1_2030
    await api.call("POST", "/_ledger/clock", me, {"advance": "3600"})
    await api.call("POST", f"/v1/customers/{customer['id']}", me, {"name": "v2"})
    _, entry = await api.call(
        "POST", f"/v1/customers/{customer['id']}/balance_transactions", me, {"amount": "-100", "currency": "usd"}
    )
    assert entry["created"] == JAN_1_2030 + 3600
    _, events = await api.call("GET", "/v1/events", me)
    assert sorted({event["created"] for event in events["data"]}) == [JAN_1_2030, JAN_1_2030 + 3600]
    _, then = await api.call("GET", f"/v1/customers/{customer['id']}?as_of={JAN_1_2030 + 60}", me)
    assert (then["name"], then["balance"]) == ("v1", 0)
    _, now = await api.call("GET", f"/v1/customers/{customer['id']}?as_of={JAN_1_2030 + 3600}", me)
    assert (now["name"], now["balance"]) == ("v2", -100)
    # unfreezing lets the clock run on from where it stood; another account's clock never moved
    _, running = await api.call("POST", "/_ledger/clock", me, {"frozen_time": ""})
    assert running["frozen"] is False and running["now"] >= JAN_1_2030 + 3600
    _, theirs = await api.call("GET", "/_ledger/clock", other)
    assert theirs["frozen"] is False and abs(theirs["now"] - time.time()) < 60


@pytest.mark.parametrize(
    ("data", "param"),
    [({"advance": "-5"}, "advance"), ({"frozen_time": "soon"}, "frozen_time"), ({"speed": "2"}, "speed"), ({}, "advance")],
)
async def test_bad_clock_requests_are_400_and_change_nothing(start: Start, data: Any, param: str) -> None:
    api = await start(ephemeral=True)
    me = key()
    status, body = await api.call("POST", "/_ledger/clock", me, data)
    assert (status, body["error"]["param"]) == (400, param)
    _, clock = await api.call("GET", "/_ledger/clock", me)
    assert clock["frozen"] is False and abs(clock["now"] - time.time()) < 60


async def test_recent_requests_of_the_caller_only(start: Start) -> None:
    api = await start(ephemeral=True)
    me, other = key(), key()
    await api.call("POST", "/v1/customers", me, {"email": "a@example.com"})
    await api.call("GET", "/v1/customers/cus_nope", me)
    await api.call("GET", "/v1/customers", other)
    status, recent = await api.call("GET", "/_ledger/requests", me)
    assert status == 200
    assert [(r["method"], r["path"], r["status"]) for r in recent["data"]] == [
        ("GET", "/v1/customers/cus_nope", 404),
        ("POST", "/v1/customers", 200),
    ]
    assert all(r["id"].startswith("req_") for r in recent["data"])
    _, limited = await api.call("GET", "/_ledger/requests?limit=1", me)
    assert len(limited["data"]) == 1 and limited["has_more"] is True


async def test_the_control_api_is_404_outside_ephemeral_mode(start: Start, db_url: str) -> None:
    import asyncpg

    from ledgerd.service.auth import create_key

    conn = await asyncpg.connect(db_url)
    try:
        _, secret = await create_key(conn, "acct_prod", livemode=False)
    finally:
        await conn.close()
    api = await start()
    for method, path in (("POST", "/_ledger/reset"), ("POST", "/_ledger/clock"), ("GET", "/_ledger/requests"),
                         ("POST", "/_ledger/webhooks"), ("GET", "/_ledger/webhooks")):
        status, body = await api.call(method, path, secret)
        assert status == 404, (method, path, body)
    status, _ = await api.call("GET", "/v1/customers", key())  # and made-up keys are not accepted
    assert status == 401


@pytest.mark.parametrize(
    ("method", "path", "data", "param"),
    [
        ("POST", "/v1/customers", {"external_id": "u1"}, "external_id"),
        ("POST", "/v1/customers", {"currency": "usd"}, "currency"),
        ("GET", "/v1/customers/{id}?as_of=1", None, "as_of"),
        ("GET", "/v1/customers/{id}/balance_transactions?as_of=1", None, "as_of"),
        ("POST", "/v1/customers/{id}", {"external_id": "u1"}, "external_id"),
    ],
)
async def test_strict_refuses_extensions_as_unknown_parameters(
    start: Start, method: str, path: str, data: Any, param: str
) -> None:
    api = await start(ephemeral=True, strict=True)
    me = key()
    _, customer = await api.call("POST", "/v1/customers", me, {"email": "s@example.com"})
    status, body = await api.call(method, path.format(id=customer["id"]), me, data)
    assert status == 400
    assert body["error"] == {
        "type": "invalid_request_error",
        "code": "parameter_unknown",
        "doc_url": "https://stripe.com/docs/error-codes/parameter-unknown",
        "message": f"Received unknown parameter: {param}",
        "param": param,
    }
    _, listed = await api.call("GET", "/v1/customers", me)
    assert len(listed["data"]) == 1  # nothing written


async def test_strict_refuses_json_bodies_and_the_history_extension(start: Start) -> None:
    api = await start(ephemeral=True, strict=True)
    me = key()
    status, body = await api.call("POST", "/v1/customers", me, {"email": "form@example.com"})
    assert status == 200
    async with api.session.post(
        api.base + "/v1/customers", json={"email": "j@example.com"}, headers={"Authorization": f"Bearer {me}"}
    ) as response:
        assert response.status == 400
        assert "application/x-www-form-urlencoded" in (await response.json())["error"]["message"]
    status, _ = await api.call("GET", f"/v1/customers/{body['id']}/history", me)
    assert status == 404
    _, listed = await api.call("GET", "/v1/customers", me)
    assert len(listed["data"]) == 1


async def test_without_strict_the_extensions_work(start: Start) -> None:
    api = await start(ephemeral=True)
    me = key()
    status, _ = await api.call("POST", "/v1/customers", me, {"external_id": "u1", "email": "Case@example.com"})
    assert status == 200
    _, listed = await api.call("GET", "/v1/customers?email=case@example.com", me)
    assert len(listed["data"]) == 1  # ledgerd's list filter ignores case


async def test_strict_list_email_is_case_sensitive(start: Start) -> None:
    api = await start(ephemeral=True, strict=True)
    me = key()
    await api.call("POST", "/v1/customers", me, {"email": "Case@example.com"})
    _, lower = await api.call("GET", "/v1/customers?email=case@example.com", me)
    _, exact = await api.call("GET", "/v1/customers?email=Case@example.com", me)
    assert (len(lower["data"]), len(exact["data"])) == (0, 1)


async def test_search_lag_hides_recent_writes_until_the_lag_passes(start: Start) -> None:
    api = await start(ephemeral=True, strict=True, search_lag_s=30.0)
    me = key()
    await api.call("POST", "/_ledger/clock", me, {"frozen_time": str(JAN_1_2030)})
    await api.call("POST", "/v1/customers", me, {"email": "lag@example.com"})
    query = "/v1/customers/search?query=email:'lag@example.com'"
    _, soon = await api.call("GET", query, me)
    assert soon["data"] == []  # read-your-writes in search fails here as it can with Stripe
    await api.call("POST", "/_ledger/clock", me, {"advance": "31"})
    _, later = await api.call("GET", query, me)
    assert [c["email"] for c in later["data"]] == ["lag@example.com"]


# -- the process --------------------------------------------------------------------------------------


def start_process(cache: Path, *args: str) -> tuple[subprocess.Popen[str], dict[str, str], float]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["LEDGER_CACHE_DIR"] = str(cache)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "ledgerd.service.cli", "serve", "--ephemeral", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    facts: dict[str, str] = {}
    while len(facts) < 3:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"serve --ephemeral exited: {process.stderr.read() if process.stderr else ''}")
        name, _, value = line.strip().partition("=")
        facts[name] = value
    return process, facts, time.monotonic() - started


def http(method: str, url: str, key: str, data: dict[str, str] | None = None) -> tuple[int, Any]:
    import urllib.error
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, method=method, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("stop_with", [signal.SIGTERM, signal.SIGINT])
def test_serve_ephemeral_prints_its_facts_serves_and_deletes_everything(
    tmp_path: Path, stop_with: signal.Signals
) -> None:
    process, facts, _ = start_process(tmp_path / "cache")
    try:
        assert set(facts) == {"LEDGER_URL", "LEDGER_KEY", "DATABASE_URL"}
        assert facts["LEDGER_URL"].startswith("http://127.0.0.1:")
        assert facts["LEDGER_KEY"].startswith("sk_test_")
        status, customer = http("POST", facts["LEDGER_URL"] + "/v1/customers", facts["LEDGER_KEY"], {"name": "x"})
        assert (status, customer["name"]) == (200, "x")
        data_dir = Path(facts["DATABASE_URL"].split("host=")[1].split("&")[0]).parent
        assert data_dir.name.startswith("ledgerd-ephemeral-") and data_dir.is_dir()
        postmaster = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    finally:
        process.send_signal(stop_with)
        assert process.wait(timeout=30) == 0
    assert not data_dir.exists()
    with pytest.raises(ProcessLookupError):  # the database server is gone too
        for _ in range(100):
            os.kill(postmaster, 0)
            time.sleep(0.05)


def test_a_second_start_reuses_the_cached_template(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, _, _ = start_process(cache)
    first.terminate()
    first.wait(timeout=30)
    templates = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(templates) == 1 and (templates[0] / "PG_VERSION").exists()
    built_at = templates[0].stat().st_mtime_ns
    second, facts, _ = start_process(cache, "--strict")
    try:
        status, body = http("POST", facts["LEDGER_URL"] + "/v1/customers", facts["LEDGER_KEY"], {"external_id": "u"})
        assert (status, body["error"]["param"]) == (400, "external_id")  # --strict reached the app
    finally:
        second.terminate()
        assert second.wait(timeout=30) == 0
    assert second.stderr is not None and "(warm)" in second.stderr.read()
    assert templates[0].stat().st_mtime_ns == built_at


def test_the_plugin_module_imports_nothing_heavy() -> None:
    probe = (
        "import sys, ledgerd.service.pytest_plugin as p\n"
        "heavy = {'aiohttp', 'asyncpg', 'stripe', 'msgspec', 'structlog', 'ledgerd.service.app'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_exit_with_parent_stops_and_deletes_when_the_parent_dies(tmp_path: Path) -> None:
    # what the pytest plugin relies on when pytest itself is killed
    parent = (
        "import os, subprocess, sys\n"
        "server = subprocess.Popen([sys.executable, '-m', 'ledgerd.service.cli', 'serve', '--ephemeral',\n"
        "    '--port', '0', '--exit-with-parent'], stdout=subprocess.PIPE, text=True)\n"
        "for _ in range(3):\n"
        "    print(server.stdout.readline().strip(), flush=True)\n"
        "print(f'PID={server.pid}', flush=True)\n"
        "os._exit(0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["LEDGER_CACHE_DIR"] = str(tmp_path / "cache")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, env=env, timeout=120)
    facts = dict(line.partition("=")[::2] for line in out.stdout.splitlines())
    data_dir = Path(facts["DATABASE_URL"].split("host=")[1].split("&")[0]).parent
    server = int(facts["PID"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (data_dir.exists() or Path(f"/proc/{server}").exists()):
        time.sleep(0.1)
    assert not data_dir.exists()
    assert not Path(f"/proc/{server}").exists() or "Z" in Path(f"/proc/{server}/stat").read_text().split(")")[1][:3]


async def count_accounts(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval("SELECT count(DISTINCT account) FROM customers")
        return count
    finally:
        await conn.close()


def test_the_sample_user_suite_runs_against_a_server_given_by_ledger_url(tmp_path: Path) -> None:
    # the plugin's other way in: a ledger somebody else started (here, --strict like the plugin's own)
    process, facts, _ = start_process(tmp_path / "cache", "--strict")
    try:
        suite = Path(__file__).parents[1] / "plugin_user"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LEDGER_URL")}
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-c", str(suite / "pytest.ini"), "-q", "-p", "no:xdist",
             "--ledger-url", facts["LEDGER_URL"], str(suite)],
            capture_output=True, text=True, env=env, timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:]
        assert " passed" in result.stdout and "failed" not in result.stdout
        # and they ran here, each test on an account of its own (no server of the plugin's own)
        accounts = asyncio.run(count_accounts(facts["DATABASE_URL"]))
        assert accounts >= 8
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_reset_all_empties_every_account_and_forgets_clocks(start: Start) -> None:
    api = await start(ephemeral=True)
    a, b = key(), key()
    await api.call("POST", "/v1/customers", a, {"name": "a"})
    await api.call("POST", "/v1/customers", b, {"name": "b"})
    await api.call("POST", "/_ledger/clock", b, {"frozen_time": str(JAN_1_2030)})
    status, body = await api.call("POST", "/_ledger/reset", a, {"all": "maybe"})
    assert (status, body["error"]["param"]) == (400, "all")
    _, still = await api.call("GET", "/v1/customers", b)
    assert len(still["data"]) == 1  # a rejected reset changed nothing
    status, _ = await api.call("POST", "/_ledger/reset", a, {"all": "true"})
    assert status == 200
    for k in (a, b):
        _, requests = await api.call("GET", "/_ledger/requests", k)
        assert requests["data"] == []
        _, listed = await api.call("GET", "/v1/customers", k)
        assert listed["data"] == []
    _, clock = await api.call("GET", "/_ledger/clock", b)
    assert clock["frozen"] is False


# -- webhooks in tests: collect mode, and real delivery to loopback receivers ---------------------------------

JAN_1_2020 = 1_577_836_800


async def collected(api: Api, secret: str, count: int, within: float = 15.0) -> list[Any]:
    deadline = time.monotonic() + within
    while True:
        status, body = await api.call("GET", "/_ledger/webhooks", secret)
        assert status == 200 and body["object"] == "list"
        if len(body["data"]) >= count or time.monotonic() > deadline:
            return list(body["data"])
        await asyncio.sleep(0.05)


async def test_collect_mode_records_the_signed_payload_that_would_be_sent(start: Start, db_url: str) -> None:
    import asyncpg
    import stripe
    from standardwebhooks import Webhook as StandardWebhook

    api = await start(ephemeral=True)
    me = key()
    status, collector = await api.call("POST", "/_ledger/webhooks", me)
    assert status == 200 and collector["object"] == "ledger.webhook_collector"
    assert collector["secret"].startswith("whsec_") and collector["enabled_events"] == ["*"]
    _, again = await api.call("POST", "/_ledger/webhooks", me)  # idempotent: the same endpoint and secret
    assert (again["endpoint"], again["secret"]) == (collector["endpoint"], collector["secret"])
    _, customer = await api.call("POST", "/v1/customers", me, {"email": "hook@example.com"})
    await api.call("POST", f"/v1/customers/{customer['id']}", me, {"name": "Hook"})
    deliveries = await collected(api, me, 2)
    assert [d["type"] for d in deliveries] == ["customer.created", "customer.updated"]  # oldest first
    for delivery in deliveries:
        headers, body = delivery["headers"], delivery["body"]
        # the official SDK's verification over the exact bytes; the Standard Webhooks oracle too
        event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], collector["secret"])
        assert event.id == delivery["event"] and event.type == delivery["type"]
        assert StandardWebhook(collector["secret"]).verify(body, headers)["id"] == headers["webhook-id"] == event.id
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body, headers["Stripe-Signature"], collector["secret"] + "x")
        assert headers["Content-Type"].startswith("application/json") and headers["User-Agent"].startswith("ledgerd")
        # what GET /v1/events/{id} renders, with the pending count at delivery time
        sent = json.loads(body)
        _, stored = await api.call("GET", f"/v1/events/{event.id}", me)
        assert sent == stored | {"pending_webhooks": sent["pending_webhooks"]}
    created = json.loads(deliveries[0]["body"])
    assert created["data"]["object"]["id"] == customer["id"] and created["pending_webhooks"] == 1
    # through the real pipeline: a delivery row settled by a recorded 200 attempt, nothing left pending
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT d.state, a.status_code FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id"
            " WHERE d.endpoint_id = $1 ORDER BY a.id",
            collector["endpoint"],
        )
    finally:
        await conn.close()
    assert [(row["state"], row["status_code"]) for row in rows] == [("succeeded", 200)] * 2


async def test_collected_webhooks_are_the_callers_own(start: Start) -> None:
    api = await start(ephemeral=True)
    a, b, bystander = key(), key(), key()
    await api.call("POST", "/_ledger/webhooks", a)
    await api.call("POST", "/_ledger/webhooks", b)
    _, for_a = await api.call("POST", "/v1/customers", a, {"name": "a"})
    _, for_b = await api.call("POST", "/v1/customers", b, {"name": "b"})
    await api.call("POST", "/v1/customers", bystander, {"name": "not collected"})
    for secret in (a, b):
        await collected(api, secret, 1)
    await asyncio.sleep(0.5)  # anything misrouted would have arrived by now too
    for secret, customer in ((a, for_a), (b, for_b)):
        deliveries = await collected(api, secret, 1)
        assert [json.loads(d["body"])["data"]["object"]["id"] for d in deliveries] == [customer["id"]]
    _, nothing = await api.call("GET", "/_ledger/webhooks", bystander)
    assert nothing["data"] == []
    status, body = await api.call("POST", "/_ledger/webhooks", a, {"url": "http://127.0.0.1/"})
    assert (status, body["error"]["param"]) == (400, "url")


async def test_collect_mode_follows_a_clock_frozen_in_the_past(start: Start) -> None:
    api = await start(ephemeral=True)
    me = key()
    await api.call("POST", "/_ledger/webhooks", me)  # enabled first, as the plugin's fixture does
    await api.call("POST", "/_ledger/clock", me, {"frozen_time": str(JAN_1_2020)})
    _, customer = await api.call("POST", "/v1/customers", me, {"name": "2020"})
    (delivery,) = await collected(api, me, 1)
    event = json.loads(delivery["body"])
    assert (event["created"], event["data"]["object"]["id"]) == (JAN_1_2020, customer["id"])


async def test_endpoints_deliver_for_real_to_loopback_with_fast_retries(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stripe

    from tests.support.webhooks import receiving

    for name in ("LEDGER_WEBHOOK_ALLOW_CIDRS", "LEDGER_WEBHOOK_RETRY_SCHEDULE"):
        monkeypatch.delenv(name, raising=False)  # the ephemeral defaults: loopback allowed, retries after 1, 2, 4 s
    async with receiving() as receiver:
        api = await start(ephemeral=True)
        me = key()
        # under a clock frozen in the past: the endpoint's subscription is dated by the same clock as the events
        await api.call("POST", "/_ledger/clock", me, {"frozen_time": str(JAN_1_2020)})
        receiver.plan("/hook", 500)  # the first attempt fails
        status, endpoint = await api.call(
            "POST", "/v1/webhook_endpoints", me, {"url": receiver.url("/hook"), "enabled_events[]": "customer.created"}
        )
        assert status == 200, endpoint
        _, customer = await api.call("POST", "/v1/customers", me, {"name": "real"})
        first, retry = await receiver.wait_for(lambda got: len(got) >= 2, within=15)
        assert first.body == retry.body and retry.event["data"]["object"]["id"] == customer["id"]
        assert 0.7 < retry.at - first.at < 3.0  # 1 s +-20 % (the test schedule outside ephemeral mode: 10 min)
        event = stripe.Webhook.construct_event(retry.body, retry.headers["Stripe-Signature"], endpoint["secret"])
        assert event.created == JAN_1_2020
