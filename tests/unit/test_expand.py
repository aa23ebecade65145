"""service.expand: which paths each response expands, Stripe's errors for the others, and the
expanded values."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ledgerd.domain.errors import InvalidParameter
from ledgerd.service import expand

CUSTOMER: dict[str, Any] = {"id": "cus_1", "object": "customer", "balance": -500, "currency": "usd"}


def test_valid_paths_make_a_tree() -> None:
    tree = expand.parse(
        ("invoice_credit_balance", "tax", "invoice_settings.default_payment_method"), expand.CUSTOMER
    )
    assert tree == {
        "invoice_credit_balance": {},
        "tax": {},
        "invoice_settings": {"default_payment_method": {}},
    }
    nested = expand.parse(
        ("data.customer.invoice_credit_balance", "total_count"), expand.BALANCE_TRANSACTION_LIST
    )
    assert nested == {"data": {"customer": {"invoice_credit_balance": {}}}, "total_count": {}}


@pytest.mark.parametrize(
    ("root", "path", "shown"),
    [
        (expand.CUSTOMER, "metadata", "metadata"),
        (expand.CUSTOMER, "invoice_settings", "invoice_settings"),
        (expand.CUSTOMER, "tax.location", "tax.location"),
        (expand.BALANCE_TRANSACTION, "customer.nope", "customer.nope"),
        (expand.CUSTOMER_LIST, "data", "data"),
        (expand.EVENT_LIST, "data.object", "data.object"),
        (expand.NOTHING, "x", "x"),
        (expand.CUSTOMER, "", ""),
    ],
)
def test_other_paths_are_stripes_400_naming_expand(root: expand.Node, path: str, shown: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        expand.parse((path,), root)
    assert caught.value.param == "expand"
    assert caught.value.message.startswith(f"This property cannot be expanded ({shown}).")


def test_a_list_suggests_the_data_prefix() -> None:
    with pytest.raises(InvalidParameter) as caught:
        expand.parse(("customer",), expand.BALANCE_TRANSACTION_LIST)
    assert caught.value.message == (
        "This property cannot be expanded (customer). You may want to try expanding 'data.customer' instead."
    )


def test_more_than_four_levels_is_property_expansion_max_depth() -> None:
    with pytest.raises(InvalidParameter) as caught:
        expand.parse(
            ("data.customer.invoice_settings.default_payment_method.x",), expand.BALANCE_TRANSACTION_LIST
        )
    assert caught.value.code == "property_expansion_max_depth" and caught.value.param == "expand"
    assert "Property: data.customer.invoice_settings.default_payment_method.x" in caught.value.message
    # four levels are fine
    expand.parse(("data.customer.invoice_settings.default_payment_method",), expand.BALANCE_TRANSACTION_LIST)


def test_invoice_credit_balance_is_every_ledger_with_the_opposite_sign_of_balance() -> None:
    assert expand.invoice_credit_balance({"usd": -500}) == {"usd": 500}
    assert expand.invoice_credit_balance({"usd": -500, "eur": 20, "jpy": 0}) == {
        "usd": 500,
        "eur": -20,
        "jpy": 0,
    }
    assert expand.invoice_credit_balance({}) == {}


def test_expanding_a_customer_adds_only_what_was_asked() -> None:
    tree = expand.parse(("tax", "tax_ids", "sources", "subscriptions"), expand.CUSTOMER)
    expanded = expand.expand_customer(CUSTOMER, tree, {"usd": -500})
    assert expanded["tax"] == {
        "automatic_tax": "unrecognized_location",
        "ip_address": None,
        "location": None,
        "provider": "stripe",
    }
    for name in ("tax_ids", "sources", "subscriptions"):
        assert expanded[name] == {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/customers/cus_1/{name}",
        }
    assert "invoice_credit_balance" not in expanded and CUSTOMER.keys() <= expanded.keys()


def test_a_transactions_customer_is_loaded_and_expanded_itself() -> None:
    txn = {"object": "customer_balance_transaction", "customer": "cus_1"}
    loaded: list[str] = []

    async def load(customer_id: str) -> tuple[dict[str, Any], dict[str, int]] | None:
        loaded.append(customer_id)
        return CUSTOMER, {"usd": -500, "eur": 7}

    tree = expand.parse(("customer.invoice_credit_balance",), expand.BALANCE_TRANSACTION)
    expanded = asyncio.run(expand.expand_transaction(txn, tree, load))
    assert loaded == ["cus_1"]
    assert expanded["customer"] == {**CUSTOMER, "invoice_credit_balance": {"usd": 500, "eur": -7}}


def test_expandable_paths_lists_every_path_for_the_document() -> None:
    assert "customer.tax" in expand.expandable_paths(expand.BALANCE_TRANSACTION)
    assert "data.customer" in expand.expandable_paths(expand.BALANCE_TRANSACTION_LIST)
    assert expand.expandable_paths(expand.NOTHING) == []
    for path in expand.expandable_paths(expand.BALANCE_TRANSACTION_LIST):
        expand.parse((path,), expand.BALANCE_TRANSACTION_LIST)  # each one parses
