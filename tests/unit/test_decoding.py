"""service.decoding: params decoded through their wire type (strict scalars, then msgspec.convert into
the type's shape), msgspec's errors as Stripe's."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ledgerd.domain.errors import DomainError, InvalidParameter, MissingParameter
from ledgerd.service import decoding, params, wire
from ledgerd.service.forms import parse_form, parse_query


def test_a_form_body_decodes_through_the_type_with_its_scalars_converted() -> None:
    sent = decoding.decode(
        parse_form(b"amount=-5&currency=usd&metadata[a]=1&metadata[b]=&expand[0]=customer"),
        wire.TransactionCreateParams,
    )
    assert sent == {
        "amount": -5,
        "currency": "usd",
        "metadata": {"a": "1", "b": None},
        "expand": ["customer"],
    }


def test_unset_fields_are_none_and_fields_not_sent_are_absent() -> None:
    sent = decoding.decode(
        parse_form(b"email=&address[city]=Paris&address[line1]="), wire.CustomerUpdateParams
    )
    assert sent == {"email": None, "address": {"city": "Paris", "line1": None}}


def test_the_limits_are_left_to_the_domain() -> None:
    # past every limit of the type, but of the right shape: decoded (domain.validation refuses it)
    long = "x" * 10_000
    sent = decoding.decode(
        {"email": long, "tax_exempt": "bogus", "invoice_prefix": "abc"}, wire.CustomerCreateParams
    )
    assert sent == {"email": long, "tax_exempt": "bogus", "invoice_prefix": "abc"}
    with pytest.raises(msgspec.ValidationError):  # while the type itself holds them (the document's)
        msgspec.convert({"email": long}, wire.CustomerCreateParams)


@pytest.mark.parametrize(
    ("params", "kind", "param", "message"),
    [
        ({"shipping": {"address": {"line1": 1}, "name": "n"}}, InvalidParameter, "shipping[address][line1]",
         "Invalid shipping[address][line1]: expected a string, got a number."),
        ({"shipping": {"name": "n"}}, MissingParameter, "shipping[address]",
         "Missing required param: shipping[address]."),
        ({"invoice_settings": {"custom_fields": [{"name": "a"}]}}, MissingParameter,
         "invoice_settings[custom_fields][0][value]", "Missing required param: invoice_settings[custom_fields][0][value]."),
        ({"preferred_locales": [{"a": "b"}]}, InvalidParameter, "preferred_locales[0]",
         "Invalid preferred_locales[0]: expected a string, got an object."),
        ({"address": ["x"]}, InvalidParameter, "address", "Invalid address: expected an object, got an array."),
        ({"balance": "1.5"}, InvalidParameter, "balance", "Invalid integer: 1.5"),
        ({"balance": ""}, InvalidParameter, "balance",
         "You cannot unset balance: it always has a value. Pass a new value or leave it out."),
        ({"validate": "yes"}, InvalidParameter, "validate", "Invalid boolean: yes"),
        ({"address": {"zip": "1"}}, InvalidParameter, "address[zip]", "Received unknown parameter: address[zip]"),
    ],
)  # fmt: skip
def test_errors_name_the_param_in_brackets(
    params: dict[str, Any], kind: type[DomainError], param: str, message: str
) -> None:
    with pytest.raises(kind) as caught:
        decoding.decode(params, wire.CustomerUpdateParams)
    assert (type(caught.value), caught.value.param, caught.value.message) == (kind, param, message)


def test_the_list_query_type_takes_the_pagination_params_and_every_filter() -> None:
    assert wire.field_names(wire.ListQuery) == params.PAGINATION_PARAMS | params.LIST_FILTERS
    assert wire.field_names(wire.SearchQuery) == params.SEARCH_PARAMS == {"query", "limit", "page", "expand"}


@pytest.mark.parametrize(
    ("query", "created"),
    [("created=5", params.CreatedRange(gte=5, lte=5)), ("created[gt]=1&created[lt]=", params.CreatedRange(gt=1)),
     ("created[gt]=&created[lt]=", None)],
)  # fmt: skip
def test_created_is_an_instant_or_bounds(query: str, created: params.CreatedRange | None) -> None:
    assert params.list_params(parse_query(query), filters=frozenset({"created"})).created == created
