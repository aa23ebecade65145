"""service.params: decoded params -> domain commands, with Stripe-shaped errors.

Each test parses a real wire body (form or JSON) first, so it covers what the HTTP layer will do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import UNSET

from ledgerd.domain.customer import (
    INITIAL_STATE,
    AdjustBalance,
    CreateCustomer,
    InvoiceSettingsPatch,
    ProfilePatch,
    UpdateBalanceTransaction,
    UpdateCustomer,
    UpsertCustomer,
    decide,
    fold,
    resolve_upsert,
)
from ledgerd.domain.errors import DomainError, InvalidParameter, MissingParameter
from ledgerd.domain.money import MAX_AMOUNT
from ledgerd.domain.validation import validate
from ledgerd.domain.values import Address, CustomField, InvoiceSettings, Profile, RenderingOptions, Shipping
from ledgerd.service.forms import parse_form, parse_json, parse_query
from ledgerd.service.params import (
    UNSUPPORTED_CUSTOMER_PARAMS,
    CreatedRange,
    ListParams,
    SearchParams,
    balance_transaction_create,
    balance_transaction_update,
    customer_create,
    customer_update,
    list_params,
    search_params,
)

NOW_US = 1_700_000_000_123_456
CUSTOMER_FILTERS = frozenset({"created", "email", "test_clock"})
TRANSACTION_FILTERS = frozenset({"created", "invoice"})
EVENT_FILTERS = frozenset({"created", "type", "types", "delivery_success"})


def parse(body: str | bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(body, dict):  # a JSON body
        return parse_json(msgspec.json.encode(body))
    return parse_form(body.encode() if isinstance(body, str) else body)


def create(body: str | bytes | dict[str, Any], default_currency: str | None = None) -> UpsertCustomer:
    return customer_create(
        parse(body),
        customer_id="cus_NEW",
        transaction_id="cbtxn_T",
        invoice_prefix="0759376C",
        occurred_at_us=NOW_US,
        account="acct_1",
        livemode=False,
        default_currency=default_currency,
    )


def update(body: str | bytes | dict[str, Any]) -> UpdateCustomer:
    return customer_update(parse(body), customer_id="cus_X", transaction_id="cbtxn_T", occurred_at_us=NOW_US)


def txn_create(body: str | bytes | dict[str, Any]) -> AdjustBalance:
    return balance_transaction_create(
        parse(body), customer_id="cus_X", transaction_id="cbtxn_T", occurred_at_us=NOW_US
    )


def txn_update(body: str | bytes | dict[str, Any]) -> UpdateBalanceTransaction:
    return balance_transaction_update(
        parse(body), customer_id="cus_X", transaction_id="cbtxn_T", occurred_at_us=NOW_US
    )


def error_of(call: Any, body: Any, kind: type[DomainError] = InvalidParameter) -> DomainError:
    with pytest.raises(kind) as info:
        call(body)
    return info.value


# ---------------------------------------------------------------------------------------------------
# customer create
# ---------------------------------------------------------------------------------------------------

SDK_CREATE_BODY = (
    "email=a%40b.c&metadata[order_id]=6735&metadata[x]=&address[line1]=1+Main&preferred_locales[0]=en"
    "&expand[0]=test_clock&balance=-100&invoice_settings[custom_fields][0][name]=a&validate=true"
)


def test_sdk_create_body_without_custom_field_value_is_missing_a_param() -> None:
    # given the stripe-python body, whose custom field lacks the required `value`
    # when converted, then Stripe's parameter_missing names the exact nested param
    error = error_of(create, SDK_CREATE_BODY, MissingParameter)
    assert error.code == "parameter_missing"
    assert error.param == "invoice_settings[custom_fields][0][value]"
    assert error.message == "Missing required param: invoice_settings[custom_fields][0][value]."


def test_sdk_create_body() -> None:
    # given the stripe-python body, complete
    body = SDK_CREATE_BODY + "&invoice_settings[custom_fields][0][value]=b&currency=USD"
    # when converted
    upsert = create(body)
    # then the create command carries a full profile with defaults
    command = upsert.create
    assert command == CreateCustomer(
        customer_id="cus_NEW",
        occurred_at=NOW_US,
        account="acct_1",
        livemode=False,
        profile=Profile(
            email="a@b.c",
            address=Address(line1="1 Main"),
            invoice_prefix="0759376C",
            invoice_settings=InvoiceSettings(custom_fields=(CustomField(name="a", value="b"),)),
            preferred_locales=("en",),
            metadata={"order_id": "6735"},  # metadata[x]= is "unset": absent on create
        ),
        balance=-100,
        currency="usd",
        initial_transaction_id="cbtxn_T",
    )
    # and it is valid and decides into a creation plus the initial balance entry
    validate(command)
    events = decide(command, INITIAL_STATE)
    assert [type(event).__name__ for event in events] == ["CustomerCreated", "BalanceAdjusted"]
    assert fold(events).balance == -100


def test_create_defaults() -> None:
    # given no params at all
    upsert = create("")
    # then every field takes Stripe's default, with the generated invoice prefix
    assert upsert.create.profile == Profile(invoice_prefix="0759376C")
    assert upsert.create.profile.tax_exempt == "none"
    assert upsert.create.profile.next_invoice_sequence == 1
    assert upsert.create.balance == 0
    assert upsert.create.currency is None
    assert upsert.create.initial_transaction_id is None
    assert upsert.create.occurred_at == NOW_US
    # and the upsert patch is empty
    assert upsert.update == UpdateCustomer(
        customer_id="cus_NEW", occurred_at=NOW_US, adjustment_transaction_id="cbtxn_T"
    )
    validate(upsert.create)


def test_create_empty_values_mean_defaults() -> None:
    # given every param sent empty (stripe-node sends null as key=)
    names = [
        "email",
        "name",
        "phone",
        "description",
        "business_name",
        "individual_name",
        "external_id",
        "address",
        "shipping",
        "balance",
        "currency",
        "invoice_prefix",
        "invoice_settings",
        "next_invoice_sequence",
        "preferred_locales",
        "tax_exempt",
        "metadata",
        "expand",
        "validate",
    ]
    upsert = create("&".join(f"{name}=" for name in names))
    # then the create is the same as sending nothing
    assert upsert.create == create("").create
    # and the upsert patch clears only what can be cleared (non-nullable fields are left out)
    assert upsert.update.patch == ProfilePatch(
        email=None,
        name=None,
        phone=None,
        description=None,
        business_name=None,
        individual_name=None,
        external_id=None,
        address=None,
        shipping=None,
        invoice_settings=InvoiceSettingsPatch(custom_fields=None, footer=None, rendering_options=None),
        preferred_locales=(),
        tax_exempt="none",
        metadata=None,
    )
    assert upsert.update.balance is UNSET
    assert upsert.update.currency is UNSET


def test_create_every_field() -> None:
    body = {
        "email": "jenny@example.com",
        "name": "Jenny",
        "phone": "+15555550100",
        "description": "VIP",
        "business_name": "Acme",
        "individual_name": "Jenny R",
        "external_id": "user-42",
        "address": {"line1": "1 Main", "city": "Springfield", "country": "US", "postal_code": ""},
        "shipping": {"name": "J", "address": {"line1": "2 Side"}, "phone": "123"},
        "invoice_prefix": "ACME",
        "invoice_settings": {
            "footer": "Thanks",
            "rendering_options": {"amount_tax_display": "exclude_tax", "template": ""},
            "custom_fields": [{"name": "VAT", "value": "123"}],
        },
        "next_invoice_sequence": 7,
        "preferred_locales": ["en", "fr-CA"],
        "tax_exempt": "exempt",
        "metadata": {"a": "1", "b": None},
        "balance": "250",
        "currency": "eur",
        "validate": False,
        "expand": ["tax"],
    }
    upsert = create(body)
    assert upsert.create.profile == Profile(
        email="jenny@example.com",
        name="Jenny",
        phone="+15555550100",
        description="VIP",
        business_name="Acme",
        individual_name="Jenny R",
        external_id="user-42",
        address=Address(line1="1 Main", city="Springfield", country="US", postal_code=None),
        shipping=Shipping(name="J", address=Address(line1="2 Side"), phone="123"),
        invoice_prefix="ACME",
        invoice_settings=InvoiceSettings(
            footer="Thanks",
            rendering_options=RenderingOptions(amount_tax_display="exclude_tax"),
            custom_fields=(CustomField(name="VAT", value="123"),),
        ),
        next_invoice_sequence=7,
        preferred_locales=("en", "fr-CA"),
        tax_exempt="exempt",
        metadata={"a": "1"},
    )
    assert (upsert.create.balance, upsert.create.currency) == (250, "eur")
    validate(upsert.create)
    # and the upsert patch has the very same params, metadata as a patch
    patch = upsert.update.patch
    assert patch.external_id == "user-42"
    assert patch.invoice_prefix == "ACME"
    assert patch.invoice_settings == InvoiceSettingsPatch(
        footer="Thanks",
        rendering_options=RenderingOptions(amount_tax_display="exclude_tax"),
        custom_fields=(CustomField(name="VAT", value="123"),),
    )
    assert patch.metadata == {"a": "1", "b": None}
    assert (upsert.update.balance, upsert.update.currency) == (250, "eur")
    validate(upsert.update)


def test_upsert_patch_contains_only_sent_params() -> None:
    # given a create with an external id and two fields
    upsert = create("external_id=u1&email=x%40y.z&metadata[k]=v")
    # then the patch used when u1 already exists touches only those
    assert upsert.update.patch == ProfilePatch(external_id="u1", email="x@y.z", metadata={"k": "v"})
    assert upsert.update.balance is UNSET
    assert upsert.update.currency is UNSET
    assert upsert.update.adjustment_transaction_id == "cbtxn_T"
    # and resolve_upsert runs it against the existing customer
    resolved = resolve_upsert(upsert, "cus_OLD")
    assert isinstance(resolved, UpdateCustomer) and resolved.customer_id == "cus_OLD"
    assert resolve_upsert(upsert, None) is upsert.create


def test_upsert_patch_balance_when_sent() -> None:
    upsert = create("external_id=u1&balance=-5&currency=usd")
    assert (upsert.update.balance, upsert.update.currency) == (-5, "usd")


def test_create_zero_balance_has_no_initial_transaction() -> None:
    assert create("balance=0&currency=usd").create.initial_transaction_id is None
    assert create("balance=-0").create.balance == 0


def test_create_nonzero_balance_without_currency_is_rejected_by_decide() -> None:
    command = create("balance=100").create
    validate(command)  # well formed ...
    with pytest.raises(InvalidParameter) as info:  # ... but the decider needs a currency
        decide(command, INITIAL_STATE)
    assert info.value.param == "currency"


# ---------------------------------------------------------------------------------------------------
# customer update
# ---------------------------------------------------------------------------------------------------


def test_update_patch_contains_only_sent_params() -> None:
    command = update("name=Jane&expand[]=x&validate=false")
    assert command == UpdateCustomer(
        customer_id="cus_X",
        occurred_at=NOW_US,
        patch=ProfilePatch(name="Jane"),
        adjustment_transaction_id="cbtxn_T",
    )


@pytest.mark.parametrize(
    "name", ["email", "name", "phone", "description", "business_name", "individual_name", "external_id"]
)
def test_update_empty_string_clears_a_nullable_field(name: str) -> None:
    assert getattr(update(f"{name}=").patch, name) is None


def test_update_json_null_clears_too() -> None:
    assert update({"email": None, "address": None}).patch == ProfilePatch(email=None, address=None)


@pytest.mark.parametrize(
    ("body", "field", "expected"),
    [
        ("address=", "address", None),
        ("shipping=", "shipping", None),
        ("tax_exempt=", "tax_exempt", "none"),
        ("tax_exempt=reverse", "tax_exempt", "reverse"),
        ("preferred_locales=", "preferred_locales", ()),
        ("preferred_locales[0]=de&preferred_locales[1]=en", "preferred_locales", ("de", "en")),
        ("metadata=", "metadata", None),
        ("metadata[k]=", "metadata", {"k": None}),
        ("metadata[k]=&metadata[j]=v", "metadata", {"k": None, "j": "v"}),
        ("address[city]=Paris&address[line2]=", "address", Address(city="Paris", line2=None)),
        ("invoice_settings=", "invoice_settings", InvoiceSettingsPatch(custom_fields=None, footer=None, rendering_options=None)),
        ("invoice_settings[footer]=", "invoice_settings", InvoiceSettingsPatch(footer=None)),
        ("invoice_settings[custom_fields]=", "invoice_settings", InvoiceSettingsPatch(custom_fields=None)),
        ("invoice_settings[rendering_options]=", "invoice_settings", InvoiceSettingsPatch(rendering_options=None)),
        ("invoice_settings[rendering_options][template]=t1", "invoice_settings", InvoiceSettingsPatch(rendering_options=RenderingOptions(template="t1"))),
        ("invoice_prefix=NEW1", "invoice_prefix", "NEW1"),
        ("next_invoice_sequence=42", "next_invoice_sequence", 42),
    ],
)  # fmt: skip
def test_update_field_semantics(body: str, field: str, expected: Any) -> None:
    command = update(body)
    assert getattr(command.patch, field) == expected
    validate(command)


def test_update_empty_json_metadata_object_clears_all() -> None:
    assert update({"metadata": {}}).patch.metadata is None


def test_update_metadata_merges_in_the_domain() -> None:
    # given a customer created with two metadata keys
    state = fold(decide(create("metadata[a]=1&metadata[b]=2").create, INITIAL_STATE))
    # when one key is unset and one added
    events = decide(
        msgspec.structs.replace(update("metadata[a]=&metadata[c]=3"), customer_id="cus_NEW"), state
    )
    # then the others are kept
    assert fold(events, state).profile.metadata == {"b": "2", "c": "3"}


def test_update_balance_and_currency() -> None:
    command = update("balance=-2500&currency=GBP")
    assert (command.balance, command.currency, command.adjustment_transaction_id) == (-2500, "gbp", "cbtxn_T")


@pytest.mark.parametrize("name", ["invoice_prefix", "next_invoice_sequence", "balance", "currency"])
def test_update_cannot_unset_a_field_that_always_has_a_value(name: str) -> None:
    error = error_of(update, f"{name}=")
    assert error.param == name
    assert error.code == "parameter_invalid"
    assert "cannot unset" in error.message


# ---------------------------------------------------------------------------------------------------
# errors shared by create and update
# ---------------------------------------------------------------------------------------------------

BOTH = [pytest.param(create, id="create"), pytest.param(update, id="update")]


@pytest.mark.parametrize("call", BOTH)
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ("foo=1", "foo"),
        ("email=a%40b.c&foo[bar]=1", "foo"),
        ("address[foo]=1", "address[foo]"),
        ("shipping[name]=n&shipping[address][line1]=l&shipping[carrier]=x", "shipping[carrier]"),
        ("shipping[name]=n&shipping[address][foo]=l", "shipping[address][foo]"),
        ("invoice_settings[foo]=1", "invoice_settings[foo]"),
        ("invoice_settings[custom_fields][0][name]=a&invoice_settings[custom_fields][0][value]=b"
         "&invoice_settings[custom_fields][0][x]=c", "invoice_settings[custom_fields][0][x]"),
        ("invoice_settings[rendering_options][foo]=1", "invoice_settings[rendering_options][foo]"),
        ("deleted=true", "deleted"),
        ("id=cus_1", "id"),
        ("object=customer", "object"),
    ],
)  # fmt: skip
def test_unknown_params(call: Any, body: str, param: str) -> None:
    error = error_of(call, body)
    assert error.code == "parameter_unknown"
    assert error.param == param
    assert error.message == f"Received unknown parameter: {param}"


@pytest.mark.parametrize("call", BOTH)
@pytest.mark.parametrize(
    ("body", "param"),
    [
        *[(f"{name}=x", name) for name in sorted(UNSUPPORTED_CUSTOMER_PARAMS)],
        ("tax[ip_address]=1.2.3.4", "tax"),
        ("cash_balance[settings][reconciliation_mode]=manual", "cash_balance"),
        ("tax_id_data[0][type]=eu_vat&tax_id_data[0][value]=x", "tax_id_data"),
        ("invoice_settings[default_payment_method]=pm_1", "invoice_settings[default_payment_method]"),
    ],
)
def test_unsupported_payment_params(call: Any, body: str, param: str) -> None:
    error = error_of(call, body)
    assert error.code == "parameter_unsupported"
    assert error.param == param
    assert "does not process payments" in error.message and param in error.message


@pytest.mark.parametrize("call", BOTH)
@pytest.mark.parametrize(
    ("body", "param", "shown"),
    [
        ("balance=abc", "balance", "abc"),
        ("balance=1.5", "balance", "1.5"),
        ("balance=1e3", "balance", "1e3"),
        ("balance=%2B5", "balance", "+5"),
        ("balance=+5", "balance", " 5"),  # a form "+" is a space
        ("balance=%201", "balance", " 1"),
        ("balance=1_000", "balance", "1_000"),
        ("balance=-", "balance", "-"),
        ("balance=--1", "balance", "--1"),
        ("balance=0x10", "balance", "0x10"),
        ("balance=%D9%A3", "balance", "\u0663"),  # ARABIC-INDIC DIGIT THREE: int() would accept it
        ("next_invoice_sequence=seven", "next_invoice_sequence", "seven"),
        ({"balance": 1.5}, "balance", "1.5"),
        ({"balance": 1.0}, "balance", "1.0"),
        ({"balance": True}, "balance", "true"),
    ],
)
def test_invalid_integers(call: Any, body: Any, param: str, shown: str) -> None:
    error = error_of(call, body)
    assert error.code == "parameter_invalid_integer"
    assert error.param == param
    assert error.message == f"Invalid integer: {shown}"


@pytest.mark.parametrize("call", BOTH)
@pytest.mark.parametrize(
    "value", ["9223372036854775808", "-9223372036854775809", "9" * 30, "1" * 10_000, 2**63, -(2**63) - 1]
)
def test_integers_beyond_int64_are_rejected(call: Any, value: Any) -> None:
    body = {"balance": value} if isinstance(value, int) else f"balance={value}"
    error = error_of(call, body)
    assert error.code == "parameter_invalid_integer"
    assert error.param == "balance"
    assert "out of range" in error.message


@pytest.mark.parametrize("call", BOTH)
def test_int64_bounds_parse_but_fail_validation(call: Any) -> None:
    for value in ("9223372036854775807", "-9223372036854775808", "-000000000000000000000000000000007"):
        command = call(f"balance={value}&currency=usd")
        command = command.create if isinstance(command, UpsertCustomer) else command
        assert command.balance == int(value)
    with pytest.raises(InvalidParameter) as info:
        validate(create("balance=9223372036854775807").create)
    assert info.value.param == "balance"


@pytest.mark.parametrize("call", BOTH)
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ("email[a]=b", "email"),
        ({"email": 5}, "email"),
        ({"email": True}, "email"),
        ({"email": ["a"]}, "email"),
        ("address=somewhere", "address"),
        ("address[0]=x", "address"),  # a list, not an object
        ({"address": {"line1": 1}}, "address[line1]"),
        ("shipping=x", "shipping"),
        ("preferred_locales=en", "preferred_locales"),
        ("preferred_locales[0][a]=en", "preferred_locales[0]"),
        ("metadata=x", "metadata"),
        ({"metadata": ["a"]}, "metadata"),
        ("metadata[a][b]=c", "metadata[a]"),
        ({"metadata": {"n": 5}}, "metadata[n]"),
        ("invoice_settings=x", "invoice_settings"),
        ("invoice_settings[custom_fields][name]=a", "invoice_settings[custom_fields]"),
        ("invoice_settings[custom_fields][0]=a", "invoice_settings[custom_fields][0]"),
        ("invoice_settings[rendering_options]=x", "invoice_settings[rendering_options]"),
        ("balance[a]=1", "balance"),
        ("expand=customer", "expand"),
        ("expand[0][a]=b", "expand[0]"),
        ("validate=yes", "validate"),
        ("validate[a]=true", "validate"),
        ("currency[0]=usd", "currency"),
        ("tax_exempt[a]=b", "tax_exempt"),
    ],
)
def test_wrong_types(call: Any, body: Any, param: str) -> None:
    error = error_of(call, body)
    assert error.code == "parameter_invalid"
    assert error.param == param


@pytest.mark.parametrize("call", BOTH)
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ("email=a%00b", "email"),
        ("address[line1]=a%00", "address[line1]"),
        ("shipping[name]=%00&shipping[address][city]=c", "shipping[name]"),
        ("metadata[k]=v%00", "metadata[k]"),
        ("preferred_locales[0]=en&preferred_locales[1]=%00", "preferred_locales[1]"),
        ("invoice_settings[footer]=%00", "invoice_settings[footer]"),
        ("invoice_prefix=%00", "invoice_prefix"),
        ("currency=us%00d", "currency"),
        ("expand[0]=%00", "expand[0]"),
    ],
)
def test_nul_characters_are_rejected(call: Any, body: str, param: str) -> None:
    error = error_of(call, body)
    assert error.param == param
    assert "NUL" in error.message


@pytest.mark.parametrize("call", BOTH)
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ("shipping[address][line1]=x", "shipping[name]"),
        ("shipping[name]=n", "shipping[address]"),
        ("shipping[name]=n&shipping[address]=", "shipping[address]"),
        ("invoice_settings[custom_fields][0][value]=v", "invoice_settings[custom_fields][0][name]"),
        ("invoice_settings[custom_fields][0][name]=&invoice_settings[custom_fields][0][value]=v",
         "invoice_settings[custom_fields][0][name]"),
    ],
)  # fmt: skip
def test_missing_nested_required_params(call: Any, body: str, param: str) -> None:
    error = error_of(call, body, MissingParameter)
    assert error.code == "parameter_missing"
    assert error.param == param
    assert error.message == f"Missing required param: {param}."


@pytest.mark.parametrize("call", BOTH)
@pytest.mark.parametrize("currency", ["usdd", "xxx", "us", "€", "USD ", "usn"])
def test_unknown_currency(call: Any, currency: str) -> None:
    error = error_of(call, {"currency": currency})
    assert error.code == "invalid_currency"
    assert error.param == "currency"


# ---------------------------------------------------------------------------------------------------
# validation boundaries (domain.validation runs in the handler; the commands built here must pass or
# fail it exactly at Stripe's limits)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "limit"),
    [("email", 512), ("name", 256), ("phone", 20), ("description", 5000), ("business_name", 150),
     ("individual_name", 150), ("external_id", 255)],
)  # fmt: skip
def test_length_limits(param: str, limit: int) -> None:
    def text(length: int) -> str:  # an email must also look like one
        return "a" * (length - 12) + "@example.com" if param == "email" else "a" * length

    validate(create({param: text(limit)}).create)
    validate(update({param: text(limit)}))
    for command in (create({param: text(limit + 1)}).create, update({param: text(limit + 1)})):
        with pytest.raises(InvalidParameter) as info:
            validate(command)
        assert info.value.param == param


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ({"metadata": {f"k{i}": "v" for i in range(50)}}, True),
        ({"metadata": {f"k{i}": "v" for i in range(51)}}, False),
        ({"metadata": {"k" * 40: "v"}}, True),
        ({"metadata": {"k" * 41: "v"}}, False),
        ({"metadata": {"k": "v" * 500}}, True),
        ({"metadata": {"k": "v" * 501}}, False),
        ({"invoice_prefix": "A"}, True),
        ({"invoice_prefix": "ABCDEF123456"}, True),
        ({"invoice_prefix": "ABCDEF1234567"}, False),
        ({"invoice_prefix": "abc"}, False),
        ({"next_invoice_sequence": 1}, True),
        ({"next_invoice_sequence": 0}, False),
        ({"tax_exempt": "bogus"}, False),
        ({"preferred_locales": ["en-US"]}, True),
        ({"preferred_locales": ["not a locale"]}, False),
        ({"preferred_locales": [""]}, False),
        ({"invoice_settings": {"custom_fields": [{"name": "n", "value": "v"}] * 4}}, True),
        ({"invoice_settings": {"custom_fields": [{"name": "n", "value": "v"}] * 5}}, False),
        ({"invoice_settings": {"custom_fields": [{"name": "n" * 41, "value": "v"}]}}, False),
        ({"invoice_settings": {"rendering_options": {"amount_tax_display": "include_inclusive_tax"}}}, True),
        ({"invoice_settings": {"rendering_options": {"amount_tax_display": "bogus"}}}, False),
        ({"address": {"line1": "x" * 5000}}, True),
        ({"address": {"line1": "x" * 5001}}, False),
        ({"balance": MAX_AMOUNT, "currency": "usd"}, True),
        ({"balance": -MAX_AMOUNT, "currency": "usd"}, True),
        ({"balance": MAX_AMOUNT + 1, "currency": "usd"}, False),
    ],
)
def test_validation_boundaries_on_create_and_update(body: dict[str, Any], ok: bool) -> None:
    for command in (create(body).create, update(body)):
        if ok:
            validate(command)
        else:
            with pytest.raises(InvalidParameter):
                validate(command)


def test_metadata_key_with_brackets_fails_validation() -> None:
    with pytest.raises(InvalidParameter) as info:
        validate(update({"metadata": {"a[b": "v"}}))
    assert info.value.param == "metadata[a[b]"


def test_empty_metadata_key_fails_validation() -> None:
    with pytest.raises(InvalidParameter):
        validate(create({"metadata": {"": "v"}}).create)


# ---------------------------------------------------------------------------------------------------
# balance transactions
# ---------------------------------------------------------------------------------------------------


def test_balance_transaction_create() -> None:
    command = txn_create(
        "amount=-500&currency=USD&description=Goodwill&metadata[ticket]=T-1&metadata[x]=&expand[0]=customer"
    )
    assert command == AdjustBalance(
        customer_id="cus_X",
        occurred_at=NOW_US,
        transaction_id="cbtxn_T",
        amount=-500,
        currency="usd",
        description="Goodwill",
        metadata={"ticket": "T-1"},
    )
    validate(command)


def test_balance_transaction_create_from_json() -> None:
    command = txn_create({"amount": 100, "currency": "jpy", "description": None})
    assert (command.amount, command.currency, command.description, command.metadata) == (100, "jpy", None, {})


@pytest.mark.parametrize(
    ("body", "param"),
    [("currency=usd", "amount"), ("amount=&currency=usd", "amount"), ("amount=5", "currency"),
     ("amount=5&currency=", "currency"), ({"amount": None, "currency": "usd"}, "amount"), ("", "amount")],
)  # fmt: skip
def test_balance_transaction_required_params(body: Any, param: str) -> None:
    error = error_of(txn_create, body, MissingParameter)
    assert error.code == "parameter_missing"
    assert error.param == param
    assert error.message == f"Missing required param: {param}."


def test_balance_transaction_invalid_amount() -> None:
    error = error_of(txn_create, "amount=abc&currency=usd")
    assert (error.code, error.param, error.message) == (
        "parameter_invalid_integer",
        "amount",
        "Invalid integer: abc",
    )
    assert error_of(txn_create, {"amount": 1.5, "currency": "usd"}).code == "parameter_invalid_integer"
    assert error_of(txn_create, {"amount": False, "currency": "usd"}).code == "parameter_invalid_integer"


def test_balance_transaction_invalid_currency() -> None:
    error = error_of(txn_create, "amount=5&currency=dollars")
    assert (error.code, error.param) == ("invalid_currency", "currency")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [("amount=5&currency=usd&customer=cus_Y", "customer", "parameter_unknown"),
     ("amount=5&currency=usd&type=initial", "type", "parameter_unknown"),
     ("amount=5&currency=usd&metadata[k][j]=v", "metadata[k]", "parameter_invalid"),
     ("amount=5&currency=usd&description=%00", "description", "parameter_invalid"),
     ("amount=5&currency=usd&description[a]=b", "description", "parameter_invalid")],
)  # fmt: skip
def test_balance_transaction_create_errors(body: str, param: str, code: str) -> None:
    error = error_of(txn_create, body)
    assert (error.param, error.code) == (param, code)


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ("amount=1&currency=usd", True),
        ("amount=0&currency=usd", False),
        (f"amount={MAX_AMOUNT}&currency=usd", True),
        (f"amount=-{MAX_AMOUNT}&currency=usd", True),
        (f"amount={MAX_AMOUNT + 1}&currency=usd", False),
        ("amount=1&currency=usd&description=" + "d" * 350, True),
        ("amount=1&currency=usd&description=" + "d" * 351, False),
        ("amount=1&currency=usd&" + "&".join(f"metadata[k{i}]=v" for i in range(51)), False),
    ],
)
def test_balance_transaction_validation_boundaries(body: str, ok: bool) -> None:
    command = txn_create(body)
    if ok:
        validate(command)
    else:
        with pytest.raises(InvalidParameter):
            validate(command)


def test_balance_transaction_update() -> None:
    command = txn_update("description=&metadata[a]=1&metadata[b]=")
    assert command == UpdateBalanceTransaction(
        customer_id="cus_X",
        occurred_at=NOW_US,
        transaction_id="cbtxn_T",
        description=None,
        metadata={"a": "1", "b": None},
    )
    validate(command)


def test_balance_transaction_update_only_sent_fields() -> None:
    command = txn_update("expand[0]=customer")
    assert command.description is UNSET and command.metadata is UNSET
    assert txn_update("metadata=").metadata is None
    assert txn_update({"metadata": {}}).metadata is None
    assert txn_update("description=new").description == "new"


@pytest.mark.parametrize("name", ["amount", "currency", "customer", "type"])
def test_balance_transaction_update_rejects_immutable_fields(name: str) -> None:
    error = error_of(txn_update, f"{name}=1")
    assert (error.code, error.param, error.message) == (
        "parameter_unknown",
        name,
        f"Received unknown parameter: {name}",
    )


def test_balance_transaction_update_description_limit() -> None:
    validate(txn_update("description=" + "d" * 350))
    with pytest.raises(InvalidParameter):
        validate(txn_update("description=" + "d" * 351))


# ---------------------------------------------------------------------------------------------------
# list and search
# ---------------------------------------------------------------------------------------------------


def lst(query: str, filters: frozenset[str] = CUSTOMER_FILTERS) -> ListParams:
    return list_params(parse_query(query), filters=filters)


def test_list_defaults() -> None:
    assert lst("") == ListParams(limit=10)


def test_list_python_sdk_query() -> None:
    # given the query stripe-python sends when auto-paging customers.list(limit=3, created={"gte": 100})
    params = lst(
        "limit=3&created%5Bgte%5D=100&created%5Blt%5D=200&starting_after=cus_A&expand%5B0%5D=data.tax"
    )
    assert params == ListParams(
        limit=3,
        starting_after="cus_A",
        created=CreatedRange(gte=100, lt=200),
        expand=("data.tax",),
    )


def test_list_created_exact_and_empty() -> None:
    assert lst("created=1700000000").created == CreatedRange(gte=1700000000, lte=1700000000)
    assert lst("created=").created is None
    assert lst("created[gt]=").created is None
    assert lst("created[gt]=1&created[lte]=9").created == CreatedRange(gt=1, lte=9)


@pytest.mark.parametrize("limit", ["1", "100", "007"])
def test_list_limit_in_range(limit: str) -> None:
    assert lst(f"limit={limit}").limit == int(limit)


@pytest.mark.parametrize(("limit", "code"), [("0", "parameter_invalid"), ("101", "parameter_invalid"),
                                             ("-1", "parameter_invalid"), ("ten", "parameter_invalid_integer"),
                                             ("2.5", "parameter_invalid_integer")])  # fmt: skip
def test_list_limit_out_of_range(limit: str, code: str) -> None:
    error = error_of(lst, f"limit={limit}")
    assert (error.param, error.code) == ("limit", code)


def test_list_empty_cursors_are_unset() -> None:
    assert lst("starting_after=&ending_before=&limit=") == ListParams()


def test_list_cursors_are_exclusive() -> None:
    error = error_of(lst, "starting_after=cus_A&ending_before=cus_B")
    assert error.code == "parameters_exclusive"
    assert error.message == "You may only specify one of these parameters: ending_before, starting_after."


@pytest.mark.parametrize(
    ("query", "param", "code"),
    [("created[foo]=1", "created[foo]", "parameter_unknown"),
     ("created[gt]=x", "created[gt]", "parameter_invalid_integer"),
     ("created=x", "created", "parameter_invalid_integer"),
     ("created[gt][a]=1", "created[gt]", "parameter_invalid"),
     ("starting_after[a]=b", "starting_after", "parameter_invalid"),
     ("type=customer.created", "type", "parameter_unknown"),
     ("invoice=in_1", "invoice", "parameter_unknown"),
     ("foo=1", "foo", "parameter_unknown")],
)  # fmt: skip
def test_list_errors(query: str, param: str, code: str) -> None:
    error = error_of(lst, query)
    assert (error.param, error.code) == (param, code)


def test_list_email_filter() -> None:
    assert lst("email=Jenny%40example.com").email == "Jenny@example.com"
    assert lst("email=").email is None
    assert error_of(lst, "email=" + "e" * 513).param == "email"
    assert error_of(lambda q: lst(q, TRANSACTION_FILTERS), "email=a").code == "parameter_unknown"


def test_list_balance_transaction_filters() -> None:
    assert lst("invoice=in_1&created=5", TRANSACTION_FILTERS) == ListParams(
        invoice="in_1", created=CreatedRange(gte=5, lte=5)
    )


def test_list_event_filters() -> None:
    def events(query: str) -> ListParams:
        return lst(query, EVENT_FILTERS)

    assert events("type=customer.*").type == "customer.*"
    assert events("types[]=customer.created&types[]=customer.updated").types == (
        "customer.created",
        "customer.updated",
    )
    assert events("types%5B0%5D=customer.deleted").types == ("customer.deleted",)
    assert events("delivery_success=false").delivery_success is False
    assert events("delivery_success=").delivery_success is None
    assert error_of(events, "delivery_success=no").param == "delivery_success"
    assert error_of(events, "type=a&types[0]=b").code == "parameters_exclusive"
    assert error_of(events, "types=customer.created").param == "types"
    assert error_of(events, "&".join(f"types[]=t{i}" for i in range(21))).param == "types"
    assert error_of(events, "email=a").code == "parameter_unknown"


def test_list_unknown_filter_set_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        list_params({}, filters=frozenset({"colour"}))


def test_search() -> None:
    params = search_params(
        parse_query("query=email%3A%27a%40b.c%27&limit=5&page=abc&expand%5B%5D=total_count")
    )
    assert params == SearchParams(query="email:'a@b.c'", limit=5, page="abc", expand=("total_count",))
    assert search_params({"query": "name:'x'", "page": ""}) == SearchParams(query="name:'x'")


@pytest.mark.parametrize("query", ["", "query=", "limit=5"])
def test_search_requires_a_query(query: str) -> None:
    error = error_of(lambda q: search_params(parse_query(q)), query, MissingParameter)
    assert (error.code, error.param, error.message) == (
        "parameter_missing",
        "query",
        "Missing required param: query.",
    )


@pytest.mark.parametrize(
    ("query", "param", "code"),
    [("query=x&limit=0", "limit", "parameter_invalid"), ("query=x&created=1", "created", "parameter_unknown"),
     ("query[a]=b", "query", "parameter_invalid"), ("query=x&page[a]=b", "page", "parameter_invalid")],
)  # fmt: skip
def test_search_errors(query: str, param: str, code: str) -> None:
    error = error_of(lambda q: search_params(parse_query(q)), query)
    assert (error.param, error.code) == (param, code)


# ---------------------------------------------------------------------------------------------------
# property: nothing but DomainError escapes, whatever the params
# ---------------------------------------------------------------------------------------------------

NAMES = st.sampled_from(
    [
        "email", "name", "balance", "currency", "address", "shipping", "metadata", "invoice_settings",
        "custom_fields", "rendering_options", "preferred_locales", "expand", "validate", "amount",
        "description", "limit", "created", "gt", "query", "page", "types", "line1", "value", "0", "x",
    ]
)  # fmt: skip
LEAF = st.one_of(
    st.text(max_size=5),
    st.sampled_from(["", "0", "-1", "usd", "USD", "true", "1.5", "\x00", "9" * 25]),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
TREE = st.recursive(
    LEAF,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(NAMES, children, max_size=3)),
    max_leaves=12,
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(st.dictionaries(NAMES, TREE, max_size=6))
def test_any_params_convert_or_raise_domain_errors(params: dict[str, Any]) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: customer_create(
            params,
            customer_id="cus_1",
            transaction_id="t",
            invoice_prefix="ABC",
            occurred_at_us=0,
            account="a",
            livemode=True,
        ),
        lambda: customer_update(params, customer_id="cus_1", transaction_id="t", occurred_at_us=0),
        lambda: balance_transaction_create(params, customer_id="cus_1", transaction_id="t", occurred_at_us=0),
        lambda: balance_transaction_update(params, customer_id="cus_1", transaction_id="t", occurred_at_us=0),
        lambda: list_params(params, filters=CUSTOMER_FILTERS | EVENT_FILTERS | TRANSACTION_FILTERS),
        lambda: search_params(params),
    ]
    for call in calls:
        try:
            result = call()
        except DomainError as error:
            assert error.message
            assert error.code
            continue
        if isinstance(result, UpsertCustomer):
            for command in (result.create, result.update):
                with contextlib.suppress(InvalidParameter):
                    validate(command)
        elif not isinstance(result, (ListParams, SearchParams)):
            with contextlib.suppress(InvalidParameter):
                validate(result)


# ---------------------------------------------------------------------------------------------------
# issue 13: the account's default currency, Stripe's test tokens
# ---------------------------------------------------------------------------------------------------


def test_balance_without_currency_takes_the_accounts_default() -> None:
    command = create("balance=1000", "usd")
    assert command.create.currency == "usd" and command.create.balance == 1000
    events = decide(command.create, INITIAL_STATE)
    assert fold(events).currency == "usd" and fold(events).balance == 1000
    assert create("balance=1000&currency=eur", "usd").create.currency == "eur"
    assert create("email=a%40b.co", "usd").create.currency is None  # no balance, no currency


def test_balance_without_currency_or_default_is_the_400_naming_currency() -> None:
    command = create("balance=1000", None)
    with pytest.raises(InvalidParameter) as caught:
        decide(command.create, INITIAL_STATE)
    assert caught.value.param == "currency"


def test_update_balance_uses_the_default_only_while_the_customer_has_no_currency() -> None:
    state = fold(decide(create("email=a%40b.co", None).create, INITIAL_STATE))
    patch = customer_update(
        parse("balance=-300"), customer_id="cus_NEW", transaction_id="cbtxn_U", occurred_at_us=NOW_US,
        default_currency="usd",
    )
    after = fold(decide(patch, state), state)
    assert after.currency == "usd" and after.balance == -300
    eur = fold(decide(create("balance=5&currency=eur", None).create, INITIAL_STATE))
    moved = fold(decide(msgspec.structs.replace(patch, customer_id="cus_NEW"), eur), eur)
    assert moved.currency == "eur" and moved.balance == -300  # the customer's own currency wins


@pytest.mark.parametrize("body", ["payment_method=pm_card_visa", "source=tok_visa", "source=tok_mastercard_debit"])
def test_stripe_test_tokens_are_accepted_and_ignored_on_create(body: str) -> None:
    assert create(body).create.profile == create("").create.profile


@pytest.mark.parametrize(
    ("body", "param"),
    [("payment_method=pm_1NxYz", "payment_method"), ("source=tok_1NxYzAbC", "source"),
     ("source=pm_card_visa", "source"), ("payment_method=tok_visa", "payment_method")],
)
def test_other_payment_values_stay_unsupported(body: str, param: str) -> None:
    error = error_of(create, body)
    assert error.code == "parameter_unsupported" and error.param == param
    # only create takes a test token: an update still says the ledger does not process payments
    assert error_of(update, "source=tok_visa").code == "parameter_unsupported"
