"""Money: the ISO 4217 exponent table and the bounds on one amount and on a balance."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerd.domain.money import (
    ISO_4217_EXPONENTS,
    MAX_AMOUNT,
    MAX_BALANCE,
    amount_in_bounds,
    balance_in_bounds,
    minor_unit_exponent,
    normalize_currency,
)


@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        ("jpy", 0),
        ("krw", 0),
        ("clp", 0),
        ("vnd", 0),
        ("usd", 2),
        ("eur", 2),
        ("gbp", 2),
        ("mga", 2),  # ISO says 2, although Stripe treats it as zero-decimal
        ("kwd", 3),
        ("bhd", 3),
        ("jod", 3),
        ("omr", 3),
        ("tnd", 3),
        ("iqd", 3),
        ("lyd", 3),
        ("clf", 4),
        ("uyw", 4),
    ],
)
def test_known_exponents(code: str, exponent: int) -> None:
    assert ISO_4217_EXPONENTS[code] == exponent
    assert minor_unit_exponent(code) == exponent
    assert minor_unit_exponent(code.upper()) == exponent


def test_table_shape() -> None:
    assert len(ISO_4217_EXPONENTS) > 150
    for code, exponent in ISO_4217_EXPONENTS.items():
        assert len(code) == 3 and code.isascii() and code.isalpha() and code == code.lower(), code
        assert exponent in (0, 2, 3, 4), code


@pytest.mark.parametrize("code", ["xau", "xag", "xts", "xxx", "usn", "bov", "che", "chw", "mxv"])
def test_precious_metals_test_and_fund_codes_are_not_currencies(code: str) -> None:
    assert code not in ISO_4217_EXPONENTS
    assert normalize_currency(code) is None


@pytest.mark.parametrize(("given_code", "expected"), [("usd", "usd"), ("USD", "usd"), ("Jpy", "jpy")])
def test_normalize_known(given_code: str, expected: str) -> None:
    assert normalize_currency(given_code) == expected


@pytest.mark.parametrize("code", ["", "us", "usdd", "abc", "u$d", " usd", "usd ", "dollar"])
def test_normalize_unknown_is_rejected(code: str) -> None:
    assert normalize_currency(code) is None


def test_unknown_currency_has_no_exponent() -> None:
    with pytest.raises(KeyError):
        minor_unit_exponent("abc")


def test_bounds_constants() -> None:
    assert MAX_BALANCE == 2**53 - 1  # the largest integer an IEEE double represents exactly
    assert 0 < MAX_AMOUNT < MAX_BALANCE
    assert MAX_AMOUNT == 99_999_999_999_999


@pytest.mark.parametrize(
    ("amount", "ok"),
    [
        (0, True),
        (1, True),
        (-1, True),
        (MAX_AMOUNT, True),
        (-MAX_AMOUNT, True),
        (MAX_AMOUNT + 1, False),
        (-MAX_AMOUNT - 1, False),
        (MAX_BALANCE, False),
        (2**63, False),
    ],
)
def test_amount_bounds(amount: int, ok: bool) -> None:
    assert amount_in_bounds(amount) is ok


@pytest.mark.parametrize(
    ("balance", "ok"),
    [
        (0, True),
        (MAX_BALANCE, True),
        (-MAX_BALANCE, True),
        (MAX_BALANCE + 1, False),
        (-MAX_BALANCE - 1, False),
        (2**63 - 1, False),
        (-(2**63), False),
    ],
)
def test_balance_bounds(balance: int, ok: bool) -> None:
    assert balance_in_bounds(balance) is ok


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_bounds_are_symmetric_intervals(value: int) -> None:
    assert amount_in_bounds(value) == (abs(value) <= MAX_AMOUNT)
    assert balance_in_bounds(value) == (abs(value) <= MAX_BALANCE)
    assert amount_in_bounds(value) == amount_in_bounds(-value)
