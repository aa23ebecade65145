"""pytest plugin: a stateful local Stripe (Customers, Customer Balance Transactions, Events) for your tests.

Installed with ledgerd (entry point ``pytest11``); it imports only the standard library until a fixture
is used, and starts nothing unless one is.

* ``ledger`` (session): one ``ledgerd serve --ephemeral --strict`` per pytest process (so one per xdist
  worker), stopped and deleted at the end; or the server named by ``--ledger-url URL`` / ``$LEDGER_URL``.
  ``ledger.url`` is its base URL; ``ledger.reset(key)``, ``ledger.clock(key, frozen_time=, advance=)``
  and ``ledger.requests(key)`` call its ``/_ledger/`` control API for that key's account.
* ``ledger_key`` (function): a fresh random ``sk_test_`` key, i.e. a fresh empty account, so tests never
  see each other's data, in parallel or not.
* ``stripe_client`` (function): ``stripe.StripeClient(ledger_key, base_addresses={"api": ledger.url})``.
* ``ledger_events`` (function): the events of ``ledger_key``'s account (``/v1/events``);
  ``ledger_events.wait_for("customer.created")`` returns the newest such event, waiting a little for it.

* ``ledger_webhooks`` (function): turns on the server's *collect mode* for ``ledger_key``'s account
  (``POST /_ledger/webhooks``): every event of the account is rendered, signed and handed to the
  delivery pipeline as for a real endpoint, but kept in the server's memory instead of sent.
  ``ledger_webhooks.wait_for("customer.created")`` returns the next delivered event of that type (parsed
  JSON; each delivery is returned once, oldest first), waiting up to ``timeout`` s for it;
  ``.deliveries`` lists what was delivered (``headers``, ``body`` as sent); ``.secret`` is the endpoint's
  signing secret, for ``stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secret)``.

Options: ``--ledger-url URL``, ``--ledger-no-strict`` (accept ledgerd's extensions), ``--ledger-search-lag S``.

Endpoints a test registers itself (``/v1/webhook_endpoints``) are delivered for real: the ephemeral
server allows receivers on 127.0.0.0/8 and ::1 and retries after 1, 2 and 4 s.
"""

from __future__ import annotations

import fnmatch
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

START_TIMEOUT_S = 120.0  # the first start builds the cached template (initdb + migrations)
FACTS = ("LEDGER_URL", "LEDGER_KEY", "DATABASE_URL")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ledgerd", "ledgerd: a local stateful Stripe")
    group.addoption("--ledger-url", default=None, help="use this running ledger instead of starting one")
    group.addoption(
        "--ledger-no-strict",
        action="store_true",
        help="start the ledger without --strict (ledgerd's extensions accepted)",
    )
    group.addoption(
        "--ledger-search-lag", type=float, default=0.0, metavar="SECONDS", help="the server's --search-lag"
    )


class LedgerError(Exception):
    """The ledger answered a control or events request with an error."""


def new_key() -> str:
    return "sk_test_" + secrets.token_hex(16)


@dataclass
class Ledger:
    """A running ledger: its base URL, and its control API for one key's account."""

    url: str
    key: str = field(default_factory=new_key)
    process: subprocess.Popen[str] | None = None
    facts: dict[str, str] = field(default_factory=dict)

    def control(self, method: str, path: str, key: str, params: dict[str, Any] | None = None) -> Any:
        data = urllib.parse.urlencode(params or {}).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data if method == "POST" else None,
            method=method,
            headers={"Authorization": f"Bearer {key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise LedgerError(f"{method} {path}: {error.code} {error.read().decode()}") from None

    def reset(self, key: str, *, everything: bool = False) -> dict[str, Any]:
        """Empty the key's account (the key then names a new account); `everything`: every account."""
        params = {"all": "true"} if everything else None
        result: dict[str, Any] = self.control("POST", "/_ledger/reset", key, params)
        return result

    def clock(self, key: str, *, frozen_time: int | None = None, advance: int | None = None) -> dict[str, Any]:
        """Freeze the account's clock at `frozen_time` (unix seconds) and/or move it `advance` seconds on;
        with neither, read it."""
        params = {name: value for name, value in (("frozen_time", frozen_time), ("advance", advance)) if value is not None}
        result: dict[str, Any] = (
            self.control("POST", "/_ledger/clock", key, params)
            if params
            else self.control("GET", "/_ledger/clock", key)
        )
        return result

    def requests(self, key: str) -> list[dict[str, Any]]:
        """The account's recent requests, newest first: method, path, status, id (the Request-Id)."""
        data: list[dict[str, Any]] = self.control("GET", "/_ledger/requests", key)["data"]
        return data

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_ledger(strict: bool, search_lag_s: float) -> Ledger:
    command = [sys.executable, "-m", "ledgerd.service.cli", "serve", "--ephemeral", "--port", "0"]
    command += ["--exit-with-parent"]
    if strict:
        command.append("--strict")
    if search_lag_s:
        command += ["--search-lag", str(search_lag_s)]
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "LEDGER_URL")}
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, env=env, bufsize=1
    )
    assert process.stdout is not None
    facts: dict[str, str] = {}
    deadline = time.monotonic() + START_TIMEOUT_S
    timer = threading.Timer(START_TIMEOUT_S, process.kill)  # readline() cannot time out by itself
    timer.start()
    try:
        while not all(name in facts for name in FACTS):
            line = process.stdout.readline()
            if not line or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"`{' '.join(command)}` exited before it was ready (see its stderr above)")
            name, sep, value = line.rstrip("\n").partition("=")
            if sep:
                facts[name] = value
    finally:
        timer.cancel()
    # keep draining stdout so the server never blocks on a full pipe
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return Ledger(url=facts["LEDGER_URL"], key=facts["LEDGER_KEY"], process=process, facts=facts)


@pytest.fixture(scope="session")
def ledger(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    """The ledger for this pytest process (one per xdist worker), or the one named by --ledger-url."""
    url = request.config.getoption("--ledger-url") or os.environ.get("LEDGER_URL")
    if url:
        yield Ledger(url=url.rstrip("/"))
        return
    server = start_ledger(
        strict=not request.config.getoption("--ledger-no-strict"),
        search_lag_s=request.config.getoption("--ledger-search-lag"),
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ledger_key(ledger: Ledger) -> str:
    """A fresh sk_test_ key: an empty account of its own."""
    return new_key()


@dataclass
class Events:
    """The events of one account, newest first, as `/v1/events` lists them."""

    ledger: Ledger
    key: str

    def list(self, type: str | None = None) -> list[dict[str, Any]]:
        query = "?" + urllib.parse.urlencode({"type": type, "limit": 100}) if type else "?limit=100"
        data: list[dict[str, Any]] = self.ledger.control("GET", "/v1/events" + query, self.key)["data"]
        return data

    def wait_for(self, type: str, timeout: float = 5.0) -> dict[str, Any]:
        """The newest event of this type (``customer.*`` patterns work too); fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.list(type)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                seen = sorted({event["type"] for event in self.list()})
                raise AssertionError(f"no {type} event within {timeout} s; the account has {seen or 'none'}")
            time.sleep(0.05)


@pytest.fixture
def ledger_events(ledger: Ledger, ledger_key: str) -> Events:
    """The events of `ledger_key`'s account (the one `stripe_client` writes to)."""
    return Events(ledger, ledger_key)


@pytest.fixture
def stripe_client(ledger: Ledger, ledger_key: str) -> Any:
    """The official SDK's client on a fresh account of the ledger (needs the `stripe` package)."""
    import stripe

    return stripe.StripeClient(ledger_key, base_addresses={"api": ledger.url})


@dataclass
class Webhooks:
    """The webhooks delivered to one account's collect-mode endpoint, as the ledger would have sent them."""

    ledger: Ledger
    key: str
    endpoint: str
    secret: str
    returned: set[str] = field(default_factory=set)  # the deliveries wait_for has returned

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery so far, oldest first: ``event``, ``type``, ``attempt``, ``headers``, ``body``."""
        data: list[dict[str, Any]] = self.ledger.control("GET", "/_ledger/webhooks", self.key)["data"]
        return data

    def events(self) -> list[dict[str, Any]]:
        """The delivered events (parsed bodies), oldest first."""
        return [json.loads(delivery["body"]) for delivery in self.deliveries]

    def wait_for(self, type: str, timeout: float = 5.0) -> dict[str, Any]:
        """The oldest delivered event of this type (``customer.*`` patterns work too) that wait_for has not
        returned before; fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            deliveries = self.deliveries
            for delivery in deliveries:
                if delivery["id"] not in self.returned and fnmatch.fnmatchcase(delivery["type"], type):
                    self.returned.add(delivery["id"])
                    event: dict[str, Any] = json.loads(delivery["body"])
                    return event
            if time.monotonic() > deadline:
                seen = [delivery["type"] for delivery in deliveries]
                raise AssertionError(f"no {type} webhook within {timeout} s; delivered: {seen or 'none'}")
            time.sleep(0.05)


@pytest.fixture
def ledger_webhooks(ledger: Ledger, ledger_key: str) -> Webhooks:
    """Collect mode for `ledger_key`'s account (the one `stripe_client` writes to)."""
    collector = ledger.control("POST", "/_ledger/webhooks", ledger_key)
    return Webhooks(ledger, ledger_key, endpoint=collector["endpoint"], secret=collector["secret"])
