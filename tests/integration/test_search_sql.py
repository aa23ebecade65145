"""Customer search queries compiled by service.search, run against real PostgreSQL.

Rows are inserted straight into the ``customers`` projection; each query is wrapped the way the handler
wraps it (account, mode, not deleted, newest first) and the returned ids are compared with what the query
means.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerd.domain.errors import InvalidParameter
from ledgerd.service.search import Clause, Query, compile, decode_page, encode_page, parse

ACCOUNT = "acct_search"
BASE = 1_700_000_000


@dataclass(frozen=True)
class Row:
    id: str
    position: int
    email: str | None = None
    name: str | None = None
    phone: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    account: str = ACCOUNT
    livemode: bool = False
    deleted: bool = False

    @property
    def created(self) -> int:
        return BASE + 100 * self.position


ROWS = [
    Row(
        "cus_jenny",
        1,
        "Jenny.Rosen@Example.com",
        "Jenny Rosen",
        "+15555550100",
        {"order": "6735", "tier": "gold"},
    ),
    Row("cus_jen2", 2, "jen@example.org", "Jennifer", None, {"order": "6736"}),
    Row("cus_percent", 3, "50%off@shop.test", "50%_off Store", "+15555550199", {"note": "it's"}),
    Row("cus_under", 4, "a_b@shop.test", "AxB"),
    Row("cus_axb", 5, "axb@shop.test", "A_B"),
    Row("cus_backslash", 6, "bs@x.test", "back\\slash"),
    Row("cus_inject", 7, "x' OR 1=1 --", "Robert'); DROP TABLE customers;--"),
    Row("cus_bare", 8, None, None, None, {"Order": "6735"}),
    Row("cus_quote", 9, "q@x.test", 'say "hi"', "555", {"it's": "yes", 'k"q': "v"}),
    # Never returned: deleted, another account, live mode.
    Row(
        "cus_deleted", 10, "jenny.rosen@example.com", "Jenny Rosen", deleted=True, metadata={"order": "6735"}
    ),
    Row("cus_other_acct", 11, "jenny.rosen@example.com", "Jenny Rosen", account="acct_other"),
    Row("cus_live", 12, "jenny.rosen@example.com", "Jenny Rosen", livemode=True),
]
VISIBLE = [row for row in ROWS if row.account == ACCOUNT and not row.livemode and not row.deleted]
NEWEST_FIRST = [row.id for row in sorted(VISIBLE, key=lambda row: -row.position)]


async def insert_rows(pool: asyncpg.Pool, rows: list[Row]) -> None:
    await pool.executemany(
        """INSERT INTO customers (id, account, livemode, position, version, created, deleted, email, name, phone,
                                  invoice_prefix, invoice_settings, next_invoice_sequence, preferred_locales,
                                  tax_exempt, metadata, balance)
           VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9, 'ABCD1234', '{}'::jsonb, 1, '[]'::jsonb, 'none',
                   $10::jsonb, 0)""",
        [
            (
                row.id,
                row.account,
                row.livemode,
                row.position,
                row.created,
                row.deleted,
                row.email,
                row.name,
                row.phone,
                json.dumps(dict(row.metadata)),
            )
            for row in rows
        ],
    )


async def run(
    pool: asyncpg.Pool, query: str, *, limit: int = 100, page: str | None = None
) -> tuple[list[str], str | None]:
    """Run a search the way the handler does; return (ids newest first, next_page token or None)."""
    expr, params = compile(parse(query), 4)
    below = decode_page(page) if page is not None else 2**63 - 1
    sql = (
        "SELECT id, position FROM customers WHERE account = $1 AND livemode = $2 AND NOT deleted "
        f"AND position < $3 AND ({expr}) ORDER BY position DESC LIMIT {int(limit) + 1}"
    )
    rows = await pool.fetch(sql, ACCOUNT, False, below, *params)
    more = len(rows) > limit
    rows = rows[:limit]
    return [row["id"] for row in rows], (encode_page(rows[-1]["position"]) if more else None)


async def ids(pool: asyncpg.Pool, query: str) -> list[str]:
    found, _ = await run(pool, query)
    return found


def newest_first(*wanted: str) -> list[str]:
    return [cus for cus in NEWEST_FIRST if cus in wanted]


def everyone_but(*unwanted: str) -> list[str]:
    return [cus for cus in NEWEST_FIRST if cus not in unwanted]


@pytest.fixture
async def customers(pool: asyncpg.Pool) -> asyncpg.Pool:
    await insert_rows(pool, ROWS)
    return pool


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # email: whole value, case-insensitive
        ("email:'jenny.rosen@example.com'", newest_first("cus_jenny")),
        ("email:'JENNY.ROSEN@EXAMPLE.COM'", newest_first("cus_jenny")),
        ('email:"Jenny.Rosen@Example.com"', newest_first("cus_jenny")),
        ("email:'jenny.rosen'", []),
        ("email:'jenny.rosen@example.com '", []),
        # ~ substring, case-insensitive
        ("email~'example'", newest_first("cus_jenny", "cus_jen2")),
        ("email~'EXAMPLE.ORG'", newest_first("cus_jen2")),
        ("name~'JEN'", newest_first("cus_jenny", "cus_jen2")),
        ("name~'rosen'", newest_first("cus_jenny")),
        ("phone~'5550'", newest_first("cus_jenny", "cus_percent")),
        # LIKE wildcards in ~ values are literal
        ("name~'50%'", newest_first("cus_percent")),
        ("email~'%%%'", []),
        ("email~'___'", []),
        ("email~'a_b'", newest_first("cus_under")),
        ("name~'a_b'", newest_first("cus_axb")),
        ("name~'%_o'", newest_first("cus_percent")),
        (r"name~'k\\s'", newest_first("cus_backslash")),
        (r"name~'\\\\\\'", []),
        # name and phone: whole value, case-insensitive
        ("name:'jenny rosen'", newest_first("cus_jenny")),
        ("name:'Jenny'", []),
        ("phone:'+15555550100'", newest_first("cus_jenny")),
        ("phone:'555'", newest_first("cus_quote")),
        (r"name:'back\\slash'", newest_first("cus_backslash")),
        (r'name:"say \"hi\""', newest_first("cus_quote")),
        ("name:'say \"hi\"'", newest_first("cus_quote")),
        # metadata: exact and case-sensitive, key and value
        ("metadata['order']:'6735'", newest_first("cus_jenny")),
        ('metadata["Order"]:"6735"', newest_first("cus_bare")),
        ("metadata['tier']:'GOLD'", []),
        ("metadata['order']:'673'", []),
        ("metadata[\"it's\"]:'yes'", newest_first("cus_quote")),
        (r"metadata['it\'s']:'yes'", newest_first("cus_quote")),
        (r"metadata['k\"q']:'v'", newest_first("cus_quote")),
        ("metadata['note']:\"it's\"", newest_first("cus_percent")),
        ("metadata['missing']:'x'", []),
        # null presence tests
        ("email:null", newest_first("cus_bare")),
        ("-email:null", everyone_but("cus_bare")),
        ("phone:null", newest_first("cus_jen2", "cus_under", "cus_axb", "cus_backslash", "cus_inject", "cus_bare")),
        ("metadata['order']:null", everyone_but("cus_jenny", "cus_jen2")),
        ("-metadata['order']:null", newest_first("cus_jenny", "cus_jen2")),
        ("name:'null'", []),
        # negation matches rows where the field is missing, too
        ("-email:'jen@example.org'", everyone_but("cus_jen2")),
        ("-phone~'555'", everyone_but("cus_jenny", "cus_percent", "cus_quote")),
        ("-metadata['order']:'6735'", everyone_but("cus_jenny")),
        ("-name:'AxB' -name:'A_B'", everyone_but("cus_under", "cus_axb")),
        # created: numeric comparisons
        (f"created:{BASE + 300}", newest_first("cus_percent")),
        (f"created={BASE + 300}", newest_first("cus_percent")),
        (f"created:'{BASE + 300}'", newest_first("cus_percent")),
        (f"created>{BASE + 700}", newest_first("cus_bare", "cus_quote")),
        (f"created>={BASE + 700}", newest_first("cus_inject", "cus_bare", "cus_quote")),
        (f"created<{BASE + 200}", newest_first("cus_jenny")),
        (f"created<={BASE + 200}", newest_first("cus_jenny", "cus_jen2")),
        (f"created>{BASE + 200} AND created<{BASE + 500}", newest_first("cus_percent", "cus_under")),
        (f"created>{BASE + 200} created<{BASE + 500}", newest_first("cus_percent", "cus_under")),
        (f"-created>{BASE + 200}", newest_first("cus_jenny", "cus_jen2")),
        # OR
        ("email:'jen@example.org' OR name:'AxB'", newest_first("cus_jen2", "cus_under")),
        ("email:'jen@example.org' or metadata['order']:'6735' or phone:null", newest_first(
            "cus_jenny", "cus_jen2", "cus_under", "cus_axb", "cus_backslash", "cus_inject", "cus_bare"
        )),
        (f"created<{BASE + 200} OR created>{BASE + 800}", newest_first("cus_jenny", "cus_quote")),
        ("-email:null OR metadata['Order']:'6735'", NEWEST_FIRST),
        # AND with several kinds
        ("email~'shop.test' -name~'%_o' -metadata['note']:null", []),
        ("email~'shop.test' -name~'%_o'", newest_first("cus_under", "cus_axb")),
        # deleted customers, other accounts and live mode never show up
        ("name:'Jenny Rosen'", newest_first("cus_jenny")),
        ("email~'rosen'", newest_first("cus_jenny")),
    ],
)  # fmt: skip
@pytest.mark.slow
async def test_query_returns(customers: asyncpg.Pool, query: str, expected: list[str]) -> None:
    assert await ids(customers, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('email:"x\' OR 1=1 --"', ["cus_inject"]),
        (r"email:'x\' OR 1=1 --'", ["cus_inject"]),
        ('email:"x\' or 1=1 --"', ["cus_inject"]),
        (r"name:'Robert\'); DROP TABLE customers;--'", ["cus_inject"]),
        ('name:"\'); DROP TABLE customers;--"', []),
        ("email~\"' OR '1'='1\"", []),
        ('email~"\' OR 1=1"', ["cus_inject"]),
        ("metadata[\"x') OR true --\"]:'1'", []),
        ("metadata['order']:\"6735') OR ('1'='1\"", []),
        ("metadata[\"a'}'::jsonb OR true --\"]:'x'", []),
        ('name~"$1 OR $2"', []),
        ("email~'%' OR 1=1'", None),
    ],
)
@pytest.mark.slow
async def test_sql_injection_looking_input(
    customers: asyncpg.Pool, query: str, expected: list[str] | None
) -> None:
    if expected is None:
        with pytest.raises(InvalidParameter):
            parse(query)
    else:
        assert await ids(customers, query) == expected
    assert await customers.fetchval("SELECT count(*) FROM customers") == len(ROWS)


@pytest.mark.slow
@pytest.mark.parametrize(
    "query",
    ["email:'x'' OR 1=1 --'", "email:'x' OR 1=1 --", "email:x OR 1=1", "email:'a'; DROP TABLE customers"],
)
async def test_sql_injection_looking_syntax_is_rejected(customers: asyncpg.Pool, query: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        await ids(customers, query)
    assert caught.value.param == "query"
    assert await customers.fetchval("SELECT count(*) FROM customers") == len(ROWS)


async def test_paging_walks_every_match_once_newest_first(customers: asyncpg.Pool) -> None:
    query = "-email:'nobody@example.com'"
    seen: list[str] = []
    page: str | None = None
    pages = 0
    while True:
        found, page = await run(customers, query, limit=2, page=page)
        seen += found
        pages += 1
        if page is None:
            break
    assert seen == NEWEST_FIRST
    assert pages == (len(NEWEST_FIRST) + 1) // 2


async def test_paging_with_an_exact_multiple_of_the_limit(customers: asyncpg.Pool) -> None:
    query = f"created<={BASE + 400}"  # four matches
    first, page = await run(customers, query, limit=2)
    assert first == ["cus_under", "cus_percent"]
    assert page is not None
    second, page = await run(customers, query, limit=2, page=page)
    assert second == ["cus_jen2", "cus_jenny"]
    assert page is None


async def test_values_reach_postgres_unchanged(customers: asyncpg.Pool) -> None:
    """Unicode, quotes and backslashes round-trip through the parameters."""
    odd = "Zoë \\ ' \" % _ 東京 🎉"
    await insert_rows(customers, [Row("cus_odd", 50, name=odd, metadata={odd: odd})])
    assert await ids(customers, f"name:{_quote(odd)}") == ["cus_odd"]
    assert await ids(customers, f"name:{_quote(odd.upper())}") == ["cus_odd"]
    assert await ids(customers, f"name~{_quote(odd[2:9])}") == ["cus_odd"]
    assert await ids(customers, f"metadata[{_quote(odd)}]:{_quote(odd)}") == ["cus_odd"]


# --- Differential check against a Python model of the semantics ---------------------------------------


def model_matches(row: Row, clause: Clause) -> bool:
    result: bool
    if clause.field == "created":
        assert isinstance(clause.value, int)
        value = clause.value
        result = {
            ":": row.created == value,
            "=": row.created == value,
            ">": row.created > value,
            "<": row.created < value,
            ">=": row.created >= value,
            "<=": row.created <= value,
        }[clause.op]
    elif clause.field == "metadata":
        assert clause.key is not None
        result = (
            clause.key not in row.metadata
            if clause.value is None
            else row.metadata.get(clause.key) == clause.value
        )
    else:
        column: str | None = getattr(row, clause.field)
        if clause.value is None:
            result = column is None
        elif column is None:
            result = False
        elif clause.op == "~":
            result = str(clause.value).lower() in column.lower()
        else:
            result = column.lower() == str(clause.value).lower()
    return result != clause.negated


def model(query: Query) -> list[str]:
    combine = all if query.combinator == "AND" else any
    return [
        cus
        for cus in NEWEST_FIRST
        if combine(
            model_matches(next(row for row in VISIBLE if row.id == cus), clause) for clause in query.clauses
        )
    ]


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ASCII only: case folding of other letters follows the database collation, which the model does not copy.
_FRAGMENTS = sorted(
    {
        piece
        for row in VISIBLE
        for text in (row.email, row.name, row.phone, *row.metadata.values())
        if text is not None and text.isascii()
        for piece in (text, text.upper(), text[1:4], text[2:8].lower(), text[-3:])
    }
)
_VALUES = st.one_of(st.sampled_from(_FRAGMENTS), st.text("abAB%_\\'\" .@-5", max_size=5))
_KEYS = st.sampled_from(sorted({key for row in ROWS for key in row.metadata} | {"absent"}))


@st.composite
def clause_texts(draw: st.DrawFn) -> str:
    sign = "-" if draw(st.booleans()) else ""
    field_name = draw(st.sampled_from(["created", "email", "name", "phone", "metadata"]))
    if field_name == "created":
        op = draw(st.sampled_from([":", "=", ">", "<", ">=", "<="]))
        return (
            f"{sign}created{op}{BASE + draw(st.integers(-1, 13)) * 100 + draw(st.sampled_from([-1, 0, 1]))}"
        )
    if field_name == "metadata":
        value = "null" if draw(st.booleans()) else _quote(draw(_VALUES))
        return f"{sign}metadata[{_quote(draw(_KEYS))}]:{value}"
    if draw(st.booleans()):
        return f"{sign}{field_name}:null"
    op = draw(st.sampled_from([":", "~"]))
    value = draw(_VALUES.filter(lambda text: op == ":" or len(text) >= 3))
    return f"{sign}{field_name}{op}{_quote(value)}"


@pytest.mark.slow
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    parts=st.lists(clause_texts(), min_size=1, max_size=10), joiner=st.sampled_from([" ", " AND ", " OR "])
)
async def test_sql_agrees_with_the_model(pool: asyncpg.Pool, parts: list[str], joiner: str) -> None:
    if await pool.fetchval("SELECT count(*) FROM customers") == 0:
        await insert_rows(pool, ROWS)
    text = joiner.join(parts)
    assert await ids(pool, text) == model(parse(text)), text
