"""The API explorer (`GET /docs`) in a real browser: Debian's chromium driven by Python playwright, against a
real `ledgerd serve` (tests/e2e/conftest.py) on a fresh database.

Every request the page makes goes through a route guard that lets only the server's own loopback origin
through and aborts (and records) anything else; each test ends by asserting that nothing was aborted and
that the page logged no error (a CSP violation is logged as one). Screenshots go to artifacts/explorer/
(or $LEDGERD_ARTIFACTS), for a person to look at and for CI to keep.

In CI (CI set) a missing chromium is a failure; elsewhere these tests skip, saying why.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from ledgerd.service import forms
from ledgerd.service.explorer.views import CSP, assets
from ledgerd.service.openapi import document
from tests.support.server import Server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(server_process: Server) -> Server:
    """The browser drives a real `ledgerd serve` process (kept: these tests need chromium, absent on the box where the rest of tests/e2e moved in-process)."""
    return server_process


try:
    from playwright.async_api import Browser, BrowserContext, Page, Request, async_playwright, expect
    from playwright.async_api import Error as PlaywrightError
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("LEDGERD_ARTIFACTS", REPO / "artifacts" / "explorer"))
CHROMIUM = os.environ.get("LEDGERD_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags chromium keeps trying to reach Google's services (refused here).
# Playwright launches with a fresh temporary user-data-dir of its own each time.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------------------------------------------
# the browser, the guard, the page
# ---------------------------------------------------------------------------------------------------


def chromium_path() -> str | None:
    found = shutil.which(CHROMIUM)
    return found or (CHROMIUM if os.access(CHROMIUM, os.X_OK) else None)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    why = (
        f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does it)"
        if path is None
        else "python playwright is not installed (pip install -e '.[test]')"
        if async_playwright is None
        else ""
    )
    if why:
        if IN_CI:
            pytest.fail(f"browser tests cannot run in CI: {why}", pytrace=False)
        pytest.skip(why)
    os.makedirs(ARTIFACTS, exist_ok=True)
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=path, args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Session:
    """One browser context on the server's origin, with its guard and its error log."""

    server: Server
    context: BrowserContext
    page: Page
    origin: str
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def open(self, fragment: str = "") -> Page:
        await self.page.goto(f"{self.server.base_url}/docs{fragment}")
        await expect(self.page.locator("body")).to_have_attribute("data-ready", "true")
        return self.page

    async def screenshot(self, name: str, capsys: pytest.CaptureFixture[str]) -> Path:
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path))
        with capsys.disabled():
            print(f"\n    explorer screenshot: {path}")
        return path


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def new_session(browser: Browser, server: Server, **options: Any) -> Session:
    context = await browser.new_context(base_url=server.base_url, viewport=options.pop("viewport", WIDE), **options)
    page = await context.new_page()
    session = Session(server, context, page, origin_of(server.base_url))
    assert urlsplit(server.base_url).hostname in ("127.0.0.1", "localhost")

    async def guard(route: Any) -> None:
        url = route.request.url
        if origin_of(url) == session.origin:
            await route.continue_()
        else:
            session.blocked.append(url)
            await route.abort()

    await context.route("**/*", guard)
    def console(message: Any) -> None:
        # Chromium logs every 4xx/5xx answer to fetch() as an error; the API's refusals are expected (the
        # tests assert on them). Anything else, a CSP violation or a missing asset included, is kept.
        url = message.location.get("url", "")
        expected = message.text.startswith("Failed to load resource") and "/v1/" in url
        if message.type == "error" and not expected:
            session.errors.append(f"{message.text} ({url})")

    page.on("console", console)
    page.on("pageerror", lambda error: session.errors.append(f"uncaught: {error}"))
    return session


@pytest_asyncio.fixture(loop_scope="session")
async def session(browser: Browser, server: Server) -> AsyncIterator[Session]:
    current = await new_session(browser, server)
    yield current
    await current.context.close()
    assert current.blocked == [], f"the page tried to leave the server's origin: {current.blocked}"
    assert current.errors == [], f"the page logged errors: {current.errors}"


async def set_key(page: Page, key: str) -> None:
    await page.get_by_label("Secret key").fill(key)


async def snippet(page: Page, tab: str) -> str:
    await page.get_by_role("tab", name=tab, exact=True).click()
    return await page.get_by_role("tabpanel", name=tab).locator("pre > code").inner_text()


async def choose(page: Page, method: str, path: str) -> None:
    await page.get_by_role("button", name=f"{method} {path}", exact=True).click()
    await expect(page.get_by_role("main")).to_contain_text(path)


# ---------------------------------------------------------------------------------------------------
# a loopback receiver that records what the snippets send
# ---------------------------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[tuple[str, list[Received]]]:
    seen: list[Received] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(Received(request.method, request.path_qs, dict(request.headers), await request.read()))
        body = {"id": "cus_receiver", "object": "customer", "deleted": False}
        return web.json_response(body, headers={"Request-Id": "req_receiver"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def run(argv: list[str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"{argv[0]} failed: {err.decode()}"
    return out.decode()


def as_form_strings(value: Any) -> Any:
    """A params tree as the form decoder returns it: every leaf a string."""
    if isinstance(value, dict):
        return {k: as_form_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_form_strings(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------------------------------------
# delivery: headers, types, no inline code, no key needed
# ---------------------------------------------------------------------------------------------------


class InlineFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if "style" in names or any(name.startswith("on") for name in names):
            self.problems.append(f"inline style or handler on <{tag}>")
        if tag == "style":
            self.problems.append("<style> element")
        if tag == "script":
            self.in_script = True
            if "src" not in names:
                self.problems.append("<script> without src")

    def handle_endtag(self, tag: str) -> None:
        self.in_script = self.in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self.in_script and data.strip():
            self.problems.append("inline script text")


async def test_page_and_assets_are_served_strictly_without_a_key(server: Server) -> None:
    files = assets()
    assert {"index.html", "explorer.js", "encode.js", "explorer.css"} <= set(files)
    async with aiohttp.ClientSession() as http:
        for name, asset in files.items():
            url = f"{server.base_url}/docs" + ("" if name == "index.html" else f"/{name}")
            async with http.get(url) as response:  # no Authorization header
                assert response.status == 200, name
                body = await response.read()
                assert body == asset.body
                assert response.headers["Content-Type"] == asset.content_type
                assert response.headers["Content-Security-Policy"] == CSP
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["X-Frame-Options"] == "DENY"
                assert response.headers["Referrer-Policy"] == "no-referrer"
                assert response.headers["Cache-Control"] == "no-cache"
                etag = response.headers["ETag"]
            async with http.get(url, headers={"If-None-Match": etag}) as again:
                assert again.status == 304 and await again.read() == b""
            if name.endswith((".html", ".js", ".css")):
                # Fully offline: no reference to any other host.
                assert not re.search(rb"https?://", body), f"{name} names an external URL"
        for missing in ("/docs/index.html", "/docs/nope.js", "/docs/..%2Fapp.py", "/docs/views.py"):
            async with http.get(server.base_url + missing) as response:
                assert response.status == 404, missing
                assert (await response.json())["error"]["type"] == "invalid_request_error"
    assert CSP.startswith("default-src 'self'")
    for directive in ("frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'", "require-trusted-types-for 'script'"):
        assert directive in CSP
    assert "unsafe" not in CSP
    finder = InlineFinder()
    finder.feed(files["index.html"].body.decode())
    assert finder.problems == []
    for name, asset in files.items():
        if name.endswith(".js"):
            assert b"innerHTML" not in asset.body and b"eval(" not in asset.body, name


async def test_the_guard_aborts_and_records_other_origins(session: Session) -> None:
    # The proof that the "nothing left the origin" assertion at the end of every test can fail.
    with pytest.raises(PlaywrightError, match=r"net::ERR_FAILED"):
        await session.page.goto("http://example.com/")
    assert session.blocked == ["http://example.com/"]
    session.blocked.clear()


# ---------------------------------------------------------------------------------------------------
# auth panel
# ---------------------------------------------------------------------------------------------------


async def test_send_needs_a_key_and_the_key_survives_a_reload(session: Session, server: Server) -> None:
    page = await session.open()
    send = page.get_by_role("button", name="Send request")
    await expect(page.get_by_role("main")).to_contain_text("/v1/customers")
    await expect(send).to_be_disabled()
    await expect(page.get_by_text("Set a secret key to send.")).to_be_visible()
    await expect(page.get_by_role("status", name="Mode")).to_have_text("No key")
    await expect(page.get_by_label("Base URL")).to_have_value(server.base_url)

    await set_key(page, server.key)
    await expect(send).to_be_enabled()
    await expect(page.get_by_role("status", name="Mode")).to_have_text("Test mode")
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await expect(page.get_by_label("Secret key")).to_have_value(server.key)
    await expect(page.get_by_role("button", name="Send request")).to_be_enabled()

    # masked in snippets unless revealed
    assert server.key not in await snippet(page, "curl")
    await page.get_by_label("Reveal key in snippets").check()
    assert f"-u {server.key}: " in await snippet(page, "curl")

    await page.get_by_role("button", name="Forget").click()
    await expect(page.get_by_label("Secret key")).to_have_value("")
    await expect(page.get_by_role("button", name="Send request")).to_be_disabled()
    assert await page.evaluate("localStorage.getItem('ledgerd.explorer.secretKey')") is None
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await expect(page.get_by_label("Secret key")).to_have_value("")

    await set_key(page, server.live_key)
    await expect(page.get_by_role("status", name="Mode")).to_have_text("Live mode")
    # A public operation needs no key; another origin cannot be sent to under the page's CSP.
    await page.get_by_role("button", name="Forget").click()
    await choose(page, "GET", "/healthz")
    await expect(page.get_by_role("button", name="Send request")).to_be_enabled()
    await page.get_by_label("Base URL").fill("http://192.0.2.1:9")
    await expect(page.get_by_role("button", name="Send request")).to_be_disabled()
    assert "http://192.0.2.1:9/healthz" in await snippet(page, "curl")
    await page.get_by_label("Base URL").fill(server.base_url)
    await page.get_by_role("button", name="Send request").click()
    await expect(page.get_by_role("region", name="Response")).to_contain_text('"status": "ok"')


# ---------------------------------------------------------------------------------------------------
# the encoder, against stripe-node
# ---------------------------------------------------------------------------------------------------

# Inputs and the exact bodies stripe-node 23.1.0 produces for them (`queryStringifyRequestData` of
# cjs/utils.js, run under node 20). `None` in an input stands for JavaScript's undefined, NULL for null.
NULL = {"__null__": True}
STRIPE_NODE_CASES: list[tuple[dict[str, Any], str]] = [
    ({"email": "jenny@example.com", "name": "Jenny Rosen"}, "email=jenny%40example.com&name=Jenny%20Rosen"),
    (
        {"metadata": {"order_id": "6735", "weird key": "a&b=c+d"}},
        "metadata[order_id]=6735&metadata[weird%20key]=a%26b%3Dc%2Bd",
    ),
    (
        {"shipping": {"name": "Jenny", "address": {"line1": "1 Main St", "city": "Springfield"}}},
        "shipping[name]=Jenny&shipping[address][line1]=1%20Main%20St&shipping[address][city]=Springfield",
    ),
    ({"expand": ["test_clock", "default_source"]}, "expand[0]=test_clock&expand[1]=default_source"),
    ({"preferred_locales": ["en", "fr-CA"]}, "preferred_locales[0]=en&preferred_locales[1]=fr-CA"),
    (
        {
            "invoice_settings": {
                "custom_fields": [{"name": "PO", "value": "42"}],
                "rendering_options": {"amount_tax_display": "exclude_tax"},
            }
        },
        "invoice_settings[custom_fields][0][name]=PO&invoice_settings[custom_fields][0][value]=42"
        "&invoice_settings[rendering_options][amount_tax_display]=exclude_tax",
    ),
    ({"description": "", "metadata": {"gone": ""}, "address": ""}, "description=&metadata[gone]=&address="),
    ({"balance": -100, "validate": True, "next_invoice_sequence": 7}, "balance=-100&validate=true&next_invoice_sequence=7"),
    ({"name": "Zoë 日本 🙂"}, "name=Zo%C3%AB%20%E6%97%A5%E6%9C%AC%20%F0%9F%99%82"),
    ({"description": "!*()'~-_. /?#[]@$,;:"}, "description=%21%2A%28%29%27~-_.%20%2F%3F%23[]%40%24%2C%3B%3A"),
    ({"metadata": {}, "preferred_locales": [], "name": None, "email": NULL}, "email="),
]

ENCODE_IN_PAGE = """async (cases) => {
  const { encodeForm, formPairs } = await import(new URL('docs/encode.js', location.href).href);
  const revive = (v) => {
    if (v === null) return undefined;
    if (Array.isArray(v)) return v.map(revive);
    if (typeof v === 'object') {
      if (v.__null__) return null;
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revive(x)]));
    }
    return v;
  };
  const big = encodeForm({ balance: -9007199254740993n, amount: 12n });
  return { bodies: cases.map((c) => encodeForm(revive(c))), pairs: cases.map((c) => formPairs(revive(c))), big };
}"""


async def test_encoder_matches_stripe_node_and_the_service_decoder(session: Session) -> None:
    page = await session.open()
    result = await page.evaluate(ENCODE_IN_PAGE, [case for case, _ in STRIPE_NODE_CASES])
    for (case, expected), body, pairs in zip(STRIPE_NODE_CASES, result["bodies"], result["pairs"], strict=True):
        assert body == expected, case
        # The body decodes to exactly the pairs the page shows, and service/forms.py reads it as meant.
        assert parse_qsl(body, keep_blank_values=True) == [tuple(p) for p in pairs]
        decoded = forms.parse_form(body.encode())
        meant = {
            k: ("" if v == NULL else as_form_strings(v))
            for k, v in case.items()
            if v is not None and v != {} and v != []
        }
        assert decoded == meant, case
    assert result["big"] == "balance=-9007199254740993&amount=12"  # BigInts keep every digit


# ---------------------------------------------------------------------------------------------------
# create a customer: the wire, every snippet, the response, what it wrote, a replay
# ---------------------------------------------------------------------------------------------------

EXPECTED_PAIRS = [
    ("email", "jenny.rosen+explorer@example.com"),
    ("name", "Jenny Rosen"),
    ("address[city]", "Springfield"),
    ("address[country]", "US"),
    ("address[line1]", "1 Main St"),
    ("preferred_locales[0]", "en"),
    ("preferred_locales[1]", "fr-CA"),
    ("metadata[order_id]", "6735"),
    ("metadata[note]", "it's a&b=c"),
    ("expand[0]", "test_clock"),
]


async def fill_customer(page: Page) -> None:
    await page.get_by_label("email", exact=True).fill("jenny.rosen+explorer@example.com")
    await page.get_by_label("name", exact=True).fill("Jenny Rosen")
    await page.get_by_label("address[line1]", exact=True).fill("1 Main St")
    await page.get_by_label("address[city]", exact=True).fill("Springfield")
    await page.get_by_label("address[country]", exact=True).fill("US")
    await page.get_by_label("preferred_locales[0]", exact=True).fill("en")
    await page.get_by_role("button", name="Add preferred_locales item").click()
    await page.get_by_label("preferred_locales[1]", exact=True).fill("fr-CA")
    await page.get_by_label("metadata key 1").fill("order_id")
    await page.get_by_label("metadata[order_id]", exact=True).fill("6735")
    await page.get_by_role("button", name="Add metadata entry").click()
    await page.get_by_label("metadata key 2").fill("note")
    await page.get_by_label("metadata[note]", exact=True).fill("it's a&b=c")
    await page.get_by_label("expand[0]", exact=True).select_option("test_clock")  # the paths it can expand


def json_after(text: str, marker: str) -> Any:
    start = text.index(marker) + len(marker)
    start = text.index("{", start)
    return json.JSONDecoder().raw_decode(text[start:])[0]


async def test_create_customer_wire_snippets_response_and_what_it_wrote(
    session: Session, server: Server, receiver: tuple[str, list[Received]], capsys: pytest.CaptureFixture[str]
) -> None:
    page = await session.open()
    await set_key(page, server.key)
    await page.get_by_label("Reveal key in snippets").check()
    await fill_customer(page)
    idempotency_key = await page.get_by_label("Idempotency-Key", exact=True).input_value()
    assert re.fullmatch(r"explorer_[0-9a-f]{32}", idempotency_key)

    curl = await snippet(page, "curl")
    python = await snippet(page, "Python")
    node = await snippet(page, "Node")
    wire = await snippet(page, "Wire")
    assert "-d 'metadata[order_id]=6735'" in curl and "-d 'expand[0]=test_clock'" in curl
    assert f"-u {server.key}: " in curl and f"Idempotency-Key: {idempotency_key}" in curl
    assert "client.v1.customers.create(" in python and "stripe.customers.create(" in node
    expected_body = "&".join(
        f"{k}={v}"
        for k, v in [
            ("email", "jenny.rosen%2Bexplorer%40example.com"),
            ("name", "Jenny%20Rosen"),
            ("address[city]", "Springfield"),
            ("address[country]", "US"),
            ("address[line1]", "1%20Main%20St"),
            ("preferred_locales[0]", "en"),
            ("preferred_locales[1]", "fr-CA"),
            ("metadata[order_id]", "6735"),
            ("metadata[note]", "it%27s%20a%26b%3Dc"),
            ("expand[0]", "test_clock"),
        ]
    )
    assert wire.splitlines()[-1] == expected_body
    assert wire.splitlines()[0] == "POST /v1/customers HTTP/1.1"

    async with page.expect_request(lambda r: r.url == f"{server.base_url}/v1/customers" and r.method == "POST") as caught:
        await page.get_by_role("button", name="Send request").click()
    sent: Request = await caught.value
    assert sent.post_data == expected_body
    assert parse_qsl(sent.post_data or "", keep_blank_values=True) == EXPECTED_PAIRS
    headers = await sent.all_headers()
    assert headers["authorization"] == f"Bearer {server.key}"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["idempotency-key"] == idempotency_key
    answer = await sent.response()
    assert answer is not None and answer.status == 200
    customer = await answer.json()
    request_id = await answer.header_value("Request-Id")
    assert customer["id"].startswith("cus_") and customer["metadata"] == {"order_id": "6735", "note": "it's a&b=c"}
    assert customer["address"]["city"] == "Springfield" and customer["preferred_locales"] == ["en", "fr-CA"]

    response = page.get_by_role("region", name="Response")
    await expect(response).to_contain_text("200 OK")
    await expect(response).to_contain_text(customer["id"])
    await expect(response).to_contain_text(f"Request-Id{request_id}")
    written = page.get_by_role("region", name="What this call wrote")
    await expect(written).to_contain_text(f"Request {request_id} appended:")
    events = written.get_by_role("list", name="Appended events").get_by_role("listitem")
    await expect(events).to_have_count(1)
    await expect(events.first).to_contain_text("CustomerCreated")
    history = await api_get(server, f"/v1/customers/{customer['id']}/history")
    entry = history["data"][0]
    await expect(events.first).to_contain_text(f"previous {'0' * 64} → hash {entry['hash']}")
    await expect(events.first).to_contain_text(entry["event_id"])
    feed = written.get_by_role("list", name="Feed events")
    await expect(feed).to_contain_text("customer.created")
    await page.get_by_role("tab", name="curl", exact=True).click()
    await session.screenshot("create-customer-1280x800", capsys)

    # The same request from each snippet: curl and stripe-python run for real against a loopback receiver.
    url, seen = receiver
    await run(["bash", "-c", curl.replace(server.base_url, url) + " -sS -o /dev/null"])
    assert seen[-1].method == "POST" and seen[-1].path_qs == "/v1/customers"
    assert seen[-1].body.decode() == expected_body  # byte for byte what the page sent
    assert seen[-1].headers["Idempotency-Key"] == idempotency_key
    await run([sys.executable, "-c", python.replace(server.base_url, url)])
    assert parse_qsl(seen[-1].body.decode(), keep_blank_values=True) == EXPECTED_PAIRS
    assert seen[-1].headers["Authorization"] == f"Bearer {server.key}"
    assert seen[-1].headers["Idempotency-Key"] == idempotency_key
    # stripe-node is not installed here: its snippet's params must be the same tree the wire carries.
    node_params = json_after(node, "stripe.customers.create(")
    assert as_form_strings(node_params) == forms.parse_form(expected_body.encode())
    assert f"{{idempotencyKey: {json.dumps(idempotency_key)}}}" in node
    assert "host: \"127.0.0.1\"" in node and f"port: {urlsplit(server.base_url).port}" in node

    # Replay with the same key: the stored answer, flagged, and nothing new in the log.
    replay = page.get_by_role("button", name="Replay with the same key")
    async with page.expect_request(f"{server.base_url}/v1/customers") as caught_again:
        await replay.click()
    again = await caught_again.value
    assert again.post_data == expected_body
    assert (await again.all_headers())["idempotency-key"] == idempotency_key
    await expect(response).to_contain_text("Idempotent-Replayedtrue")
    await expect(response).to_contain_text(f"Original-Request{request_id}")
    await expect(response).to_contain_text(customer["id"])
    await expect(written).to_contain_text(f"Replayed: this call appended nothing. The original request {request_id} had appended:")
    listed = await api_get(server, "/v1/customers?email=jenny.rosen%2Bexplorer%40example.com")
    assert [c["id"] for c in listed["data"]] == [customer["id"]]
    await written.scroll_into_view_if_needed()
    await session.screenshot("replay-1280x800", capsys)
    # the next send gets a fresh key
    assert await page.get_by_label("Idempotency-Key", exact=True).input_value() != idempotency_key


async def api_get(server: Server, path: str, key: str | None = None) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.base_url + path, headers={"Authorization": f"Bearer {key or server.key}"}) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


# ---------------------------------------------------------------------------------------------------
# balances and the hash chain
# ---------------------------------------------------------------------------------------------------


async def test_balance_writes_show_ending_balance_and_chain_links(
    session: Session, server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    page = await session.open()
    await set_key(page, server.key)
    await page.get_by_label("email", exact=True).fill("ledger@example.com")
    await page.get_by_label("balance", exact=True).fill("-100")
    await page.get_by_label("currency", exact=True).select_option("usd")
    await page.get_by_role("button", name="Send request").click()
    written = page.get_by_role("region", name="What this call wrote")
    events = written.get_by_role("list", name="Appended events").get_by_role("listitem")
    await expect(events).to_have_count(2)
    await expect(events.nth(1)).to_contain_text("BalanceAdjusted")
    await expect(events.nth(1)).to_contain_text("ending_balance -100")
    body = await page.get_by_role("region", name="Response").get_by_label("Response body").inner_text()
    customer_id = json.loads(body)["id"]

    # The customer path parameter is prefilled with the id the page just saw.
    await choose(page, "POST", "/v1/customers/{customer}/balance_transactions")
    await expect(page.get_by_label("customer", exact=True)).to_have_value(customer_id)
    await page.get_by_label("amount", exact=True).fill("250")
    await page.get_by_label("currency", exact=True).select_option("usd")
    await page.get_by_role("button", name="Send request").click()
    await expect(page.get_by_role("region", name="Response")).to_contain_text('"ending_balance": 150')
    await expect(events).to_have_count(1)
    await expect(events.first).to_contain_text("ending_balance 150")
    history = (await api_get(server, f"/v1/customers/{customer_id}/history"))["data"]
    assert [e["version"] for e in history] == [1, 2, 3]
    await expect(events.first).to_contain_text(f"previous {history[1]['hash']} → hash {history[2]['hash']}")
    await expect(written.get_by_role("list", name="Feed events")).to_contain_text(
        "customer_balance_transaction.created"
    )
    await written.scroll_into_view_if_needed()
    await session.screenshot("balance-transaction-1280x800", capsys)


# ---------------------------------------------------------------------------------------------------
# errors land on the input that caused them
# ---------------------------------------------------------------------------------------------------


async def test_a_stripe_error_marks_the_offending_input(session: Session, server: Server) -> None:
    page = await session.open()
    await set_key(page, server.key)
    balance = page.get_by_label("balance", exact=True)
    await balance.fill("abc")
    await expect(page.get_by_text("not an integer: the server will say so")).to_be_visible()
    async with page.expect_response(f"{server.base_url}/v1/customers") as caught:
        await page.get_by_role("button", name="Send request").click()
    error = (await (await caught.value).json())["error"]
    assert error["param"] == "balance" and error["code"] == "parameter_invalid_integer"
    await expect(balance).to_have_attribute("aria-invalid", "true")
    await expect(balance).to_be_focused()
    await expect(balance).to_have_accessible_description(re.compile(re.escape(error["message"])))
    response = page.get_by_role("region", name="Response")
    await expect(response).to_contain_text("400 Bad Request")
    await expect(response).to_contain_text(f"param balance: {error['message']}")
    await expect(page.get_by_role("region", name="What this call wrote")).to_contain_text("Nothing: the request was refused (400)")

    # A nested parameter: shipping without its required name.
    await balance.fill("")
    await page.get_by_label("shipping[address][line1]", exact=True).fill("1 Dock Rd")
    await page.get_by_role("button", name="Send request").click()
    shipping_name = page.get_by_label("shipping[name]", exact=True)
    await expect(shipping_name).to_have_attribute("aria-invalid", "true")
    await expect(shipping_name).to_have_accessible_description(re.compile(r"Missing required param: shipping\[name\]"))
    await expect(balance).not_to_have_attribute("aria-invalid", "true")  # the last error is cleared

    # "Unset" sends `name=`, for a scalar and for a whole object.
    await page.get_by_role("button", name="Unset description", exact=True).click()
    await page.get_by_role("button", name="Unset shipping", exact=True).click()
    await expect(page.get_by_label("description", exact=True)).to_be_disabled()
    assert (await snippet(page, "Wire")).splitlines()[-1] == "description=&shipping="
    await page.get_by_role("button", name="Unset shipping", exact=True).click()
    assert (await snippet(page, "Wire")).splitlines()[-1] == "description=&shipping[address][line1]=1%20Dock%20Rd"


# ---------------------------------------------------------------------------------------------------
# live mode asks first
# ---------------------------------------------------------------------------------------------------


async def test_a_live_mode_write_needs_confirmation(session: Session, server: Server) -> None:
    page = await session.open()
    await set_key(page, server.live_key)
    await page.get_by_label("email", exact=True).fill("live@example.com")
    posts: list[str] = []
    page.on("request", lambda r: r.method == "POST" and posts.append(r.url))
    dialogs: list[str] = []

    async def dismiss(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.once("dialog", dismiss)
    await page.get_by_role("button", name="Send request").click()
    for _ in range(100):
        if dialogs:
            break
        await asyncio.sleep(0.05)
    assert len(dialogs) == 1
    assert "Live mode" in dialogs[0] and server.live_key not in dialogs[0]
    await page.wait_for_timeout(200)
    assert posts == []

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_role("button", name="Send request").click()
    await expect(page.get_by_role("region", name="Response")).to_contain_text('"livemode": true')
    assert posts == [f"{server.base_url}/v1/customers"]


# ---------------------------------------------------------------------------------------------------
# every operation of the current document renders
# ---------------------------------------------------------------------------------------------------


def control_names(fields: dict[str, Any], doc: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """(role, accessible name) of the control each property gets: a group for objects, arrays and maps."""
    found = []
    for name, schema in fields.items():
        path = f"{prefix}[{name}]" if prefix else name
        kinds = resolve_kinds(schema, doc)
        found.append(("group" if kinds & {"object", "array"} else "control", path))
    return found


def resolve_kinds(schema: dict[str, Any], doc: dict[str, Any]) -> set[str]:
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    kinds: set[str] = set()
    for option in schema.get("anyOf", []) or [schema]:
        if option is not schema:
            kinds |= resolve_kinds(option, doc)
        else:
            kind = schema.get("type")
            kinds |= set(kind) if isinstance(kind, list) else {kind} if kind else set()
    return kinds - {"null"}


async def test_every_documented_operation_renders_its_parameters(session: Session, server: Server) -> None:
    doc = document()
    page = await session.open()
    await set_key(page, server.key)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "delete"):
                continue
            await choose(page, method.upper(), path)
            main = page.get_by_role("main")
            await expect(main).to_contain_text(op["summary"].replace("`", ""))
            parameters = [*item.get("parameters", []), *op.get("parameters", [])]
            expected = [("control", p["name"]) for p in parameters if p["in"] in ("path",)]
            expected += control_names({p["name"]: p["schema"] for p in parameters if p["in"] == "query"}, doc)
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]["$ref"]
                schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
                expected += control_names(schema["properties"], doc)
            for role, name in expected:
                if role == "group":
                    await expect(main.get_by_role("group", name=name, exact=True)).to_have_count(1)
                else:
                    await expect(main.get_by_label(name, exact=True)).to_have_count(1)
            has_key = any(p.get("name") == "Idempotency-Key" for p in parameters)
            await expect(main.get_by_label("Idempotency-Key", exact=True)).to_have_count(1 if has_key else 0)
            curl = await snippet(page, "curl")
            first = path.split("{")[0]
            assert curl.startswith("curl") and first in curl, (method, path, curl)


# ---------------------------------------------------------------------------------------------------
# screens: wide and narrow, light and dark
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "viewport", "scheme"),
    [("1280x800-dark", WIDE, "dark"), ("390-light", NARROW, "light"), ("390-dark", NARROW, "dark")],
)
async def test_screens(
    browser: Browser,
    server: Server,
    capsys: pytest.CaptureFixture[str],
    name: str,
    viewport: dict[str, int],
    scheme: str,
) -> None:
    current = await new_session(browser, server, viewport=viewport, color_scheme=scheme)
    try:
        page = await current.open()
        background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (background == "rgb(18, 21, 28)") == (scheme == "dark"), background
        operations = page.locator("details#operations")
        if viewport is NARROW:
            assert await operations.get_attribute("open") is None  # folded on a phone
            await operations.locator("summary").click()
            await choose(page, "POST", "/v1/customers")
            assert await operations.get_attribute("open") is None  # folds again once chosen
        await set_key(page, server.key)
        await page.get_by_label("email", exact=True).fill(f"{name}@example.com")
        await page.get_by_label("metadata key 1").fill("screen")
        await page.get_by_label("metadata[screen]", exact=True).fill(name)
        if viewport is NARROW:
            await page.evaluate("window.scrollTo(0, 0)")
            await current.screenshot(f"explorer-{name}-top", capsys)
        await page.get_by_role("button", name="Send request").click()
        response = page.get_by_role("region", name="Response")
        await expect(response).to_contain_text("200 OK")
        await expect(page.get_by_role("region", name="What this call wrote")).to_contain_text("CustomerCreated")
        overflow = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name}: {overflow}px of horizontal scroll"
        if viewport is NARROW:
            await response.scroll_into_view_if_needed()
        await current.screenshot(f"explorer-{name}", capsys)
    finally:
        await current.context.close()
    assert current.blocked == [] and current.errors == [], (current.blocked, current.errors)
