"""The customer search query language: parser, SQL compiler and page tokens (no database here)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerd.domain.errors import InvalidParameter
from ledgerd.service.search import (
    BIGINT_MAX,
    BIGINT_MIN,
    MAX_CLAUSES,
    MAX_QUERY_LENGTH,
    Clause,
    Query,
    compile,
    decode_page,
    encode_page,
    escape_like,
    parse,
)


def error_of(query: str) -> InvalidParameter:
    with pytest.raises(InvalidParameter) as caught:
        parse(query)
    assert caught.value.param == "query"
    assert caught.value.code == "parameter_invalid"
    return caught.value


# --- Operators and fields -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "clause"),
    [
        ("email:'jenny@example.com'", Clause("email", ":", "jenny@example.com")),
        ("email~'jenny'", Clause("email", "~", "jenny")),
        ("name:'Jenny Rosen'", Clause("name", ":", "Jenny Rosen")),
        ("name~'Ros'", Clause("name", "~", "Ros")),
        ("phone:'+15555550100'", Clause("phone", ":", "+15555550100")),
        ("phone~'555'", Clause("phone", "~", "555")),
        ("created:1700000000", Clause("created", ":", 1700000000)),
        ("created=1700000000", Clause("created", "=", 1700000000)),
        ("created>1700000000", Clause("created", ">", 1700000000)),
        ("created<1700000000", Clause("created", "<", 1700000000)),
        ("created>=1700000000", Clause("created", ">=", 1700000000)),
        ("created<=1700000000", Clause("created", "<=", 1700000000)),
        ("created>'1700000000'", Clause("created", ">", 1700000000)),
        ('created<="17"', Clause("created", "<=", 17)),
        ("created>-5", Clause("created", ">", -5)),
        ("metadata['order']:'6735'", Clause("metadata", ":", "6735", key="order")),
        ('metadata["order"]:"6735"', Clause("metadata", ":", "6735", key="order")),
    ],
)
def test_each_field_and_operator(query: str, clause: Clause) -> None:
    assert parse(query) == Query((clause,), "AND")


def test_created_accepts_the_bigint_range() -> None:
    assert parse(f"created>={BIGINT_MIN}").clauses[0].value == BIGINT_MIN
    assert parse(f"created<={BIGINT_MAX}").clauses[0].value == BIGINT_MAX


# --- Quoting and escapes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ("name:'Jenny'", "Jenny"),
        ('name:"Jenny"', "Jenny"),
        ('name:"O\'Brien"', "O'Brien"),  # the other quote needs no escape
        ("name:'say \"hi\"'", 'say "hi"'),
        (r"name:'O\'Brien'", "O'Brien"),
        (r'name:"say \"hi\""', 'say "hi"'),
        (r"name:'a\"b'", 'a"b'),  # escaping the other quote is allowed, too
        (r"name:'back\\slash'", "back\\slash"),
        (r"name:'\\'", "\\"),
        ("name:''", ""),
        ("name:'  spaced  out  '", "  spaced  out  "),
        ("name:'AND OR - : ~ [ ] ( )'", "AND OR - : ~ [ ] ( )"),
        ("name:'Zoë 東京 🎉'", "Zoë 東京 🎉"),
        ("name:'null'", "null"),  # quoted: the literal string, not a presence test
    ],
)
def test_quoted_values(query: str, value: str) -> None:
    assert parse(query).clauses[0].value == value


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ("metadata['plain']:'v'", "plain"),
        ("metadata[\"it's\"]:'v'", "it's"),
        (r"metadata['it\'s']:'v'", "it's"),
        (r'metadata["say \"x\""]:"v"', 'say "x"'),
        ("metadata['with space']:'v'", "with space"),
        ("metadata['a]b']:'v'", "a]b"),
        (r"metadata['back\\slash']:'v'", "back\\slash"),
    ],
)
def test_metadata_keys(query: str, key: str) -> None:
    clause = parse(query).clauses[0]
    assert (clause.field, clause.key, clause.value) == ("metadata", key, "v")


# --- Negation, null, joining --------------------------------------------------------------------------


def test_negation() -> None:
    assert parse("-email:'a@b.c'").clauses == (Clause("email", ":", "a@b.c", negated=True),)
    assert parse("-created>5").clauses == (Clause("created", ">", 5, negated=True),)
    assert parse("-metadata['k']:'v'").clauses == (Clause("metadata", ":", "v", key="k", negated=True),)
    assert parse("-name~'jen'").clauses == (Clause("name", "~", "jen", negated=True),)


@pytest.mark.parametrize("spelling", ["null", "NULL", "Null"])
def test_null_presence_test(spelling: str) -> None:
    assert parse(f"email:{spelling}").clauses == (Clause("email", ":", None),)
    assert parse(f"-phone:{spelling}").clauses == (Clause("phone", ":", None, negated=True),)
    assert parse(f"metadata['k']:{spelling}").clauses == (Clause("metadata", ":", None, key="k"),)


def test_space_means_and() -> None:
    query = parse("email:'a@b.c' name:'Jenny'")
    assert query == Query((Clause("email", ":", "a@b.c"), Clause("name", ":", "Jenny")), "AND")


@pytest.mark.parametrize("keyword", ["AND", "and", "And"])
def test_and_keyword(keyword: str) -> None:
    query = parse(f"email:'a@b.c' {keyword} name:'Jenny'  {keyword}\tcreated>1")
    assert query.combinator == "AND"
    assert [clause.field for clause in query.clauses] == ["email", "name", "created"]


@pytest.mark.parametrize("keyword", ["OR", "or", "oR"])
def test_or_keyword(keyword: str) -> None:
    query = parse(f"email:'a@b.c' {keyword} -name:'Jenny' {keyword} created>1")
    assert query.combinator == "OR"
    assert [(clause.field, clause.negated) for clause in query.clauses] == [
        ("email", False),
        ("name", True),
        ("created", False),
    ]


def test_space_and_and_keyword_mix_fine() -> None:
    assert parse("email:'a' AND name:'b' phone:'c'").combinator == "AND"


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse(" \t\r\nemail:'a'\n ") == parse("email:'a'")


def test_positions_are_recorded() -> None:
    query = parse("email:'a' OR  -name:'b'")
    assert [clause.position for clause in query.clauses] == [0, 14]


def test_ten_clauses_is_the_limit() -> None:
    ten = " ".join(f"created>{i}" for i in range(MAX_CLAUSES))
    assert len(parse(ten).clauses) == MAX_CLAUSES
    message = error_of(ten + " created>99").message
    assert "at most 10 clauses" in message
    assert f"position {len(ten) + 1}" in message
    assert "at most 10 clauses" in error_of(" OR ".join(["email:'a'"] * 11)).message


# --- Errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "The query is empty"),
        ("   ", "The query is empty"),
        (
            "foo:'x'",
            "Unknown field 'foo' at position 0; supported fields: created, email, metadata, name, phone",
        ),
        ("email:'a' bar:'x'", "Unknown field 'bar' at position 10"),
        ("Email:'x'", "Unknown field 'Email' at position 0"),
        (
            "email:'a' OR name:'b' AND phone:'c'",
            "AND and OR cannot be mixed in one query: found 'AND' at position 22",
        ),
        (
            "email:'a' AND name:'b' OR phone:'c'",
            "AND and OR cannot be mixed in one query: found 'OR' at position 23",
        ),
        (
            "email:'a' OR name:'b' phone:'c'",
            "AND and OR cannot be mixed in one query: found a space (which means AND)",
        ),
        (
            "email:'a' name:'b' OR phone:'c'",
            "AND and OR cannot be mixed in one query: found 'OR' at position 19",
        ),
        ("email:'abc", "Unterminated string starting at position 6"),
        ('name:"abc\\"', "Unterminated string starting at position 5"),
        ("name:'abc\\", "Unterminated string starting at position 5"),
        ("email:'a' name:'b", "Unterminated string starting at position 15"),
        ("metadata['k", "Unterminated string starting at position 9"),
        ("email~'ab'", "'~' needs a value of at least 3 characters; got 'ab' at position 6"),
        ("name~''", "'~' needs a value of at least 3 characters"),
        ("created>abc", "'created' takes a number (unix seconds); got 'abc' at position 8"),
        ("created>1.5", "'created' takes a number"),
        ("created>'abc'", "'created' takes a number"),
        ("created:''", "'created' takes a number"),
        ("created>12abc", "'created' takes a number"),
        ("created:null", "'created' takes a number (unix seconds), not null (position 8)"),
        (f"created>{BIGINT_MAX + 1}", "out of range"),
        (f"created>{BIGINT_MIN - 1}", "out of range"),
        ("created>" + "9" * 5000, "'created' takes a number"),
        ("created~'123'", "'~' (substring) at position 7 does not work on 'created'"),
        ("email=1", "'=' at position 5 only works on the numeric field 'created'"),
        ("name>'a'", "'>' at position 4 only works on the numeric field 'created'"),
        ("metadata['k']>='1'", "'>=' at position 13 only works on the numeric field 'created'"),
        ("metadata['k']~'abc'", "'~' (substring) at position 13 does not work on metadata"),
        ("email~null", "null (position 6) can only be used with ':'"),
        ("email:jenny@example.com", "The value for 'email' at position 6 must be quoted"),
        ("metadata['k']:v", "The value for 'metadata' at position 14 must be quoted"),
        (
            "email :'a'",
            "Expected an operator (one of : ~ = > < >= <=) after 'email' at position 5, found a space",
        ),
        ("email", "Expected an operator (one of : ~ = > < >= <=) after 'email' at position 5"),
        ("email!'a'", "Expected an operator (one of : ~ = > < >= <=) after 'email' at position 5, found '!'"),
        ("email: 'a'", "Expected a value after ':' at position 6, found a space"),
        ("email:", "Expected a value after ':' at position 6, found the end of the query"),
        ("email:'a'name:'b'", "Expected a space, AND or OR after the clause at position 9, found 'n'"),
        (
            "email:'x'' OR 1=1 --'",
            "Expected a space, AND or OR after the clause at position 9, found a quoted string",
        ),
        ("email:'a' AND", "Expected a clause after 'AND' at position 10"),
        ("email:'a' or   ", "Expected a clause after 'or' at position 10"),
        ("AND email:'a'", "Expected a clause at position 0, found 'AND'"),
        ("email:'a' AND OR name:'b'", "Expected a clause at position 14, found 'OR'"),
        ("email:'a' AND AND name:'b'", "Expected a clause at position 14, found 'AND'"),
        ("(email:'a')", "Parentheses are not supported (position 0)"),
        ("email:'a' OR (name:'b')", "Parentheses are not supported (position 13)"),
        ("- email:'a'", "Expected a field after '-' at position 1, found a space"),
        ("--email:'a'", "Expected a field after '-' at position 1, found '-'"),
        ("-", "Expected a field after '-' at position 1, found the end of the query"),
        ("'email':'a'", "Expected a field at position 0, found a quoted string"),
        (":'a'", "Expected a field at position 0, found ':'"),
        ("metadata:'a'", "Expected '[' after 'metadata' at position 8"),
        ("metadata[k]:'v'", "The metadata key at position 9 must be quoted"),
        ("metadata['']:'v'", "The metadata key at position 9 is empty"),
        ("metadata['k':'v'", "Expected ']' at position 12 to close the metadata key, found ':'"),
        ("metadata['k']", "Expected an operator (one of : ~ = > < >= <=) after 'metadata' at position 13"),
        (r"name:'a\nb'", r"Invalid escape '\\n' at position 7; only \', \" and \\ can be escaped"),
        ("name:'a\x00'", "NUL character at position 7"),
        ("name:'\ud800'", "unpaired surrogate) at position 6"),
        ("email:'a' " * 1001, "the limit is 10000"),
    ],
)
def test_errors_name_the_problem_and_position(query: str, expected: str) -> None:
    assert expected in error_of(query).message


def test_error_messages_shorten_long_client_text() -> None:
    message = error_of("x" * 500 + ":'a'").message
    assert len(message) < 200
    assert "at position 0" in message


def test_non_string_query_is_invalid() -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse(None)  # type: ignore[arg-type]
    assert caught.value.param == "query"


def test_limit_is_on_characters_not_clauses() -> None:
    long_value = "x" * (MAX_QUERY_LENGTH - len("name:''"))
    assert parse(f"name:'{long_value}'").clauses[0].value == long_value
    assert "limit" in error_of(f"name:'{long_value}x'").message


# --- Fuzzing: nothing but a Query or InvalidParameter comes out ---------------------------------------

_FRAGMENTS = [
    "email", "name", "phone", "created", "metadata", "[", "]", "'", '"', "\\", ":", "~", "=", ">", "<", ">=",
    "<=", "-", " ", "\t", "AND", "OR", "and", "or", "null", "NULL", "abc", "12", "-3", "(", ")", "%", "_",
    "9" * 25, "\x00", "é", "\n",
]  # fmt: skip


def _parse_or_reject(text: str) -> None:
    try:
        result = parse(text)
    except InvalidParameter as error:
        assert error.param == "query"
        assert error.code == "parameter_invalid"
        assert error.message
        return
    assert isinstance(result, Query)
    assert 1 <= len(result.clauses) <= MAX_CLAUSES
    sql, params = compile(result, 3)
    assert len(set(re.findall(r"\$(\d+)", sql))) == len(params)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _parse_or_reject(text)


@pytest.mark.slow
@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=30).map("".join))
def test_fuzz_query_like_text(text: str) -> None:
    _parse_or_reject(text)


# --- Well-formed queries: render -> parse gives back the same clauses ---------------------------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)


def _quote(text: str, quote: str) -> str:
    return quote + text.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


@st.composite
def clauses(draw: st.DrawFn) -> tuple[Clause, str]:
    negated = draw(st.booleans())
    field = draw(st.sampled_from(["created", "email", "name", "phone", "metadata"]))
    quote = draw(st.sampled_from(["'", '"']))
    key: str | None = None
    value: str | int | None
    if field == "created":
        op = draw(st.sampled_from([":", "=", ">", "<", ">=", "<="]))
        value = draw(st.integers(BIGINT_MIN, BIGINT_MAX))
        shown = _quote(str(value), quote) if draw(st.booleans()) else str(value)
    else:
        op = ":" if field == "metadata" else draw(st.sampled_from([":", "~"]))
        if op == ":" and draw(st.booleans()):
            value, shown = None, draw(st.sampled_from(["null", "NULL"]))
        else:
            value = draw(_TEXT.filter(lambda t: op != "~" or len(t) >= 3))
            shown = _quote(value, quote)
    left = field
    if field == "metadata":
        key = draw(_TEXT.filter(bool))
        key_quote = draw(st.sampled_from(["'", '"']))
        left = f"metadata[{_quote(key, key_quote)}]"
    text = f"{'-' if negated else ''}{left}{op}{shown}"
    return Clause(field, op, value, key, negated), text  # type: ignore[arg-type]


@pytest.mark.slow
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(clauses(), min_size=1, max_size=MAX_CLAUSES),
    st.sampled_from(["AND", "OR"]),
    st.data(),
)
def test_rendered_queries_parse_back(
    generated: list[tuple[Clause, str]], combinator: str, data: st.DataObject
) -> None:
    text = generated[0][1]
    for _, clause_text in generated[1:]:
        space = data.draw(st.sampled_from([" ", "  ", "\t", "\n"]))
        if combinator == "OR":
            joiner = data.draw(st.sampled_from(["OR", "or"]))
        else:
            joiner = data.draw(st.sampled_from(["AND", "and", ""]))
        text += f"{space}{joiner}{space}" if joiner else space
        text += clause_text
    query = parse(text)
    assert query.clauses == tuple(clause for clause, _ in generated)
    if len(generated) > 1:
        assert query.combinator == combinator


# --- SQL ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "sql", "params"),
    [
        ("email:'A@B.c'", "(lower(email) = lower($3::text))", ["A@B.c"]),
        ("name:'Jenny'", "(lower(name) = lower($3::text))", ["Jenny"]),
        ("phone:'+1555'", "(lower(phone) = lower($3::text))", ["+1555"]),
        ("email~'jen'", "(email ILIKE $3::text ESCAPE E'\\\\')", ["%jen%"]),
        ("name~'50%_off\\\\'", "(name ILIKE $3::text ESCAPE E'\\\\')", ["%50\\%\\_off\\\\%"]),
        ("email:null", "(email IS NULL)", []),
        ("-email:null", "(NOT coalesce(email IS NULL, false))", []),
        ("created:5", "(created = $3::bigint)", [5]),
        ("created=5", "(created = $3::bigint)", [5]),
        ("created>=5", "(created >= $3::bigint)", [5]),
        ("created<5", "(created < $3::bigint)", [5]),
        ("metadata['k']:'v'", "(metadata @> jsonb_build_object($3::text, $4::text))", ["k", "v"]),
        ("metadata['k']:null", "(NOT (metadata ? $3::text))", ["k"]),
        ("-email:'a'", "(NOT coalesce(lower(email) = lower($3::text), false))", ["a"]),
        (
            "email:'a' OR created>1 OR -metadata['k']:'v'",
            "(lower(email) = lower($3::text)) OR (created > $4::bigint) OR "
            "(NOT coalesce(metadata @> jsonb_build_object($5::text, $6::text), false))",
            ["a", 1, "k", "v"],
        ),
        (
            "email:'a' name:'b'",
            "(lower(email) = lower($3::text)) AND (lower(name) = lower($4::text))",
            ["a", "b"],
        ),
    ],
)
def test_compile(query: str, sql: str, params: list[object]) -> None:
    assert compile(parse(query), 3) == (sql, params)


def test_compile_numbers_parameters_from_first_param() -> None:
    sql, params = compile(parse("email:'a' OR metadata['k']:'v'"), 7)
    assert re.findall(r"\$\d+", sql) == ["$7", "$8", "$9"]
    assert params == ["a", "k", "v"]


def test_escape_like() -> None:
    assert escape_like("a%b_c\\d") == "a\\%b\\_c\\\\d"
    assert escape_like("plain") == "plain"


def _blank(clause: Clause) -> Clause:
    """The same clause shape with different values."""
    value: str | int | None
    if clause.value is None:
        value = None
    elif isinstance(clause.value, int):
        value = 0
    else:
        value = "zzz"
    key = None if clause.key is None else "k"
    return Clause(clause.field, clause.op, value, key, clause.negated)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(clauses(), min_size=1, max_size=MAX_CLAUSES), st.sampled_from(["AND", "OR"]))
def test_sql_text_never_depends_on_client_values(
    generated: list[tuple[Clause, str]], combinator: str
) -> None:
    query = Query(tuple(clause for clause, _ in generated), combinator)  # type: ignore[arg-type]
    blanked = Query(tuple(_blank(clause) for clause in query.clauses), query.combinator)
    sql, params = compile(query, 3)
    assert sql == compile(blanked, 3)[0]
    assert re.findall(r"\$(\d+)", sql) == [str(n) for n in range(3, 3 + len(params))]


# --- Page tokens --------------------------------------------------------------------------------------


@given(st.integers(0, BIGINT_MAX))
def test_page_tokens_round_trip(position: int) -> None:
    token = encode_page(position)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert decode_page(token) == position


@pytest.mark.parametrize(
    "token",
    ["", "abc", "!!!!", "cus_123", "12345", encode_page(5) + "A", encode_page(5) + "==", "djE6MDE", "djE6LTE",
     "djI6NQ", "x" * 200, " " + encode_page(5), "djE6OTIyMzM3MjAzNjg1NDc3NTgwOA"],
)  # fmt: skip
def test_malformed_page_tokens_are_rejected(token: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        decode_page(token)
    assert caught.value.param == "page"
    assert caught.value.code == "parameter_invalid"


def test_non_string_page_token_is_rejected() -> None:
    with pytest.raises(InvalidParameter):
        decode_page(12)  # type: ignore[arg-type]


@settings(max_examples=1000)
@given(st.text())
def test_fuzz_page_tokens(token: str) -> None:
    try:
        position = decode_page(token)
    except InvalidParameter as error:
        assert error.param == "page"
    else:
        assert encode_page(position) == token


@pytest.mark.parametrize("position", [-1, BIGINT_MAX + 1, True, "5"])
def test_encode_page_rejects_bad_positions(position: object) -> None:
    with pytest.raises(ValueError):
        encode_page(position)  # type: ignore[arg-type]
