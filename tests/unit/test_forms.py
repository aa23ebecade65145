"""service.forms: form / query / JSON decoding into nested params, as both Stripe SDKs encode them."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stripe._encode import _api_encode

from ledgerd.domain.errors import InvalidParameter
from ledgerd.service.forms import MAX_DEPTH, MAX_PARAMS, parse_form, parse_json, parse_query

# ---------------------------------------------------------------------------------------------------
# helpers: encode the way the SDKs do
# ---------------------------------------------------------------------------------------------------


def python_sdk_body(params: dict[str, Any]) -> bytes:
    """stripe-python 16.1 `_api_requestor`: urlencode(_api_encode(...)) with brackets turned back to literal."""
    encoded = urlencode(list(_api_encode(params)))
    return encoded.replace("%5B", "[").replace("%5D", "]").encode()


def python_sdk_query(params: dict[str, Any]) -> str:
    """What arrives in a GET after `requests` re-quotes the URL: brackets percent-encoded."""
    return urlencode(list(_api_encode(params)))


def _node_pairs(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _node_pairs(f"{prefix}[{key}]", item)]
    if isinstance(value, list):
        return [pair for index, item in enumerate(value) for pair in _node_pairs(f"{prefix}[{index}]", item)]
    if value is None:
        return [(prefix, "")]
    if isinstance(value, bool):
        return [(prefix, "true" if value else "false")]
    return [(prefix, str(value))]


def node_sdk_body(params: dict[str, Any]) -> bytes:
    """stripe-node: qs.stringify (indices, RFC 3986 so spaces are %20), then %5B/%5D back to brackets."""
    pairs = [pair for key, value in params.items() for pair in _node_pairs(key, value)]
    encoded = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    return encoded.replace("%5B", "[").replace("%5D", "]").encode()


def as_strings(value: Any, *, python: bool = False, in_list: bool = False) -> Any:
    """What a form can carry back: every scalar as the string the SDK sent.

    stripe-python quirk: a bool that is an item of a list is sent as str(bool), "True"/"False" (the list
    branch of `_api_encode` yields it unconverted), unless that list is itself inside a list (then it is
    re-encoded as a dict, whose bool values become "true"/"false").
    """
    if isinstance(value, dict):
        return {key: as_strings(item, python=python) for key, item in value.items()}
    if isinstance(value, list):
        return [as_strings(item, python=python, in_list=not in_list) for item in value]
    if isinstance(value, bool):
        if python and in_list:
            return str(value)
        return "true" if value else "false"
    return str(value)


def rejected(call: Any, *args: Any) -> InvalidParameter:
    with pytest.raises(InvalidParameter) as info:
        call(*args)
    return info.value


# ---------------------------------------------------------------------------------------------------
# real SDK bodies
# ---------------------------------------------------------------------------------------------------


def test_python_sdk_customer_create_body() -> None:
    # given the body stripe-python sends for a typical customer create
    body = (
        b"email=a%40b.c&metadata[order_id]=6735&metadata[x]=&address[line1]=1+Main&preferred_locales[0]=en"
        b"&expand[0]=test_clock&balance=-100&invoice_settings[custom_fields][0][name]=a&validate=true"
    )
    # when it is parsed
    params = parse_form(body)
    # then every key is nested, every value is a string, and empty stays empty
    assert params == {
        "email": "a@b.c",
        "metadata": {"order_id": "6735", "x": ""},
        "address": {"line1": "1 Main"},
        "preferred_locales": ["en"],
        "expand": ["test_clock"],
        "balance": "-100",
        "invoice_settings": {"custom_fields": [{"name": "a"}]},
        "validate": "true",
    }


def test_node_sdk_update_body() -> None:
    # given stripe-node's encoding (%20 for spaces, literal brackets, null sent as key=)
    body = b"metadata[gone]=&preferred_locales[0]=en&address[line1]=1%20Main%20St"
    # when parsed
    params = parse_form(body)
    # then
    assert params == {
        "metadata": {"gone": ""},
        "preferred_locales": ["en"],
        "address": {"line1": "1 Main St"},
    }


def test_python_get_query_with_percent_encoded_brackets() -> None:
    # given a GET query as `requests` sends it: brackets percent-encoded
    query = "expand%5B0%5D=x&created%5Bgte%5D=100&limit=3"
    # when parsed
    params = parse_query(query)
    # then it is the same as with literal brackets
    assert params == {"expand": ["x"], "created": {"gte": "100"}, "limit": "3"}
    assert params == parse_query("expand[0]=x&created[gte]=100&limit=3")


def test_query_leading_question_mark_and_empty() -> None:
    assert parse_query("?limit=3") == {"limit": "3"}
    assert parse_query("") == {}
    assert parse_form(b"") == {}


def test_mixed_case_percent_encoding_of_brackets() -> None:
    assert parse_form(b"a%5bb%5d=1&c%5B%5d=2") == {"a": {"b": "1"}, "c": ["2"]}


# ---------------------------------------------------------------------------------------------------
# decoding of keys and values
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"name=Jane+Doe", "Jane Doe"),
        (b"name=Jane%20Doe", "Jane Doe"),
        (b"name=a%2Bb", "a+b"),
        (b"name=caf%C3%A9", "café"),
        (b"name=caf\xc3\xa9", "café"),  # raw UTF-8, not percent-encoded
        (b"name=%E2%82%AC%F0%9F%98%80", "€😀"),
        (b"name=a%26b%3Dc", "a&b=c"),
        (b"name=%zz", "%zz"),  # not an escape: kept literally
        (b"name=[x]", "[x]"),  # brackets in a value are just characters
        (b"name=a=b", "a=b"),  # only the first '=' splits
        (b"name", ""),  # no '=' at all
        (b"name=", ""),
    ],
)
def test_values_are_decoded(body: bytes, expected: str) -> None:
    assert parse_form(body) == {"name": expected}


def test_keys_are_decoded_too() -> None:
    assert parse_form(b"metadata[order+id]=1&metadata[caf%C3%A9]=2") == {
        "metadata": {"order id": "1", "café": "2"}
    }


def test_empty_pairs_are_skipped() -> None:
    assert parse_form(b"&a=1&&b=2&") == {"a": "1", "b": "2"}


def test_invalid_utf8_in_value_names_the_key() -> None:
    error = rejected(parse_form, b"metadata[k]=%FF")
    assert error.param == "metadata[k]"
    assert error.code == "parameter_invalid"
    assert "UTF-8" in error.message


def test_invalid_utf8_in_key_is_rejected() -> None:
    error = rejected(parse_form, b"na%C3me=x")
    assert error.param is not None and error.param.startswith("na")
    assert "UTF-8" in error.message


def test_raw_invalid_utf8_in_query_string_is_rejected() -> None:
    # given a query string as aiohttp hands raw non-UTF-8 bytes over (surrogate-escaped)
    query = b"name=\xff".decode("utf-8", "surrogateescape")
    assert rejected(parse_query, query).param == "name"
    # and a lone surrogate that cannot even be surrogate-escaped
    assert "UTF-8" in rejected(parse_query, "name=\ud800").message


def test_nul_in_key_is_rejected() -> None:
    error = rejected(parse_form, b"metadata[a%00b]=1")
    assert error.param == "metadata[a\\x00b]"
    assert "NUL" in error.message


def test_nul_in_value_is_kept_for_the_params_layer() -> None:
    assert parse_form(b"name=a%00b") == {"name": "a\x00b"}


# ---------------------------------------------------------------------------------------------------
# nesting and lists
# ---------------------------------------------------------------------------------------------------


def test_nested_objects() -> None:
    assert parse_form(b"shipping[address][city]=X&shipping[name]=N") == {
        "shipping": {"address": {"city": "X"}, "name": "N"}
    }


def test_indexed_lists_in_any_order_of_appearance() -> None:
    assert parse_form(b"a[2]=z&a[0]=x&a[1]=y") == {"a": ["x", "y", "z"]}


def test_list_of_objects() -> None:
    body = b"f[1][name]=b&f[0][name]=a&f[0][value]=1&f[1][value]=2"
    assert parse_form(body) == {"f": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}


def test_list_of_lists() -> None:
    assert parse_form(b"a[0][0]=x&a[0][1]=y&a[1][0]=z") == {"a": [["x", "y"], ["z"]]}


def test_empty_brackets_append() -> None:
    assert parse_form(b"expand[]=a&expand[]=b&types[]=") == {"expand": ["a", "b"], "types": [""]}


def test_empty_brackets_nested_inside_an_object() -> None:
    assert parse_form(b"a[b][]=1&a[b][]=2") == {"a": {"b": ["1", "2"]}}


def test_metadata_keys_that_look_like_indexes_stay_keys() -> None:
    # given metadata whose keys are digits, possibly sparse (a list would reject index 5 without 0..4)
    params = parse_form(b"metadata[5]=a&metadata[0]=b&metadata[007]=c")
    # then metadata is still an object
    assert params == {"metadata": {"5": "a", "0": "b", "007": "c"}}


def test_map_params_are_configurable() -> None:
    assert parse_form(b"labels[3]=x", maps=frozenset({"labels"})) == {"labels": {"3": "x"}}
    assert parse_form(b"metadata[0]=x", maps=frozenset()) == {"metadata": ["x"]}


def test_digit_keys_with_leading_zeros_are_object_keys() -> None:
    assert parse_form(b"a[01]=x") == {"a": {"01": "x"}}


def test_top_level_digit_keys_are_object_keys() -> None:
    assert parse_form(b"0=x&1=y") == {"0": "x", "1": "y"}


def test_max_depth_is_allowed() -> None:
    key = "a" + "".join(f"[{i}k]" for i in range(MAX_DEPTH))
    params = parse_form(f"{key}=v".encode())
    node: Any = params["a"]
    for i in range(MAX_DEPTH - 1):
        node = node[f"{i}k"]
    assert node == {f"{MAX_DEPTH - 1}k": "v"}


def test_too_deep_is_rejected() -> None:
    key = "a" + "[b]" * (MAX_DEPTH + 1)
    error = rejected(parse_form, f"{key}=v".encode())
    assert error.param == key
    assert "levels" in error.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"a=1&a=2", "a"),  # duplicate scalar
        (b"a[b]=1&a[b]=2", "a[b]"),  # duplicate nested scalar
        (b"expand[0]=a&expand[0]=b", "expand[0]"),
        (b"a=1&a[b]=2", "a"),  # scalar, then object
        (b"a[b]=2&a=1", "a"),  # object, then scalar
        (b"a=1&a[]=2", "a"),  # scalar, then list
        (b"a[b]=1&a[b][c]=2", "a[b]"),
        (b"a[b][c]=1&a[b]=2", "a[b]"),
        (b"a[0]=x&a[b]=y", "a"),  # list index mixed with object key
        (b"a[]=x&a[0]=y", "a"),  # appended mixed with indexed
        (b"a[]=x&a[b]=y", "a"),
        (b"a[1]=x", "a[1]"),  # not from 0
        (b"a[0]=x&a[2]=y", "a[2]"),  # gap
        (b"a[0]=x&a[99999999999999999999999]=y", "a[99999999999999999999999]"),
        (b"f[0][name]=a&f[2][name]=b", "f[2]"),
    ],
)
def test_conflicts_duplicates_and_gaps_are_rejected(body: bytes, param: str) -> None:
    error = rejected(parse_form, body)
    assert error.param == param
    assert error.code == "parameter_invalid"
    assert error.message


def test_gap_message_names_the_missing_index() -> None:
    assert "a[1]" in rejected(parse_form, b"a[0]=x&a[2]=y").message


@pytest.mark.parametrize(
    "key",
    [
        "[a]",  # no name before '['
        "a[b",  # unclosed
        "a]",
        "a]b[c]",
        "a[b]c",  # junk after ']'
        "a[b]]",
        "a[[b]]",
        "a[b[c]]",
        "a[][b]",  # '[]' only at the end
        "=",  # empty name
    ],
)
def test_malformed_brackets_are_rejected(key: str) -> None:
    body = key.encode() if "=" in key else f"{key}=v".encode()
    error = rejected(parse_form, body)
    assert error.code == "parameter_invalid"
    assert "parameter name" in error.message


def test_malformed_brackets_percent_encoded_are_rejected_too() -> None:
    assert rejected(parse_query, "a%5Bb=v").param == "a[b"


def test_parameter_count_limit() -> None:
    # given exactly the limit, it parses; one more is rejected
    at_limit = "&".join(f"metadata[k{i}]=v" for i in range(MAX_PARAMS)).encode()
    assert len(parse_form(at_limit)["metadata"]) == MAX_PARAMS
    error = rejected(parse_form, at_limit + b"&x=1")
    assert "at most 2000" in error.message


def test_parse_is_fast_for_a_typical_create() -> None:
    body = python_sdk_body(
        {
            "email": "jenny@example.com",
            "name": "Jenny Rosen",
            "metadata": {f"k{i}": "v" * 20 for i in range(20)},
            "address": {"line1": "1 Main St", "city": "Springfield", "country": "US"},
            "preferred_locales": ["en", "fr"],
            "invoice_settings": {"custom_fields": [{"name": "a", "value": "b"}]},
        }
    )
    start = time.perf_counter()
    for _ in range(1000):
        parse_form(body)
    per_call = (time.perf_counter() - start) / 1000
    assert per_call < 0.002  # ~30 us on a laptop; generous for slow CI


# ---------------------------------------------------------------------------------------------------
# JSON bodies
# ---------------------------------------------------------------------------------------------------


def test_json_object_body() -> None:
    body = b'{"amount": -500, "currency": "usd", "metadata": {"k": null}, "expand": ["customer"], "f": 1.5}'
    assert parse_json(body) == {
        "amount": -500,
        "currency": "usd",
        "metadata": {"k": None},
        "expand": ["customer"],
        "f": 1.5,
    }


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2]",
        b'"x"',
        b"1",
        b"null",
        b"{",
        b"{'a': 1}",
        b'{"a": NaN}',
        b"",
        b'{"a": "\xff"}',
        b'{"a": "\\ud800"}',  # lone surrogate
        b'{"a": 1e400}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_bad_json_bodies_are_rejected(body: bytes) -> None:
    error = rejected(parse_json, body)
    assert error.code == "parameter_invalid"
    assert error.message


def test_json_depth_limit() -> None:
    ok: Any = "v"
    for _ in range(MAX_DEPTH):
        ok = {"k": ok}
    assert parse_json(msgspec.json.encode({"a": ok})) == {"a": ok}
    error = rejected(parse_json, msgspec.json.encode({"a": {"k": ok}}))
    assert error.param == "a" + "[k]" * MAX_DEPTH
    # lists count as levels too
    error = rejected(parse_json, msgspec.json.encode({"a": [[[[[["v"]]]]]]}))
    assert error.param == "a[0][0][0][0][0]"


def test_json_empty_containers_at_max_depth_are_fine() -> None:
    body: Any = {}
    for _ in range(MAX_DEPTH):
        body = {"k": body}
    assert parse_json(msgspec.json.encode({"a": body})) == {"a": body}


def test_json_size_limit() -> None:
    assert len(parse_json(msgspec.json.encode({"a": list(range(MAX_PARAMS))}))["a"]) == MAX_PARAMS
    assert "at most" in rejected(parse_json, msgspec.json.encode({"a": list(range(MAX_PARAMS + 1))})).message


def test_json_nul_in_key_is_rejected() -> None:
    assert rejected(parse_json, b'{"metadata": {"a\\u0000": "x"}}').param == "metadata[a\\x00]"


# ---------------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------------

KEY = st.text(
    alphabet=st.characters(blacklist_characters="[]\x00", blacklist_categories=["Cs"]),
    min_size=1,
    max_size=6,
).filter(lambda key: not (key.isascii() and key.isdigit()))
TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=8)
SCALAR = st.one_of(TEXT, st.integers(min_value=-(2**63), max_value=2**63 - 1), st.booleans())


def trees(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return SCALAR
    below = trees(depth - 1)
    return st.one_of(
        SCALAR,
        st.lists(below, min_size=1, max_size=3),
        st.dictionaries(KEY, below, min_size=1, max_size=3),
    )


PARAMS = st.dictionaries(KEY, trees(MAX_DEPTH), max_size=5)


@settings(max_examples=300, deadline=None)
@given(PARAMS)
def test_python_sdk_encoding_round_trips(params: dict[str, Any]) -> None:
    # given any nested params (within the limits), encoded exactly as stripe-python encodes a POST body
    body = python_sdk_body(params)
    # when parsed, then we get back what was encoded (scalars as the strings the SDK sent)
    assert parse_form(body, maps=frozenset()) == as_strings(params, python=True)


@settings(max_examples=200, deadline=None)
@given(PARAMS)
def test_python_sdk_query_round_trips(params: dict[str, Any]) -> None:
    assert parse_query(python_sdk_query(params), maps=frozenset()) == as_strings(params, python=True)


@settings(max_examples=200, deadline=None)
@given(PARAMS)
def test_node_sdk_encoding_round_trips(params: dict[str, Any]) -> None:
    assert parse_form(node_sdk_body(params), maps=frozenset()) == as_strings(params)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(
            alphabet=st.characters(blacklist_characters="[]\x00", blacklist_categories=["Cs"]),
            min_size=1,
            max_size=6,
        ),
        TEXT,
        max_size=20,
    )
)
def test_metadata_round_trips_whatever_its_keys(metadata: dict[str, str]) -> None:
    # given metadata with any keys, including digits and the empty string
    params = {"metadata": metadata}
    # then it comes back as an object with the same entries
    assert parse_form(python_sdk_body(params)) == (params if metadata else {})


@settings(max_examples=200, deadline=None)
@given(PARAMS)
def test_json_round_trips(params: dict[str, Any]) -> None:
    assert parse_json(msgspec.json.encode(params)) == params


TOKENS = [b"a", b"b", b"0", b"1", b"[", b"]", b"%5B", b"%5D", b"[]", b"=", b"&", b"+", b"%", b"%FF", b"%00"]


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.lists(st.sampled_from(TOKENS), max_size=30).map(b"".join), st.binary(max_size=64)))
def test_arbitrary_bodies_parse_or_raise_invalid_parameter(body: bytes) -> None:
    try:
        params = parse_form(body)
    except InvalidParameter as error:
        assert error.message
        return
    assert isinstance(params, dict)
    assert msgspec.json.decode(msgspec.json.encode(params)) == params  # all plain str/list/dict


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_json_bodies_parse_or_raise_invalid_parameter(body: bytes) -> None:
    try:
        params = parse_json(body)
    except InvalidParameter:
        return
    assert isinstance(params, dict)
