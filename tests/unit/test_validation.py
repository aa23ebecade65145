"""Stateless parameter checks (domain.validation): Stripe's limits, the currency table, amount bounds.

Every rejection must be an InvalidParameter naming the offending parameter."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerd.domain.customer import (
    AdjustBalance,
    AnyCommand,
    CreateCustomer,
    DeleteCustomer,
    InvoiceSettingsPatch,
    ProfilePatch,
    UpdateBalanceTransaction,
    UpdateCustomer,
)
from ledgerd.domain.errors import InvalidParameter
from ledgerd.domain.money import ISO_4217_EXPONENTS, MAX_AMOUNT
from ledgerd.domain.validation import validate
from ledgerd.domain.values import (
    Address,
    CustomField,
    InvoiceSettings,
    Profile,
    RenderingOptions,
    Shipping,
)

T0 = 1_700_000_000_000_000
PREFIX = "A1B2C3D4"  # Profile() leaves it empty; the API layer generates one, as Stripe does


def create(profile: Profile | None = None, **kwargs: Any) -> CreateCustomer:
    return CreateCustomer(
        customer_id="cus_1",
        occurred_at=T0,
        account="acct_1",
        livemode=False,
        profile=profile or Profile(invoice_prefix=PREFIX),
        **kwargs,
    )


def profile(**fields: Any) -> CreateCustomer:
    return create(Profile(**{"invoice_prefix": PREFIX, **fields}))


def update(**patch: Any) -> UpdateCustomer:
    return UpdateCustomer(customer_id="cus_1", occurred_at=T0, patch=ProfilePatch(**patch))


def adjust(amount: int = 100, currency: str = "usd", **kwargs: Any) -> AdjustBalance:
    return AdjustBalance(
        customer_id="cus_1",
        occurred_at=T0,
        transaction_id="cbtxn_1",
        amount=amount,
        currency=currency,
        **kwargs,
    )


def txn_update(**kwargs: Any) -> UpdateBalanceTransaction:
    return UpdateBalanceTransaction(customer_id="cus_1", occurred_at=T0, transaction_id="cbtxn_1", **kwargs)


def rejects(command: AnyCommand, param: str) -> InvalidParameter:
    with pytest.raises(InvalidParameter) as caught:
        validate(command)
    assert caught.value.param == param, caught.value.message
    return caught.value


def keys(n: int, length: int = 3) -> dict[str, str]:
    return {f"k{i:0{length - 1}d}"[:length]: "v" for i in range(n)}


# --- well-formed commands pass -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        create(),
        create(balance=500, currency="usd", initial_transaction_id="cbtxn_1"),
        create(balance=-MAX_AMOUNT, currency="kwd"),
        create(currency="jpy"),
        update(),
        update(email=None, metadata=None),
        UpdateCustomer(customer_id="cus_1", occurred_at=T0, balance=MAX_AMOUNT, currency="usd"),
        DeleteCustomer(customer_id="cus_1", occurred_at=T0),
        adjust(),
        adjust(-1, "jpy"),
        adjust(MAX_AMOUNT, "kwd", description="d" * 350, metadata=keys(50)),
        txn_update(),
        txn_update(description=None, metadata=None),
        txn_update(description="x" * 350, metadata={"a": None, "b": "c"}),
    ],
)
def test_valid_commands_pass(command: AnyCommand) -> None:
    validate(command)


def test_full_profile_at_the_limits_passes() -> None:
    validate(
        create(
            Profile(
                email="e" * 500 + "@example.com",  # 512 characters
                name="n" * 256,
                phone="1" * 20,
                description="d" * 5000,
                business_name="b" * 150,
                individual_name="i" * 150,
                external_id="x" * 255,
                address=Address(line1="l" * 5000, city="c", country="US"),
                shipping=Shipping(address=Address(line1="s"), name="n" * 5000, phone="p" * 5000),
                invoice_prefix="ABCDEF123456",
                invoice_settings=InvoiceSettings(
                    custom_fields=tuple(CustomField(name="n" * 40, value="v" * 140) for _ in range(4)),
                    footer="f" * 5000,
                    rendering_options=RenderingOptions(amount_tax_display="include_inclusive_tax"),
                ),
                next_invoice_sequence=10**9,
                preferred_locales=tuple(["en", "fr-CA", "zh-Hant-TW"] + ["de"] * 17),
                tax_exempt="reverse",
                metadata=keys(50),
            )
        )
    )


# --- currencies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(ISO_4217_EXPONENTS))
def test_every_table_currency_is_accepted(code: str) -> None:
    validate(adjust(1, code))


@pytest.mark.parametrize("code", ["USD", "Usd", "xxx", "abc", "", "usdollar", "us"])
def test_unknown_or_uppercase_currency_is_rejected(code: str) -> None:
    for command in (
        adjust(1, code),
        create(currency=code),
        UpdateCustomer(customer_id="cus_1", occurred_at=T0, currency=code),
    ):
        error = rejects(command, "currency")
        assert error.code == "invalid_currency"


# --- amounts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [MAX_AMOUNT + 1, -MAX_AMOUNT - 1, 2**53, -(2**63)])
def test_amount_out_of_bounds(amount: int) -> None:
    rejects(adjust(amount), "amount")
    rejects(create(balance=amount, currency="usd"), "balance")
    rejects(UpdateCustomer(customer_id="cus_1", occurred_at=T0, balance=amount), "balance")


def test_zero_adjustment_is_rejected() -> None:
    rejects(adjust(0), "amount")


@given(st.integers(min_value=-(2**64), max_value=2**64))
def test_amount_bound_property(amount: int) -> None:
    valid = amount != 0 and abs(amount) <= MAX_AMOUNT
    if valid:
        validate(adjust(amount))
    else:
        rejects(adjust(amount), "amount")


# --- metadata -----------------------------------------------------------------------------------------


def test_metadata_key_count() -> None:
    validate(adjust(metadata=keys(50)))
    rejects(adjust(metadata=keys(51)), "metadata")
    rejects(profile(metadata=keys(51)), "metadata")
    rejects(update(metadata=keys(51)), "metadata")
    # Removals do not count against the limit: the merged result is checked by decide.
    validate(update(metadata=dict.fromkeys(keys(51), None)))
    validate(update(metadata={**dict.fromkeys(keys(30), None), **{f"new{i}": "v" for i in range(30)}}))
    rejects(update(metadata=dict.fromkeys(keys(101, length=4), None)), "metadata")
    rejects(txn_update(metadata=keys(51)), "metadata")


def test_metadata_key_length() -> None:
    validate(adjust(metadata={"k" * 40: "v"}))
    rejects(adjust(metadata={"k" * 41: "v"}), "metadata[" + "k" * 41 + "]")


@pytest.mark.parametrize("key", ["a[b", "a]", "[x]", "", "nul\x00"])
def test_metadata_bad_keys(key: str) -> None:
    rejects(adjust(metadata={key: "v"}), f"metadata[{key}]")
    rejects(update(metadata={key: "v"}), f"metadata[{key}]")


def test_metadata_value_length() -> None:
    validate(adjust(metadata={"k": "v" * 500}))
    rejects(adjust(metadata={"k": "v" * 501}), "metadata[k]")
    rejects(profile(metadata={"k": "v" * 501}), "metadata[k]")
    rejects(txn_update(metadata={"k": "v" * 501}), "metadata[k]")
    rejects(adjust(metadata={"k": "a\x00b"}), "metadata[k]")


# --- text limits --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("email", 512),
        ("name", 256),
        ("phone", 20),
        ("description", 5000),
        ("business_name", 150),
        ("individual_name", 150),
        ("external_id", 255),
    ],
)
def test_profile_text_limits(field: str, limit: int) -> None:
    def text(length: int) -> str:  # an email must also look like one
        return "x" * (length - 12) + "@example.com" if field == "email" else "x" * length

    validate(profile(**{field: text(limit)}))
    validate(update(**{field: text(limit)}))
    rejects(profile(**{field: text(limit + 1)}), field)
    rejects(update(**{field: text(limit + 1)}), field)
    rejects(profile(**{field: "a\x00"}), field)


def test_address_and_shipping_limits() -> None:
    rejects(profile(address=Address(city="c" * 5001)), "address[city]")
    rejects(update(address=Address(postal_code="\x00")), "address[postal_code]")
    rejects(
        profile(shipping=Shipping(address=Address(line2="l" * 5001), name="n")), "shipping[address][line2]"
    )
    rejects(profile(shipping=Shipping(address=Address(), name="n" * 5001)), "shipping[name]")
    validate(update(address=None, shipping=None))


def test_balance_transaction_description_limit() -> None:
    rejects(adjust(description="d" * 351), "description")
    rejects(txn_update(description="d" * 351), "description")


@pytest.mark.parametrize("prefix", ["", "abc", "ABCDEFGHIJKLM", "AB-C", "ÄBC"])
def test_invoice_prefix(prefix: str) -> None:
    rejects(profile(invoice_prefix=prefix), "invoice_prefix")
    rejects(update(invoice_prefix=prefix), "invoice_prefix")


@pytest.mark.parametrize("sequence", [0, -1, 10**9 + 1])
def test_next_invoice_sequence(sequence: int) -> None:
    rejects(profile(next_invoice_sequence=sequence), "next_invoice_sequence")
    rejects(update(next_invoice_sequence=sequence), "next_invoice_sequence")


def test_tax_exempt() -> None:
    for value in ("none", "exempt", "reverse"):
        validate(profile(tax_exempt=value))
    rejects(profile(tax_exempt="taxable"), "tax_exempt")
    rejects(update(tax_exempt="NONE"), "tax_exempt")


def test_preferred_locales() -> None:
    rejects(profile(preferred_locales=("en",) * 21), "preferred_locales")
    rejects(profile(preferred_locales=("en", "e")), "preferred_locales[1]")
    rejects(update(preferred_locales=("en_US",)), "preferred_locales[0]")


def test_invoice_settings() -> None:
    too_many = tuple(CustomField(name="n", value="v") for _ in range(5))
    rejects(
        profile(invoice_settings=InvoiceSettings(custom_fields=too_many)), "invoice_settings[custom_fields]"
    )
    rejects(
        update(invoice_settings=InvoiceSettingsPatch(custom_fields=(CustomField(name="n" * 41, value="v"),))),
        "invoice_settings[custom_fields][0][name]",
    )
    rejects(
        profile(invoice_settings=InvoiceSettings(custom_fields=(CustomField(name="n", value="v" * 141),))),
        "invoice_settings[custom_fields][0][value]",
    )
    rejects(profile(invoice_settings=InvoiceSettings(footer="f" * 5001)), "invoice_settings[footer]")
    rejects(
        update(
            invoice_settings=InvoiceSettingsPatch(rendering_options=RenderingOptions(amount_tax_display="x"))
        ),
        "invoice_settings[rendering_options][amount_tax_display]",
    )
    rejects(
        profile(invoice_settings=InvoiceSettings(rendering_options=RenderingOptions(template="t\x00"))),
        "invoice_settings[rendering_options][template]",
    )
    rejects(
        update(
            invoice_settings=InvoiceSettingsPatch(rendering_options=RenderingOptions(template="t" * 5001))
        ),
        "invoice_settings[rendering_options][template]",
    )
    validate(update(invoice_settings=InvoiceSettingsPatch(custom_fields=None, rendering_options=None)))


# --- only InvalidParameter ever escapes, always naming a parameter -------------------------------------

text = st.text(max_size=60)
metadata = st.dictionaries(st.text(max_size=45), st.text(max_size=510), max_size=55)


@given(
    amount=st.integers(min_value=-(2**60), max_value=2**60),
    currency=st.sampled_from(["usd", "USD", "jpy", "kwd", "zzz", ""]),
    description=st.none() | st.text(max_size=360),
    meta=metadata,
)
def test_validate_only_raises_invalid_parameter_with_param(
    amount: int, currency: str, description: str | None, meta: dict[str, str]
) -> None:
    for command in (
        adjust(amount, currency, description=description, metadata=meta),
        create(
            Profile(invoice_prefix=PREFIX, email=description, metadata=meta),
            balance=amount,
            currency=currency,
        ),
        update(name=description, metadata=meta),
        txn_update(description=description, metadata=meta),
    ):
        try:
            validate(command)
        except InvalidParameter as error:
            assert error.param


# ---------------------------------------------------------------------------------------------------
# email (issue 13): Stripe's 400 email_invalid naming `email`
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    ["jenny@example.com", "a@b.c", "first.last+tag@sub.example.co.uk", "x_y-z@xn--bcher-kva.example", "A@B.IO"],
)
def test_plausible_emails_pass(email: str) -> None:
    validate(create(Profile(email=email, invoice_prefix=PREFIX)))
    validate(UpdateCustomer(customer_id="cus_1", occurred_at=T0, patch=ProfilePatch(email=email)))


@pytest.mark.parametrize(
    "email",
    ["x@com", "@localhost", "jenny\uff20example.com", " jenny@example.com", "jenny@example.com ", "jen ny@example.com",
     "jenny", "jenny@@example.com", "jenny@example..com", ".jenny@example.com", "jenny@-example.com", "jénny@example.com"],
)
def test_implausible_emails_are_email_invalid(email: str) -> None:
    for command in (
        create(Profile(email=email, invoice_prefix=PREFIX)),
        UpdateCustomer(customer_id="cus_1", occurred_at=T0, patch=ProfilePatch(email=email)),
    ):
        with pytest.raises(InvalidParameter) as caught:
            validate(command)
        assert caught.value.code == "email_invalid" and caught.value.param == "email"
        assert caught.value.message == f"Invalid email address: {email}"


def test_clearing_the_email_is_not_validated() -> None:
    validate(UpdateCustomer(customer_id="cus_1", occurred_at=T0, patch=ProfilePatch(email=None)))
