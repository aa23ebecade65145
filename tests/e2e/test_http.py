"""Raw HTTP against a running `ledgerd serve`: auth, headers, form/JSON decoding edge cases, errors,
tenant and mode isolation, pagination, filters, events, external_id upserts and deleted customers.

The stripe SDK tests (test_sdk.py) cover the happy paths as a client sees them; these tests speak the wire
protocol directly, so they can send what no SDK sends, and they check the event log where it matters.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import re
import secrets
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from ledgerd.service.auth import create_key
from tests.support.server import Server

REQUEST_ID = re.compile(r"^req_[A-Za-z0-9]{8,}$")
NO_KEY = "You did not provide an API key."

# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        body = self.json
        assert "error" in body, body
        error: dict[str, Any] = body["error"]
        return error


class Api:
    """One aiohttp session against the server. Paths and query strings are sent exactly as given."""

    def __init__(self, session: aiohttp.ClientSession, server: Server) -> None:
        self.session = session
        self.server = server

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        query: str = "",
        form: str | bytes | dict[str, Any] | list[tuple[str, str]] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Reply:
        url = URL(self.server.base_url + path + (f"?{query}" if query else ""), encoded=True)
        sent = dict(headers or {})
        if auth and "Authorization" not in sent:
            sent["Authorization"] = f"Bearer {key or self.server.key}"
        data: bytes | None = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        elif form is not None:
            if isinstance(form, dict | list):
                form = urlencode(form)
            data = form.encode() if isinstance(form, str) else form
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        async with self.session.request(method, url, data=data, headers=sent) as response:
            return Reply(response.status, response.headers, await response.read())

    async def get(self, path: str, query: str = "", **kwargs: Any) -> Reply:
        return await self.call("GET", path, query=query, **kwargs)

    async def post(self, path: str, form: Any = "", **kwargs: Any) -> Reply:
        return await self.call("POST", path, form=form, **kwargs)

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = await self.call(method, path, **kwargs)
        assert reply.status == 200, reply.body
        return reply.json


@pytest_asyncio.fixture(loop_scope="session")
async def api(server: Server) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, server)


async def count_events(db_url: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


async def fresh_key(server: Server, livemode: bool = False) -> tuple[str, str]:
    """A key of a brand-new account: (secret, account). Lists in it hold only what the test made."""
    account = f"acct_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(server.db_url)
    try:
        _, secret = await create_key(conn, account, livemode)
    finally:
        await conn.close()
    return secret, account


def marker() -> str:
    return secrets.token_hex(5)


# ---------------------------------------------------------------------------------------------------
# authentication and headers
# ---------------------------------------------------------------------------------------------------


async def test_bearer_and_basic_auth_are_both_accepted(api: Api, server: Server) -> None:
    bearer = await api.get("/v1/customers")
    assert bearer.status == 200
    assert bearer.json["object"] == "list"
    basic = base64.b64encode(f"{server.key}:".encode()).decode()
    created = await api.post("/v1/customers", "name=basic", headers={"Authorization": f"Basic {basic}"})
    assert created.status == 200, created.body
    assert created.json["livemode"] is False
    # The Basic-authenticated create landed in account A's test mode.
    fetched = await api.get(f"/v1/customers/{created.json['id']}")
    assert fetched.status == 200 and fetched.json["name"] == "basic"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer "}, {"Authorization": "Basic " + "Og=="}],
    ids=["absent", "empty", "bearer-empty", "basic-empty-user"],
)
async def test_missing_key_is_a_401_with_stripes_message(api: Api, headers: dict[str, str]) -> None:
    reply = await api.call("GET", "/v1/customers", headers=headers, auth=False)
    assert reply.status == 401
    assert reply.error["type"] == "invalid_request_error"
    assert reply.error["message"].startswith(NO_KEY)
    assert "Authorization: Bearer" in reply.error["message"]
    assert REQUEST_ID.match(reply.headers["Request-Id"])


async def test_wrong_key_is_a_401_with_the_key_masked(api: Api, server: Server) -> None:
    wrong = "sk_test_" + secrets.token_hex(16) + "WXYZ"
    basic = base64.b64encode(f"{wrong}:".encode()).decode()
    for header in (f"Bearer {wrong}", f"Basic {basic}"):
        reply = await api.call("GET", "/v1/customers", headers={"Authorization": header})
        assert reply.status == 401
        assert reply.error["type"] == "invalid_request_error"
        assert reply.error["message"] == "Invalid API Key provided: sk_test_****WXYZ"
        assert wrong not in reply.body.decode()
        assert wrong[8:-4] not in reply.body.decode()
        assert all(wrong[8:-4] not in value for value in reply.headers.values())
        assert REQUEST_ID.match(reply.headers["Request-Id"])
    # A live-looking wrong key is masked the same way, and a write with it appends nothing.
    before = await count_events(server.db_url)
    live_wrong = "sk_live_" + secrets.token_hex(16) + "abcd"
    reply = await api.post("/v1/customers", "name=x", key=live_wrong)
    assert reply.status == 401
    assert reply.error["message"] == "Invalid API Key provided: sk_live_****abcd"
    assert await count_events(server.db_url) == before


async def test_every_response_carries_a_request_id(api: Api) -> None:
    replies = [
        await api.get("/v1/customers"),  # 200
        await api.post("/v1/customers", "name=rid"),  # 200 write
        await api.post("/v1/customers", "bogus=1"),  # 400
        await api.get("/v1/customers/cus_missing0000000"),  # 404 object
        await api.get("/v1/no/such/route"),  # 404 route
        await api.call("PUT", "/v1/customers"),  # unsupported method on a known path: 405
        await api.call("GET", "/v1/customers", auth=False),  # 401
        await api.call("GET", "/v1/customers", key="sk_test_nope"),  # 401
    ]
    assert [r.status for r in replies] == [200, 200, 400, 404, 404, 405, 401, 401]
    ids = [r.headers.get("Request-Id", "") for r in replies]
    assert all(REQUEST_ID.match(request_id) for request_id in ids), ids
    assert len(set(ids)) == len(ids)
    for reply in replies:
        assert reply.headers["Content-Type"].startswith("application/json")
        json.loads(reply.body)


async def test_unknown_route_is_a_json_404(api: Api) -> None:
    for method, path in (("GET", "/v1/nope"), ("POST", "/v1/customers/cus_x/nope"), ("PUT", "/v1/nope")):
        reply = await api.call(method, path)
        assert reply.status == 404
        assert reply.error["type"] == "invalid_request_error"
        assert path in reply.error["message"]


async def test_an_unsupported_method_on_a_known_path_is_a_json_405_with_allow(api: Api, server: Server) -> None:
    before = await count_events(server.db_url)
    for method, path, allowed in (
        ("PUT", "/v1/customers", {"GET", "HEAD", "POST"}),
        ("TRACE", "/v1/customers/cus_x", {"GET", "HEAD", "POST", "DELETE"}),
        ("PATCH", "/v1/customers/cus_x/balance_transactions", {"GET", "HEAD", "POST"}),
        ("DELETE", "/v1/events", {"GET", "HEAD"}),
        ("OPTIONS", "/healthz", {"GET", "HEAD"}),
    ):
        reply = await api.call(method, path)
        assert reply.status == 405, (method, path, reply.status, reply.body)
        assert reply.error["type"] == "invalid_request_error"
        assert method in reply.error["message"] and path in reply.error["message"]
        assert set(reply.headers["Allow"].split(", ")) == allowed, reply.headers["Allow"]
        assert REQUEST_ID.match(reply.headers["Request-Id"])
    assert await count_events(server.db_url) == before


async def test_body_over_one_mebibyte_is_a_413_and_writes_nothing(api: Api, server: Server) -> None:
    before = await count_events(server.db_url)
    reply = await api.post("/v1/customers", "name=" + "a" * (1024 * 1024))
    assert reply.status == 413
    assert reply.error["type"] == "invalid_request_error"
    assert REQUEST_ID.match(reply.headers["Request-Id"])
    reply = await api.call("POST", "/v1/customers", json_body={"description": "b" * (1024 * 1024 + 10)})
    assert reply.status == 413
    assert await count_events(server.db_url) == before
    assert (await api.get("/healthz")).status == 200


async def test_compressed_bodies_are_refused_with_a_415_naming_content_encoding(
    api: Api, server: Server
) -> None:
    """aiohttp would inflate them in the event loop before any handler runs (tests/faults/
    test_hardening.py: the bomb); the SDKs never compress, so every encoding but identity is a 415."""
    before = await count_events(server.db_url)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for encoding, body in (
        ("gzip", gzip.compress(b"name=gzipped")),
        ("deflate", zlib.compress(b"name=deflated")),
        ("br", b"\x0b\x02\x80name=x\x03"),
        ("GZIP, identity", gzip.compress(b"name=x")),
        ("gzip", b"\x1f\x8bnot really gzip"),
    ):
        reply = await api.post("/v1/customers", body, headers={**form, "Content-Encoding": encoding})
        assert reply.status == 415, (encoding, reply.status, reply.body)
        assert reply.error["type"] == "invalid_request_error"
        assert reply.error["param"] == "Content-Encoding" and "Content-Encoding" in reply.error["message"]
        assert reply.headers.get("Connection", "").lower() == "close"  # the body is neither read nor drained
        assert REQUEST_ID.match(reply.headers["Request-Id"])
    assert await count_events(server.db_url) == before
    plain = await api.post("/v1/customers", b"name=plain", headers={**form, "Content-Encoding": "identity"})
    assert plain.status == 200 and plain.json["name"] == "plain"


# ---------------------------------------------------------------------------------------------------
# form and JSON decoding
# ---------------------------------------------------------------------------------------------------


async def test_form_encoding_edge_cases_decode_as_the_sdks_mean_them(api: Api) -> None:
    body = (
        "metadata%5Bplan%5D=pro&metadata[seats]=5"  # brackets percent-encoded and literal
        "&address%5Bline1%5D=1+Main%20St"  # '+' and %20 are both spaces
        "&preferred_locales[]=en&preferred_locales[]=fr"  # k[]= arrays
        "&name=Jenny+Rosen&phone=%2B15555550100"  # a literal '+' arrives as %2B
        "&balance=-100&currency=usd&next_invoice_sequence=7"  # integers as strings
        "&email=j%40example.com&description=a%26b%3Dc"  # encoded '&' and '=' stay in the value
        "&invoice_settings[custom_fields][0][name]=PO&invoice_settings[custom_fields][0][value]=42"
    )
    customer = await api.ok("POST", "/v1/customers", form=body)
    assert customer["metadata"] == {"plan": "pro", "seats": "5"}
    assert customer["address"]["line1"] == "1 Main St"
    assert customer["preferred_locales"] == ["en", "fr"]
    assert (customer["name"], customer["phone"]) == ("Jenny Rosen", "+15555550100")
    assert (customer["balance"], customer["currency"], customer["next_invoice_sequence"]) == (-100, "usd", 7)
    assert (customer["email"], customer["description"]) == ("j@example.com", "a&b=c")
    assert customer["invoice_settings"]["custom_fields"] == [{"name": "PO", "value": "42"}]
    # Indexed arrays in any order of appearance.
    indexed = await api.ok("POST", "/v1/customers", form="preferred_locales[1]=de&preferred_locales[0]=it")
    assert indexed["preferred_locales"] == ["it", "de"]


async def test_empty_values_unset(api: Api) -> None:
    customer = await api.ok(
        "POST",
        "/v1/customers",
        form="email=a%40b.c&name=N&description=D&phone=1&metadata[a]=1&metadata[b]=2&metadata[c]=3"
        "&address[line1]=x&preferred_locales[0]=en",
    )
    path = f"/v1/customers/{customer['id']}"
    one = await api.ok("POST", path, form="metadata[a]=")
    assert one["metadata"] == {"b": "2", "c": "3"}
    nulls = await api.ok("POST", path, form="email=&description=&address=&phone=&preferred_locales=")
    assert (nulls["email"], nulls["description"], nulls["address"], nulls["phone"]) == (
        None,
        None,
        None,
        None,
    )
    assert nulls["preferred_locales"] == []
    assert nulls["name"] == "N"
    assert nulls["metadata"] == {"b": "2", "c": "3"}
    cleared = await api.ok("POST", path, form="metadata=")
    assert cleared["metadata"] == {}
    assert (await api.ok("GET", path))["metadata"] == {}
    # Unsetting a key that is not there is harmless; on create an empty value is "not given".
    assert (await api.ok("POST", path, form="metadata[zzz]="))["metadata"] == {}
    fresh = await api.ok("POST", "/v1/customers", form="email=&metadata[k]=&balance=&currency=")
    assert (fresh["email"], fresh["metadata"], fresh["balance"], fresh["currency"]) == (None, {}, 0, None)


async def test_json_bodies_work_like_forms(api: Api) -> None:
    customer = await api.ok(
        "POST",
        "/v1/customers",
        json_body={
            "email": "json@example.com",
            "metadata": {"a": "1", "b": "2"},
            "address": {"line1": "1 JSON Way", "postal_code": "12345"},
            "preferred_locales": ["en"],
            "balance": 250,
            "currency": "eur",
        },
    )
    assert customer["metadata"] == {"a": "1", "b": "2"}
    assert customer["address"]["line1"] == "1 JSON Way" and customer["address"]["postal_code"] == "12345"
    assert (customer["balance"], customer["currency"]) == (250, "eur")
    path = f"/v1/customers/{customer['id']}"
    updated = await api.ok("POST", path, json_body={"metadata": {"a": None, "c": "3"}, "email": None})
    assert updated["metadata"] == {"b": "2", "c": "3"}
    assert updated["email"] is None
    # A charset parameter on the media type still means JSON.
    txn = await api.ok(
        "POST",
        f"{path}/balance_transactions",
        json_body={"amount": "-50", "currency": "eur"},
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert (txn["amount"], txn["ending_balance"]) == (-50, 200)


BAD_CREATES: list[tuple[str, str | dict[str, Any], str | None, str | None]] = [
    # (id, body: form string or JSON dict, expected code, expected param)
    ("balance-abc", "balance=abc&currency=usd", "parameter_invalid_integer", "balance"),
    ("balance-float", "balance=1.5&currency=usd", "parameter_invalid_integer", "balance"),
    ("balance-exp", "balance=1e3&currency=usd", "parameter_invalid_integer", "balance"),
    ("balance-huge", "balance=99999999999999999999999&currency=usd", "parameter_invalid_integer", "balance"),
    ("balance-json-float", {"balance": 1.5, "currency": "usd"}, "parameter_invalid_integer", "balance"),
    ("balance-json-bool", {"balance": True, "currency": "usd"}, "parameter_invalid_integer", "balance"),
    ("unknown", "favourite_colour=blue", "parameter_unknown", "favourite_colour"),
    ("unknown-nested", "address[planet]=mars", "parameter_unknown", "address[planet]"),
    # (Stripe's test tokens pm_card_visa / tok_visa are accepted and ignored: tests/e2e/test_fidelity.py)
    ("source", "source=tok_1NxYzReal", "parameter_unsupported", "source"),
    ("payment_method", "payment_method=pm_1NxYzReal", "parameter_unsupported", "payment_method"),
    ("coupon", "coupon=SAVE10", "parameter_unsupported", "coupon"),
    ("promotion_code", "promotion_code=promo_1", "parameter_unsupported", "promotion_code"),
    ("test_clock", "test_clock=clock_1", "parameter_unsupported", "test_clock"),
    ("default_source", "default_source=card_1", "parameter_unsupported", "default_source"),
    (
        "default_payment_method",
        "invoice_settings[default_payment_method]=pm_1",
        "parameter_unsupported",
        "invoice_settings[default_payment_method]",
    ),
    ("currency", "currency=xyz", "invalid_currency", "currency"),
    ("currency-long", "currency=usdollars", "invalid_currency", "currency"),
    ("invalid-utf8", b"name=%FF%FE", None, "name"),
    ("invalid-utf8-raw", b"name=\xc3\x28", None, "name"),
    ("nul", "name=a%00b", None, "name"),
    ("deep", "metadata[a][b][c][d][e][f][g]=1", None, None),
    ("unbalanced", "metadata[a=1", None, None),
    ("too-many", "&".join(f"metadata[k{i}]=v" for i in range(10_000)), None, None),
    ("array-gap", "preferred_locales[0]=en&preferred_locales[2]=fr", None, None),
    ("twice", "name=a&name=b", None, "name"),
    ("metadata-json-int", {"metadata": {"a": 1}}, None, "metadata[a]"),
    ("name-json-object", {"name": {"first": "x"}}, None, "name"),
]


@pytest.mark.parametrize(("case", "body", "code", "param"), BAD_CREATES, ids=[c[0] for c in BAD_CREATES])
async def test_bad_params_are_a_clean_400_and_write_nothing(
    api: Api, server: Server, case: str, body: Any, code: str | None, param: str | None
) -> None:
    before = await count_events(server.db_url)
    if isinstance(body, dict):
        reply = await api.call("POST", "/v1/customers", json_body=body)
    else:
        reply = await api.post("/v1/customers", body)
    assert reply.status == 400, reply.body
    error = reply.error
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
        assert error["doc_url"] == f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param is not None:
        assert error["param"] == param
        if code in ("parameter_unsupported", "parameter_unknown"):
            assert param in error["message"]
    assert await count_events(server.db_url) == before


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": ',
        b"{'name': 'x'}",
        b"[1, 2]",
        b'"just a string"',
        b'{"name": "\xff"}',
        b'{"name": "a\\u0000b"}',
        b'{"metadata":' + b'{"a":' * 50 + b'"x"' + b"}" * 51,
        b'{"metadata":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"metadata": {' + b",".join(b'"k%d": "v"' % i for i in range(10_000)) + b"}}",
    ],
    ids=["truncated", "single-quotes", "array", "string", "utf8", "nul", "deep", "very-deep", "too-many"],
)
async def test_malformed_json_is_a_clean_400(api: Api, server: Server, body: bytes) -> None:
    before = await count_events(server.db_url)
    reply = await api.call("POST", "/v1/customers", form=body, headers={"Content-Type": "application/json"})
    assert reply.status == 400, reply.body
    assert reply.error["type"] == "invalid_request_error"
    assert await count_events(server.db_url) == before


@pytest.mark.parametrize("limit", ["0", "-1", "101", "abc", "1.5", "99999999999999999999999"])
async def test_bad_limits_are_a_400_naming_limit(api: Api, limit: str) -> None:
    customer = await api.ok("POST", "/v1/customers", form="name=limits")
    for path in ("/v1/customers", "/v1/events", f"/v1/customers/{customer['id']}/balance_transactions"):
        reply = await api.get(path, f"limit={limit}")
        assert reply.status == 400, (path, reply.body)
        assert reply.error["param"] == "limit"
    search = await api.get("/v1/customers/search", f"query=name%3A%27x%27&limit={limit}")
    assert search.status == 400 and search.error["param"] == "limit"
    # The bounds themselves are fine.
    assert (await api.get("/v1/customers", "limit=1")).status == 200
    assert (await api.get("/v1/customers", "limit=100")).status == 200


async def test_balance_transaction_params_are_checked(api: Api, server: Server) -> None:
    customer = await api.ok("POST", "/v1/customers", form="name=txn-params")
    path = f"/v1/customers/{customer['id']}/balance_transactions"
    before = await count_events(server.db_url)
    cases = [
        ("amount=1.5&currency=usd", "amount"),
        ("amount=abc&currency=usd", "amount"),
        ("amount=99999999999999999999999&currency=usd", "amount"),
        ("currency=usd", "amount"),
        ("amount=100", "currency"),
        ("amount=100&currency=zzz", "currency"),
        ("amount=100&currency=usd&type=adjustment", "type"),
        ("amount=100&currency=usd&metadata=x", "metadata"),
    ]
    for body, param in cases:
        reply = await api.post(path, body)
        assert reply.status == 400, (body, reply.body)
        assert reply.error["param"] == param, (body, reply.error)
    assert await count_events(server.db_url) == before
    assert (await api.ok("GET", f"/v1/customers/{customer['id']}"))["balance"] == 0


TRICKY_TEXT = [
    "'; DROP TABLE customers; --",
    'Robert"); DELETE FROM events; --',
    "back\\slash and 'quotes' and \"double\"",
    "percent % and under_score",
    "ctl \x01\x02\x1f\x7f tab\tcr\rnl\n",
    "\u202eright-to-left \U0001f600 \u00e9\u0301 \ufeffbom",
    "$1 $$ ${x} {{x}} %s %(x)s",
]


async def test_tricky_text_is_stored_verbatim(api: Api) -> None:
    for text in TRICKY_TEXT:
        form = urlencode({"name": text, "description": text, "metadata[k]": text, f"metadata[{text}]": "v"})
        created = await api.ok("POST", "/v1/customers", form=form)
        fetched = await api.ok("GET", f"/v1/customers/{created['id']}")
        for body in (created, fetched):
            assert body["name"] == text and body["description"] == text
            assert body["metadata"] == {"k": text, text: "v"}
        txn = await api.ok(
            "POST",
            f"/v1/customers/{created['id']}/balance_transactions",
            form=urlencode({"amount": "1", "currency": "usd", "description": text}),
        )
        assert txn["description"] == text
    # NUL cannot be stored by PostgreSQL: a clean 400 wherever it appears.
    for form in ("name=a%00", "metadata[k]=%00", "metadata[%00]=v", "email=%00%00"):
        reply = await api.post("/v1/customers", form)
        assert reply.status == 400, (form, reply.body)
        assert reply.error["type"] == "invalid_request_error"


async def test_tricky_search_and_filter_input_never_500(api: Api) -> None:
    tag = marker()
    underscore = await api.ok("POST", "/v1/customers", form=f"name=a_c{tag}&email=x_{tag}%40example.com")
    await api.ok("POST", "/v1/customers", form=f"name=abc{tag}&email=xy{tag}%40example.com")
    percent = await api.ok("POST", "/v1/customers", form=f"name=p%25q{tag}")
    await api.ok("POST", "/v1/customers", form=f"name=pzzq{tag}")
    # LIKE wildcards in a substring search are literal characters.
    found = await api.get("/v1/customers/search", "query=" + quote(f"name~'a_c{tag}'"))
    assert [c["id"] for c in found.json["data"]] == [underscore["id"]]
    found = await api.get("/v1/customers/search", "query=" + quote(f"name~'p%q{tag}'"))
    assert [c["id"] for c in found.json["data"]] == [percent["id"]]
    # And in the email list filter.
    listed = await api.get("/v1/customers", "email=" + quote(f"x_{tag}@example.com"))
    assert [c["id"] for c in listed.json["data"]] == [underscore["id"]]
    listed = await api.get("/v1/customers", "email=" + quote(f"x%{tag}@example.com"))
    assert listed.json["data"] == []
    queries = [
        "name:'x' OR 1=1 --",
        "name:'x'' OR ''1''=''1'",
        "name:'x\\' OR 1=1 --'",
        "metadata['a'' OR 1=1 --']:'x'",
        "metadata['k']:'); DROP TABLE customers; --'",
        "email~'%%%'",
        "name:'\x01\x02'",
        "name:'a\x00'",
        "created>'abc'",
        "created>99999999999999999999999",
        "name:" + "'x' OR " * 200 + "'y'",
        "(" * 500 + "name:'x'" + ")" * 500,
        "",
        "   ",
    ]
    for text in queries:
        reply = await api.get("/v1/customers/search", "query=" + quote(text, safe=""))
        assert reply.status in (200, 400), (text, reply.status, reply.body)
        if reply.status == 200:
            assert reply.json["data"] == [], text
        else:
            assert reply.error["type"] == "invalid_request_error"
            assert reply.error["param"] == "query"
    for query in (
        "email=%27%20OR%201%3D1%20--",
        "email=%00",
        "starting_after=%27%20OR%201%3D1",
        "ending_before=%00",
        "created[gt]=1%20OR%201=1",
    ):
        reply = await api.get("/v1/customers", query)
        assert reply.status in (200, 400), (query, reply.body)
        if reply.status == 200:
            assert reply.json["data"] == [], query
    for query in ("type=%27%20OR%201%3D1", "type=%00", "types[]=%27x", "type=%25"):
        reply = await api.get("/v1/events", query)
        assert reply.status in (200, 400), (query, reply.body)
        if reply.status == 200:
            assert reply.json["data"] == [], query


async def test_nul_and_junk_in_path_ids_are_404s(api: Api, server: Server) -> None:
    customer = await api.ok("POST", "/v1/customers", form="name=paths")
    cid = customer["id"]
    before = await count_events(server.db_url)
    calls = [
        ("GET", "/v1/customers/cus_%00"),
        ("POST", "/v1/customers/cus_%00"),
        ("DELETE", "/v1/customers/cus_%00"),
        ("GET", "/v1/customers/cus_%00/balance_transactions"),
        ("POST", "/v1/customers/cus_%00/balance_transactions"),
        ("GET", f"/v1/customers/{cid}/balance_transactions/cbtxn_%00"),
        ("POST", f"/v1/customers/{cid}/balance_transactions/cbtxn_%00"),
        ("GET", "/v1/events/evt_%00"),
        ("GET", "/v1/customers/%FF%FE"),
        ("GET", "/v1/customers/" + "x" * 5000),
        ("GET", "/v1/customers/%27%20OR%201%3D1%20--"),
        ("GET", "/v1/events/%27%20OR%20%271%27%3D%271"),
    ]
    for method, path in calls:
        form = None
        if method == "POST":
            form = "amount=1&currency=usd" if path.endswith("balance_transactions") else "description=x"
        reply = await api.call(method, path, form=form)
        assert reply.status == 404, (method, path, reply.status, reply.body)
        assert reply.error["code"] == "resource_missing"
    assert await count_events(server.db_url) == before


async def test_retrieve_and_delete_take_only_expand(api: Api, server: Server) -> None:
    customer = await api.ok("POST", "/v1/customers", form="name=retrieve")
    cid = customer["id"]
    txn = await api.ok("POST", f"/v1/customers/{cid}/balance_transactions", form="amount=3&currency=usd")
    event = (await api.ok("GET", "/v1/events", query="limit=1"))["data"][0]
    paths = [  # each with what it can expand (events: nothing); any other path is a 400 naming expand
        (f"/v1/customers/{cid}", "tax", "invoice_credit_balance"),
        (f"/v1/customers/{cid}/balance_transactions/{txn['id']}", "customer", "customer.tax"),
        (f"/v1/events/{event['id']}", None, None),
    ]
    for path, first, second in paths:
        if first is not None:
            assert (await api.get(path, f"expand%5B0%5D={first}&expand%5B1%5D={second}")).status == 200
            assert (await api.get(path, f"expand[]={first}")).status == 200
        not_expandable = await api.get(path, "expand[]=x")
        assert not_expandable.status == 400 and not_expandable.error["param"] == "expand"
        assert not_expandable.error["message"] == "This property cannot be expanded (x)."
        unknown = await api.get(path, "foo=1")
        assert unknown.status == 400, (path, unknown.body)
        assert (unknown.error["code"], unknown.error["param"]) == ("parameter_unknown", "foo")
        bad_expand = await api.get(path, "expand=customer")
        assert bad_expand.status == 400 and bad_expand.error["param"] == "expand"
    before = await count_events(server.db_url)
    refused = await api.call("DELETE", f"/v1/customers/{cid}", query="foo=1")
    assert refused.status == 400 and refused.error["param"] == "foo"
    assert await count_events(server.db_url) == before
    assert (await api.ok("GET", f"/v1/customers/{cid}"))["name"] == "retrieve"


# ---------------------------------------------------------------------------------------------------
# isolation
# ---------------------------------------------------------------------------------------------------


async def test_other_accounts_and_modes_see_nothing(api: Api, server: Server) -> None:
    customer = await api.ok("POST", "/v1/customers", form="email=mine%40example.com")
    cid = customer["id"]
    txn = await api.ok("POST", f"/v1/customers/{cid}/balance_transactions", form="amount=10&currency=usd")
    events = (await api.ok("GET", "/v1/events", query="limit=5"))["data"]
    event_id = next(e["id"] for e in events if e["data"]["object"]["id"] == txn["id"])
    before = await count_events(server.db_url)
    for key in (server.other_key, server.live_key):
        calls: list[tuple[str, str, str | None]] = [
            ("GET", f"/v1/customers/{cid}", None),
            ("POST", f"/v1/customers/{cid}", "name=stolen"),
            ("DELETE", f"/v1/customers/{cid}", None),
            ("GET", f"/v1/customers/{cid}/balance_transactions", None),
            ("POST", f"/v1/customers/{cid}/balance_transactions", "amount=5&currency=usd"),
            ("GET", f"/v1/customers/{cid}/balance_transactions/{txn['id']}", None),
            ("POST", f"/v1/customers/{cid}/balance_transactions/{txn['id']}", "description=x"),
            ("GET", f"/v1/events/{event_id}", None),
        ]
        for method, path, form in calls:
            reply = await api.call(method, path, key=key, form=form)
            assert reply.status == 404, (method, path, reply.body)
            assert reply.error["code"] == "resource_missing"
            assert reply.error["type"] == "invalid_request_error"
        listed = await api.ok("GET", "/v1/customers", key=key, query="limit=100")
        assert cid not in {c["id"] for c in listed["data"]}
        assert (await api.ok("GET", "/v1/customers", key=key, query="email=mine%40example.com"))["data"] == []
        found = await api.ok(
            "GET", "/v1/customers/search", key=key, query="query=email%3A%27mine%40example.com%27"
        )
        assert found["data"] == []
        their_events = await api.ok("GET", "/v1/events", key=key, query="limit=100")
        assert event_id not in {e["id"] for e in their_events["data"]}
        # Cursors of another account's objects do not leak either.
        cursor = await api.get("/v1/customers", f"starting_after={cid}", key=key)
        assert cursor.status in (400, 404)
    assert await count_events(server.db_url) == before
    mine = await api.ok("GET", f"/v1/customers/{cid}")
    assert (mine["name"], mine["balance"]) == (None, 10)


async def test_livemode_follows_the_key(api: Api, server: Server) -> None:
    live = await api.ok("POST", "/v1/customers", key=server.live_key, form="name=live")
    assert live["livemode"] is True
    txn = await api.ok(
        "POST",
        f"/v1/customers/{live['id']}/balance_transactions",
        key=server.live_key,
        form="amount=1&currency=usd",
    )
    assert txn["livemode"] is True
    events = await api.ok("GET", "/v1/events", key=server.live_key, query="limit=100")
    assert events["data"] and all(e["livemode"] is True for e in events["data"])
    test = await api.ok("POST", "/v1/customers", form="name=test")
    assert test["livemode"] is False
    test_events = await api.ok("GET", "/v1/events", query="limit=100")
    assert all(e["livemode"] is False for e in test_events["data"])


# ---------------------------------------------------------------------------------------------------
# lists
# ---------------------------------------------------------------------------------------------------


async def list_ids(api: Api, path: str, query: str, key: str) -> tuple[list[str], bool, dict[str, Any]]:
    body = await api.ok("GET", path, query=query, key=key)
    assert body["object"] == "list"
    return [item["id"] for item in body["data"]], body["has_more"], body


async def test_customer_pagination_both_directions(api: Api, server: Server) -> None:
    key, _ = await fresh_key(server)
    ids = [(await api.ok("POST", "/v1/customers", key=key, form=f"name=p{i}"))["id"] for i in range(25)]
    newest = list(reversed(ids))  # the list order

    page, more, body = await list_ids(api, "/v1/customers", "", key)
    assert (page, more, body["url"]) == (newest[:10], True, "/v1/customers")
    page, more, body = await list_ids(api, "/v1/customers", "limit=10", key)
    assert (page, more) == (newest[:10], True)
    page, more, body = await list_ids(api, "/v1/customers", f"limit=10&starting_after={page[-1]}", key)
    assert (page, more, body["url"]) == (newest[10:20], True, "/v1/customers")
    page, more, _ = await list_ids(api, "/v1/customers", f"limit=10&starting_after={page[-1]}", key)
    assert (page, more) == (newest[20:], False)
    page, more, _ = await list_ids(api, "/v1/customers", f"starting_after={newest[-1]}", key)
    assert (page, more) == ([], False)

    # Backwards from the oldest: each page is still newest first, has_more says whether newer ones remain.
    page, more, body = await list_ids(api, "/v1/customers", f"limit=10&ending_before={newest[-1]}", key)
    assert (page, more, body["url"]) == (newest[14:24], True, "/v1/customers")
    page, more, _ = await list_ids(api, "/v1/customers", f"limit=10&ending_before={page[0]}", key)
    assert (page, more) == (newest[4:14], True)
    page, more, _ = await list_ids(api, "/v1/customers", f"limit=10&ending_before={page[0]}", key)
    assert (page, more) == (newest[:4], False)
    page, more, _ = await list_ids(api, "/v1/customers", f"ending_before={newest[0]}", key)
    assert (page, more) == ([], False)
    # Exactly at a boundary: 25 = 10 + 10 + 5; the last forward page of exactly `limit` has no more.
    page, more, _ = await list_ids(api, "/v1/customers", f"limit=5&starting_after={newest[19]}", key)
    assert (page, more) == (newest[20:], False)
    page, more, _ = await list_ids(api, "/v1/customers", f"limit=5&ending_before={newest[5]}", key)
    assert (page, more) == (newest[:5], False)
    # Percent-encoded brackets and a second page in the query string, as requests sends them.
    page, more, _ = await list_ids(api, "/v1/customers", "limit=25&expand%5B0%5D=data.tax", key)
    assert (page, more) == (newest, False)

    both = await api.get("/v1/customers", f"starting_after={ids[0]}&ending_before={ids[1]}", key=key)
    assert both.status == 400 and both.error["code"] == "parameters_exclusive"
    unknown = await api.get("/v1/customers", "starting_after=cus_nope000000000", key=key)
    assert unknown.status in (400, 404) and unknown.error["param"] == "starting_after"
    # A deleted customer disappears from the list, and the remaining pages still add up.
    await api.ok("DELETE", f"/v1/customers/{newest[3]}", key=key)
    page, more, _ = await list_ids(api, "/v1/customers", "limit=100", key)
    assert (page, more) == (newest[:3] + newest[4:], False)


async def test_customer_created_and_email_filters(api: Api, server: Server) -> None:
    key, _ = await fresh_key(server)
    first = await api.ok("POST", "/v1/customers", key=key, form="email=Jenny.Tag%2Bbilling%40Example.COM")
    second_start = first["created"] + 1
    await asyncio.sleep(max(0.0, second_start - time.time()) + 0.01)  # the next second
    second = await api.ok("POST", "/v1/customers", key=key, form="email=other%40example.com")
    assert second["created"] > first["created"]
    a, b = first["id"], second["id"]
    cases = {
        f"created%5Bgte%5D={second['created']}": [b],
        f"created[lt]={second['created']}": [a],
        f"created[gt]={first['created']}": [b],
        f"created[lte]={first['created']}": [a],
        f"created[gte]={first['created']}&created[lte]={second['created']}": [b, a],
        f"created={first['created']}": [a],
        f"created[gt]={second['created']}": [],
        "created[lt]=0": [],
        # Filters on things this ledger never links a customer to match nothing, rather than being ignored.
        "test_clock=clock_123": [],
    }
    for query, expected in cases.items():
        page, more, _ = await list_ids(api, "/v1/customers", query, key)
        assert (page, more) == (expected, False), query
    for query, param in (("created[gte]=abc", "created[gte]"), ("created[between]=1", "created[between]")):
        reply = await api.get("/v1/customers", query, key=key)
        assert reply.status == 400 and reply.error["param"] == param
    # The email filter ignores case; a '+' in an email must be sent as %2B (a bare '+' is a space).
    for email in ("jenny.tag%2Bbilling%40example.com", "JENNY.TAG%2BBILLING%40EXAMPLE.COM"):
        page, _, _ = await list_ids(api, "/v1/customers", f"email={email}", key)
        assert page == [a], email
    page, _, _ = await list_ids(api, "/v1/customers", "email=jenny.tag+billing%40example.com", key)
    assert page == []
    page, _, _ = await list_ids(api, "/v1/customers", "email=jenny.tag", key)
    assert page == []


async def test_balance_transaction_pagination(api: Api) -> None:
    customer = await api.ok("POST", "/v1/customers", form="name=txn-pages")
    path = f"/v1/customers/{customer['id']}/balance_transactions"
    txns = [(await api.ok("POST", path, form=f"amount={i + 1}&currency=usd")) for i in range(12)]
    newest = [t["id"] for t in reversed(txns)]
    assert [t["ending_balance"] for t in txns] == [sum(range(1, i + 2)) for i in range(12)]

    page, more, body = await list_ids(api, path, "limit=5", api.server.key)
    assert (page, more, body["url"]) == (newest[:5], True, path)
    page, more, _ = await list_ids(api, path, f"limit=5&starting_after={page[-1]}", api.server.key)
    assert (page, more) == (newest[5:10], True)
    page, more, _ = await list_ids(api, path, f"limit=5&starting_after={page[-1]}", api.server.key)
    assert (page, more) == (newest[10:], False)
    page, more, _ = await list_ids(api, path, f"limit=5&ending_before={newest[-1]}", api.server.key)
    assert (page, more) == (newest[6:11], True)
    page, more, _ = await list_ids(api, path, f"limit=5&ending_before={page[0]}", api.server.key)
    assert (page, more) == (newest[1:6], True)
    page, more, _ = await list_ids(api, path, f"limit=5&ending_before={page[0]}", api.server.key)
    assert (page, more) == (newest[:1], False)
    page, more, _ = await list_ids(api, path, "limit=100", api.server.key)
    assert (page, more) == (newest, False)
    page, more, _ = await list_ids(api, path, "invoice=in_123", api.server.key)
    assert (page, more) == ([], False)  # no transaction is linked to an invoice
    # Another customer's transaction is not a valid cursor here.
    other = await api.ok("POST", "/v1/customers", form="name=other-txns")
    other_txn = await api.ok(
        "POST", f"/v1/customers/{other['id']}/balance_transactions", form="amount=1&currency=usd"
    )
    reply = await api.get(path, f"starting_after={other_txn['id']}")
    if reply.status == 200:
        assert reply.json["data"] == []
    else:
        assert reply.status in (400, 404) and reply.error["param"] == "starting_after"
    # And it cannot be fetched through this customer.
    crossed = await api.get(f"{path}/{other_txn['id']}")
    assert crossed.status == 404


# ---------------------------------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------------------------------


async def test_event_filters(api: Api, server: Server) -> None:
    key, account = await fresh_key(server)
    idempotency_key = f"ev-{marker()}"
    created = await api.post(
        "/v1/customers", "name=ev", key=key, headers={"Idempotency-Key": idempotency_key}
    )
    customer = created.json
    cid = customer["id"]
    await api.ok("POST", f"/v1/customers/{cid}", key=key, form="name=ev2")
    txn = await api.ok(
        "POST", f"/v1/customers/{cid}/balance_transactions", key=key, form="amount=7&currency=usd"
    )
    await api.ok("DELETE", f"/v1/customers/{cid}", key=key)

    async def types(query: str) -> list[str]:
        body = await api.ok("GET", "/v1/events", key=key, query=query)
        assert body["url"] == "/v1/events"
        for event in body["data"]:
            assert event["object"] == "event" and event["id"].startswith("evt_")
            assert event["account"] == account and event["livemode"] is False
        return [e["type"] for e in body["data"]]

    everything = await types("")
    assert everything == [
        "customer.deleted",
        "customer_balance_transaction.created",
        "customer.updated",
        "customer.updated",
        "customer.created",
    ]
    assert await types("type=customer.*") == [t for t in everything if t.startswith("customer.")]
    assert await types("type=customer_balance_transaction.*") == ["customer_balance_transaction.created"]
    assert await types("type=customer.updated") == ["customer.updated", "customer.updated"]
    assert await types("type=*") == everything
    assert await types("type=invoice.*") == []
    assert await types("delivery_success=true") == everything  # no webhooks: nothing pending or failed
    assert await types("delivery_success=false") == []
    assert await types("types[]=customer.created&types[]=customer.deleted") == [
        "customer.deleted",
        "customer.created",
    ]
    assert await types("types%5B0%5D=customer_balance_transaction.created") == [
        "customer_balance_transaction.created"
    ]
    first = (await api.ok("GET", "/v1/events", key=key, query="limit=100"))["data"]
    # Each event names the request that caused it; the create's also names its idempotency key.
    assert first[-1]["request"] == {"id": created.headers["Request-Id"], "idempotency_key": idempotency_key}
    assert first[-1]["data"]["object"] == customer
    assert all(e["request"]["id"].startswith("req_") for e in first)
    assert all(e["request"]["idempotency_key"] is None for e in first[:-1])
    oldest, newest = first[-1]["created"], first[0]["created"]
    assert await types(f"created[gte]={oldest}&created[lte]={newest}") == everything
    assert await types(f"created[gt]={newest}") == []
    assert await types(f"created[lt]={oldest}") == []
    # Paging over events keeps their order, including events of one command.
    page = await api.ok("GET", "/v1/events", key=key, query="limit=2")
    assert page["has_more"] is True
    rest = await api.ok(
        "GET", "/v1/events", key=key, query=f"limit=10&starting_after={page['data'][-1]['id']}"
    )
    assert [e["id"] for e in page["data"] + rest["data"]] == [e["id"] for e in first]
    assert rest["has_more"] is False
    back = await api.ok("GET", "/v1/events", key=key, query=f"limit=10&ending_before={rest['data'][0]['id']}")
    assert [e["id"] for e in back["data"]] == [e["id"] for e in page["data"]]
    # Retrieve works for the owner and is a 404 for everyone else.
    txn_event = next(e for e in first if e["type"] == "customer_balance_transaction.created")
    assert txn_event["data"]["object"]["id"] == txn["id"]
    own = await api.ok("GET", f"/v1/events/{txn_event['id']}", key=key)
    assert own == txn_event
    for other in (server.key, server.other_key, server.live_key):
        reply = await api.get(f"/v1/events/{txn_event['id']}", key=other)
        assert reply.status == 404 and reply.error["code"] == "resource_missing"
    exclusive = await api.get("/v1/events", "type=customer.created&types[]=customer.deleted", key=key)
    assert exclusive.status == 400


# ---------------------------------------------------------------------------------------------------
# external_id upserts
# ---------------------------------------------------------------------------------------------------


async def customers_with_external_id(db_url: str, account: str, external_id: str) -> tuple[int, int]:
    conn = await asyncpg.connect(db_url)
    try:
        customers = await conn.fetchval(
            "SELECT count(*) FROM customers WHERE account = $1 AND external_id = $2", account, external_id
        )
        streams = await conn.fetchval("SELECT count(*) FROM streams WHERE account = $1", account)
    finally:
        await conn.close()
    return int(customers), int(streams)


async def test_external_id_upserts_instead_of_duplicating(api: Api, server: Server) -> None:
    key, account = await fresh_key(server)
    created = await api.ok("POST", "/v1/customers", key=key, form="external_id=crm-1&name=A&metadata[x]=1")
    before = await count_events(server.db_url)
    again = await api.ok(
        "POST",
        "/v1/customers",
        key=key,
        form="external_id=crm-1&name=B&metadata[y]=2",
        headers={"Idempotency-Key": marker()},
    )
    assert again["id"] == created["id"]
    assert (again["name"], again["metadata"], again["external_id"]) == ("B", {"x": "1", "y": "2"}, "crm-1")
    assert await count_events(server.db_url) == before + 1  # one customer.updated-producing event
    assert await customers_with_external_id(server.db_url, account, "crm-1") == (1, 1)
    listed = (await api.ok("GET", "/v1/customers", key=key))["data"]
    assert [c["id"] for c in listed] == [created["id"]]
    # Another account's external ids are its own.
    other = await api.ok("POST", "/v1/customers", key=server.other_key, form="external_id=crm-1")
    assert other["id"] != created["id"]
    assert (await api.ok("GET", f"/v1/customers/{created['id']}", key=key))["name"] == "B"


async def test_concurrent_creates_with_one_external_id_make_one_customer(api: Api, server: Server) -> None:
    key, account = await fresh_key(server)
    external = f"ext-{marker()}"

    async def create(i: int) -> Reply:
        return await api.post(
            "/v1/customers",
            f"external_id={external}&metadata[n{i}]={i}",
            key=key,
            headers={"Idempotency-Key": f"{external}-{i}"},
        )

    before = await count_events(server.db_url)
    replies = await asyncio.gather(*(create(i) for i in range(16)))
    assert [r.status for r in replies] == [200] * 16, [r.body for r in replies if r.status != 200]
    ids = {r.json["id"] for r in replies}
    assert len(ids) == 1
    assert await customers_with_external_id(server.db_url, account, external) == (1, 1)
    final = await api.ok("GET", f"/v1/customers/{ids.pop()}", key=key)
    assert final["metadata"] == {f"n{i}": str(i) for i in range(16)}
    # One create and fifteen metadata updates, nothing else.
    assert await count_events(server.db_url) == before + 16


async def test_concurrent_balance_transactions_on_one_customer_all_apply(api: Api, server: Server) -> None:
    customer = await api.ok("POST", "/v1/customers", form="name=busy&currency=usd")
    path = f"/v1/customers/{customer['id']}/balance_transactions"
    amounts = [(-1) ** i * (i + 1) * 100 for i in range(20)]
    before = await count_events(server.db_url)
    replies = await asyncio.gather(
        *(
            api.post(path, f"amount={amount}&currency=usd", headers={"Idempotency-Key": marker()})
            for amount in amounts
        )
    )
    assert [r.status for r in replies] == [200] * 20, [r.body for r in replies if r.status != 200]
    assert await count_events(server.db_url) == before + 20
    listed = (await api.ok("GET", path, query="limit=100"))["data"]
    assert sorted(t["amount"] for t in listed) == sorted(amounts)
    running = 0
    for txn in reversed(listed):  # oldest first: every ending_balance continues the previous one
        running += txn["amount"]
        assert txn["ending_balance"] == running
    assert (await api.ok("GET", f"/v1/customers/{customer['id']}"))["balance"] == sum(amounts) == running


# ---------------------------------------------------------------------------------------------------
# deleted customers
# ---------------------------------------------------------------------------------------------------


async def test_deleted_customer_is_a_stub_and_refuses_changes(api: Api, server: Server) -> None:
    customer = await api.ok("POST", "/v1/customers", form="email=bye%40example.com&balance=5&currency=usd")
    cid = customer["id"]
    txn_id = (await api.ok("GET", f"/v1/customers/{cid}/balance_transactions"))["data"][0]["id"]
    deleted = await api.call("DELETE", f"/v1/customers/{cid}")
    assert deleted.status == 200
    assert deleted.json == {"id": cid, "object": "customer", "deleted": True}
    fetched = await api.call("GET", f"/v1/customers/{cid}")
    assert fetched.status == 200
    assert fetched.json == {"id": cid, "object": "customer", "deleted": True}
    before = await count_events(server.db_url)
    refusals: list[tuple[str, str, str | None]] = [
        ("POST", f"/v1/customers/{cid}", "name=zombie"),
        ("POST", f"/v1/customers/{cid}", "balance=0"),
        ("POST", f"/v1/customers/{cid}/balance_transactions", "amount=100&currency=usd"),
        ("POST", f"/v1/customers/{cid}/balance_transactions/{txn_id}", "description=x"),
        ("DELETE", f"/v1/customers/{cid}", None),
    ]
    for method, path, form in refusals:
        reply = await api.call(method, path, form=form)
        assert reply.status == 404, (method, path, reply.body)
        assert reply.error["code"] == "resource_missing"
        assert cid in reply.error["message"]
    assert await count_events(server.db_url) == before
    assert cid not in {c["id"] for c in (await api.ok("GET", "/v1/customers", query="limit=100"))["data"]}
    found = await api.ok("GET", "/v1/customers/search", query="query=" + quote("email:'bye@example.com'"))
    assert cid not in {c["id"] for c in found["data"]}
    assert (await api.ok("GET", f"/v1/customers/{cid}"))["deleted"] is True


# ---------------------------------------------------------------------------------------------------
# failures no test request can provoke on a healthy server: the same middlewares around raising handlers
# ---------------------------------------------------------------------------------------------------


async def test_unexpected_and_database_failures_become_stripe_shaped_json() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from ledgerd.service.errors import error_middleware
    from ledgerd.service.observability import Metrics, access_middleware

    failures: dict[str, BaseException] = {
        "bug": RuntimeError("SELECT secret FROM somewhere"),
        "typeerror": TypeError("unsupported operand"),
        "pg-down": asyncpg.CannotConnectNowError("the database system is starting up"),
        "refused": ConnectionRefusedError(111, "Connection refused"),
        "timeout": TimeoutError(),
        "canceled": asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
    }

    async def handler(request: web.Request) -> web.Response:
        raise failures[request.match_info["name"]]

    app = web.Application(middlewares=[access_middleware(Metrics(), False), error_middleware])
    app.router.add_get("/fail/{name}", handler)
    async with TestClient(TestServer(app)) as client:
        expected = {
            "bug": (500, "api_error"),
            "typeerror": (500, "api_error"),
            "pg-down": (503, "api_error"),
            "refused": (503, "api_error"),
            "timeout": (503, "api_error"),
            "canceled": (429, "invalid_request_error"),
        }
        for name, (status, error_type) in expected.items():
            response = await client.get(f"/fail/{name}")
            text = await response.text()
            assert response.status == status, (name, text)
            assert response.content_type == "application/json", (name, text)
            assert json.loads(text)["error"]["type"] == error_type
            assert REQUEST_ID.match(response.headers["Request-Id"])
            assert "SELECT" not in text and "Traceback" not in text
            if status in (503, 429):
                assert response.headers["Stripe-Should-Retry"] == "true"
