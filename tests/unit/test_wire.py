"""The wire types: the response objects the renderers build (projections.objects) and the request
params (service.wire). The renderers walk the types' fields, the document is generated from them, and
the params layer takes its accepted names from them; these tests hold the three together."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ledgerd.domain import validation
from ledgerd.domain.customer import (
    INITIAL_STATE,
    BalanceAdjusted,
    UpsertCustomer,
    decide,
    fold,
    transaction_created,
)
from ledgerd.domain.errors import InvalidParameter
from ledgerd.domain.money import MAX_AMOUNT
from ledgerd.domain.values import RenderingOptions
from ledgerd.projections import balance_transactions, customers
from ledgerd.projections import objects as wire_objects
from ledgerd.service import params, wire
from ledgerd.service.forms import parse_form, parse_json

NOW_US = 1_700_000_000_000_000
FULL_CUSTOMER = (
    "email=jenny%40example.com&name=Jenny&phone=%2B15555550100&description=VIP&business_name=Acme"
    "&individual_name=Jenny+Rosen&external_id=ext-1&address[line1]=1+Main+St&address[country]=US"
    "&shipping[name]=Jenny&shipping[address][city]=Springfield&shipping[phone]=1"
    "&invoice_settings[footer]=Thanks&invoice_settings[custom_fields][0][name]=VAT"
    "&invoice_settings[custom_fields][0][value]=GB1&invoice_settings[rendering_options][template]=t"
    "&next_invoice_sequence=7&preferred_locales[0]=en&preferred_locales[1]=fr-CA&tax_exempt=exempt"
    "&metadata[plan]=pro&balance=-500&currency=eur"
)


def create(payload: dict[str, Any]) -> UpsertCustomer:
    return params.customer_create(
        payload,
        customer_id="cus_W1",
        transaction_id="cbtxn_W1",
        invoice_prefix="0759376C",
        occurred_at_us=NOW_US,
        account="acct_1",
        livemode=False,
    )


def created_state(body: str = FULL_CUSTOMER) -> Any:
    events = decide(create(parse_form(body.encode())).create, INITIAL_STATE)
    return events, fold(events)


def rendered_fields(cls: type[msgspec.Struct]) -> list[str]:
    """The fields a response of `cls` always has, in order (expand-only fields left out)."""
    return [f.name for f in msgspec.structs.fields(cls) if f.default is not msgspec.UNSET]


def test_a_rendered_customer_is_a_valid_customer_in_field_order() -> None:
    _, state = created_state()
    rendered = wire_objects.render_customer(customers.row(state))
    assert list(rendered) == rendered_fields(wire_objects.Customer)
    # decoding checks every type and Meta limit of the declaration against what the renderer built
    customer = msgspec.convert(rendered, wire_objects.Customer)
    assert customer.balance == -500 and customer.currency == "eur"
    assert customer.shipping is not None and customer.shipping.address.city == "Springfield"
    assert customer.invoice_settings.custom_fields == [wire_objects.CustomField(name="VAT", value="GB1")]
    assert msgspec.to_builtins(customer) == rendered  # nothing dropped, nothing added


def test_a_minimal_customer_renders_the_constants_and_nulls() -> None:
    _, state = created_state("")
    rendered = wire_objects.render_customer(customers.row(state))
    customer = msgspec.convert(rendered, wire_objects.Customer)
    assert (customer.object, customer.delinquent, customer.discount, customer.test_clock) == (
        "customer",
        False,
        None,
        None,
    )
    assert rendered["invoice_settings"] == {
        "custom_fields": None,
        "default_payment_method": None,
        "footer": None,
        "rendering_options": None,
    }
    assert rendered["address"] is None and rendered["shipping"] is None


def test_a_rendered_balance_transaction_and_deleted_customer_are_valid() -> None:
    events, state = created_state()
    [adjusted] = [event for event in events if isinstance(event, BalanceAdjusted)]
    row = balance_transactions.row(transaction_created(state, adjusted))
    rendered = wire_objects.render_balance_transaction(row)
    assert list(rendered) == rendered_fields(wire_objects.CustomerBalanceTransaction)
    transaction = msgspec.convert(rendered, wire_objects.CustomerBalanceTransaction)
    assert (transaction.customer, transaction.amount, transaction.type) == ("cus_W1", -500, "initial")
    deleted = wire_objects.render_deleted_customer("cus_W1")
    assert msgspec.convert(deleted, wire_objects.DeletedCustomer) == wire_objects.DeletedCustomer(id="cus_W1")
    assert deleted == {"id": "cus_W1", "object": "customer", "deleted": True}


def test_a_rendered_event_has_the_event_fields_in_order() -> None:
    row = {
        "id": "evt_1",
        "account": "acct_1",
        "created": 1,
        "data": '{"object": {"id": "cus_1"}}',
        "livemode": False,
        "request": '{"id": null, "idempotency_key": null}',
        "type": "customer.created",
    }
    rendered = wire_objects.render_event(row)
    assert list(rendered) == rendered_fields(wire_objects.Event)
    assert rendered["data"] == {"object": {"id": "cus_1"}}
    assert (rendered["api_version"], rendered["pending_webhooks"]) == (None, 0)  # filled in when served


def test_the_params_layer_accepts_exactly_the_request_types_fields() -> None:
    assert wire.field_names(wire.CustomerCreateParams) == wire.field_names(wire.CustomerUpdateParams)
    assert wire.field_names(wire.CustomerCreateParams) == params.CUSTOMER_PARAMS
    assert set(params.NULLABLE_STRINGS) <= params.CUSTOMER_PARAMS
    assert {"amount", "currency", "description", "metadata", "expand"} == params.TRANSACTION_CREATE_PARAMS
    assert {"description", "metadata", "expand"} == params.TRANSACTION_UPDATE_PARAMS
    assert {"city", "country", "line1", "line2", "postal_code", "state"} == params.ADDRESS_PARAMS
    with pytest.raises(InvalidParameter) as caught:
        params.balance_transaction_update(
            parse_form(b"amount=1"), customer_id="cus_1", transaction_id="cbtxn_1", occurred_at_us=NOW_US
        )
    assert (caught.value.param, caught.value.code) == ("amount", "parameter_unknown")


def test_the_documented_enumerations_are_what_the_domain_accepts() -> None:
    """The request type's enums (what the document states) are exactly what validation lets through."""
    defs = msgspec.json.schema(wire.CustomerCreateParams)["$defs"]
    [tax_exempt, _] = defs["CustomerCreateParams"]["properties"]["tax_exempt"]["anyOf"]
    for value in tax_exempt["enum"]:
        validation.validate(create({"tax_exempt": value}).create)
    with pytest.raises(InvalidParameter) as caught:
        validation.validate(create({"tax_exempt": "bogus"}).create)
    assert caught.value.message == "Invalid tax_exempt: 'bogus'; must be one of none, exempt, reverse."
    [display, _] = defs["RenderingOptionsParams"]["properties"]["amount_tax_display"]["anyOf"]
    for value in display["enum"]:
        validation.validate_rendering(RenderingOptions(amount_tax_display=value))
    with pytest.raises(InvalidParameter):
        validation.validate_rendering(RenderingOptions(amount_tax_display="bogus"))


def test_request_types_forbid_unknown_fields_and_hold_the_limits() -> None:
    body = parse_json(msgspec.json.encode({"amount": -500, "currency": "usd", "metadata": {"a": "1"}}))
    decoded = msgspec.convert(body, wire.TransactionCreateParams)
    assert (decoded.amount, decoded.currency, decoded.description) == (-500, "usd", msgspec.UNSET)
    with pytest.raises(msgspec.ValidationError, match="unknown field `nope`"):
        msgspec.convert({**body, "nope": "x"}, wire.TransactionCreateParams)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**body, "amount": MAX_AMOUNT + 1}, wire.TransactionCreateParams)


@pytest.mark.parametrize("name", params.NULLABLE_STRINGS)
def test_string_limits_in_the_types_are_the_domains(name: str) -> None:
    """The documented maxLength of each customer string is exactly where the domain starts refusing."""
    limit = validation.MAX_LENGTHS[name]
    msgspec.convert({name: "a" * limit}, wire.CustomerCreateParams)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({name: "a" * (limit + 1)}, wire.CustomerCreateParams)
    value = "a" * limit if name != "email" else "a" * (limit - len("@example.com")) + "@example.com"
    validation.validate(create({name: value}).create)  # exactly at the limit: accepted
    with pytest.raises(InvalidParameter) as caught:
        validation.validate(create({name: value + "a"}).create)
    assert caught.value.param == name
