"""service.versions: the version table, resolving a request's version, and the declared gates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerd.service import versions
from ledgerd.service.errors import StripeError

CUSTOMER = {"id": "cus_1", "object": "customer", "balance": -500, "currency": "usd", "email": None}


def test_the_table_is_in_date_order_and_has_the_versions_the_issue_names() -> None:
    dates = [version[:10] for version in versions.VERSIONS]
    assert dates == sorted(dates) and len(set(versions.VERSIONS)) == len(versions.VERSIONS)
    for version in (
        "2017-06-05",
        "2019-09-09",
        "2019-10-17",
        "2020-08-27",
        "2025-03-31.basil",
        "2025-09-30.clover",
        "2026-10-28.endive",
    ):
        assert version in versions.KNOWN
    assert versions.LATEST == "2026-10-28.endive"


def test_header_overrides_the_account_default_which_overrides_the_latest() -> None:
    assert versions.resolve("2019-09-09", "2020-08-27") == "2019-09-09"
    assert versions.resolve(None, "2020-08-27") == "2020-08-27"
    assert versions.resolve(None, None) == versions.LATEST


@pytest.mark.parametrize("header", ["2019-09-10", "latest", "", "2026-10-28", "2026-10-28.ENDIVE"])
def test_an_unknown_version_is_a_400_with_stripes_message(header: str) -> None:
    with pytest.raises(StripeError) as caught:
        versions.resolve(header, None)
    assert caught.value.status == 400
    assert caught.value.message == f"Invalid Stripe API version: {header}"


def test_before_2019_10_17_a_customer_shows_account_balance_everywhere_in_a_body() -> None:
    body = {"object": "list", "data": [CUSTOMER], "has_more": False, "url": "/v1/customers"}
    old = versions.render_at(body, "2019-09-09", event_version=versions.LATEST)
    [customer] = old["data"]
    assert customer["account_balance"] == -500 and "balance" not in customer
    assert versions.render_at(CUSTOMER, "2019-10-17", event_version=versions.LATEST)["balance"] == -500


def test_before_2020_08_27_a_customer_carries_its_lists_by_default() -> None:
    old = versions.render_at(CUSTOMER, "2020-03-02", event_version=versions.LATEST)
    assert old["sources"] == {
        "object": "list",
        "data": [],
        "has_more": False,
        "total_count": 0,
        "url": "/v1/customers/cus_1/sources",
    }
    assert old["subscriptions"]["url"] == "/v1/customers/cus_1/subscriptions"
    assert old["tax_ids"]["data"] == [] and old["balance"] == -500
    assert "sources" not in versions.render_at(CUSTOMER, "2020-08-27", event_version=versions.LATEST)


def test_the_tax_fields_a_customer_had_at_each_version() -> None:
    def keys(version: str) -> set[str]:
        return set(versions.render_at(CUSTOMER, version, event_version=versions.LATEST))

    assert {"business_vat_id"} & keys("2018-07-27") and not {"tax_info", "tax_info_verification"} & keys(
        "2018-07-27"
    )
    assert {"tax_info", "tax_info_verification"} <= keys("2018-08-23") and "business_vat_id" not in keys(
        "2018-08-23"
    )
    assert {"tax_info", "tax_info_verification"} <= keys("2019-11-05")
    assert not {"tax_info", "tax_info_verification", "business_vat_id"} & keys("2019-12-03")


def test_before_2022_08_01_a_customer_shows_its_currency_as_default_currency_too() -> None:
    assert (
        versions.render_at(CUSTOMER, "2020-08-27", event_version=versions.LATEST)["default_currency"] == "usd"
    )
    assert "default_currency" not in versions.render_at(CUSTOMER, "2022-08-01", event_version=versions.LATEST)


def test_every_gate_cites_a_changelog_entry_of_a_known_version_in_date_order() -> None:
    assert [versions.ORDER[g.version] for g in versions.GATES] == sorted(
        versions.ORDER[g.version] for g in versions.GATES
    )
    assert all(g.source.startswith("https://docs.stripe.com/changelog/") for g in versions.GATES)


def test_a_deleted_stub_and_balance_transactions_are_left_alone() -> None:
    stub = {"id": "cus_1", "object": "customer", "deleted": True}
    assert versions.render_at(stub, "2017-06-05", event_version=versions.LATEST) == stub
    txn = {"object": "customer_balance_transaction", "amount": 5, "ending_balance": 5}
    assert versions.render_at(txn, "2017-06-05", event_version=versions.LATEST) == txn


def test_events_are_rendered_at_their_accounts_version_whatever_the_request() -> None:
    event = {
        "object": "event",
        "api_version": None,
        "data": {"object": CUSTOMER, "previous_attributes": {"balance": 0}},
    }
    rendered = versions.render_at(event, versions.LATEST, event_version="2019-09-09")
    assert rendered["api_version"] == "2019-09-09"
    assert rendered["data"]["object"]["account_balance"] == -500
    assert rendered["data"]["previous_attributes"] == {"account_balance": 0}
    latest = versions.render_at(event, "2019-09-09", event_version=versions.LATEST)
    assert latest["api_version"] == versions.LATEST and latest["data"]["object"]["balance"] == -500


def test_old_params_are_renamed_and_the_new_name_is_unknown_at_the_old_version() -> None:
    route = ("POST", "/v1/customers")
    params = {"account_balance": "-500", "email": "a@example.com"}
    assert versions.downgrade_params("2019-09-09", *route, params) == {
        "balance": "-500",
        "email": "a@example.com",
    }
    assert (
        versions.downgrade_params("2019-10-17", *route, params) == params
    )  # unknown: the params layer says so
    with pytest.raises(StripeError) as caught:
        versions.downgrade_params("2019-09-09", *route, {"balance": "1"})
    assert caught.value.status == 400
    assert caught.value.param == "balance" and caught.value.code == "parameter_unknown"
    other = ("POST", "/v1/customers/{customer}/balance_transactions")
    assert versions.downgrade_params("2019-09-09", *other, {"amount": "1"}) == {"amount": "1"}


def test_list_total_count_is_refused_from_basil() -> None:
    assert versions.list_total_count_allowed("2025-02-24.acacia")
    assert not versions.list_total_count_allowed("2025-03-31.basil")
    assert not versions.list_total_count_allowed(versions.LATEST)


def test_check_known_names_the_latest() -> None:
    assert versions.check_known("2019-09-09") == "2019-09-09"
    with pytest.raises(ValueError, match=versions.LATEST):
        versions.check_known("2019-9-9")


def test_the_table_is_the_installed_sdks_list_of_versions() -> None:
    """stripe-python enumerates every version in webhook endpoint create's `api_version`."""
    import inspect
    import re

    from stripe.params import _webhook_endpoint_create_params as sdk

    listed = re.findall(r'"(\d{4}-\d\d-\d\d(?:\.[a-z]+)?)"', inspect.getsource(sdk))
    assert listed and set(listed) <= versions.KNOWN
    assert sorted(listed, key=versions.ORDER.__getitem__)[-1] == versions.LATEST


def test_a_rejected_param_is_named_as_the_version_names_it() -> None:
    assert versions.old_param_name("2019-09-09", "POST", "/v1/customers", "balance") == "account_balance"
    assert versions.old_param_name("2019-09-09", "POST", "/v1/customers", "email") == "email"
    assert versions.old_param_name(versions.LATEST, "POST", "/v1/customers", "balance") == "balance"
    other = ("POST", "/v1/customers/{customer}/balance_transactions")
    assert versions.old_param_name("2019-09-09", *other, "balance") == "balance"


# ---------------------------------------------------------------------------------------------------
# properties: a gate changes customers only, and the request side undoes the response side
# ---------------------------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5)
customers = st.fixed_dictionaries(
    {"id": st.just("cus_p"), "object": st.just("customer"), "balance": st.integers(-(2**53), 2**53)},
    optional={"currency": st.sampled_from(["usd", "eur"]), "email": scalars},
)
others = st.dictionaries(st.sampled_from(["object", "amount", "balance", "x"]), scalars, max_size=4).filter(
    lambda d: d.get("object") not in ("customer", "event")
)
bodies = st.recursive(
    customers | others,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["data", "y"]), inner, max_size=2)
    ),
    max_leaves=8,
)


@given(body=bodies, version=st.sampled_from(versions.VERSIONS))
def test_the_latest_version_is_the_identity_and_non_customers_pass_through(
    body: object, version: str
) -> None:
    assert versions.render_at(body, versions.LATEST, event_version=versions.LATEST) == body
    rendered = versions.render_at(body, version, event_version=versions.LATEST)

    def customers_of(value: object) -> list[dict[str, object]]:
        if isinstance(value, list):
            return [c for item in value for c in customers_of(item)]
        if isinstance(value, dict):
            inner = [c for item in value.values() for c in customers_of(item)]
            return [value, *inner] if value.get("object") == "customer" else inner
        return []

    for before, after in zip(customers_of(body), customers_of(rendered), strict=True):
        renamed = versions.older(version, "2019-10-17")
        assert after["account_balance" if renamed else "balance"] == before["balance"]
        assert ("balance" in after) is not renamed


@given(balance=st.integers(-(2**53), 2**53), version=st.sampled_from(versions.VERSIONS))
def test_what_a_version_reads_back_it_can_send(balance: int, version: str) -> None:
    shown = versions.render_at(
        {"id": "cus_p", "object": "customer", "balance": balance}, version, event_version=versions.LATEST
    )
    sent = {name: shown[name] for name in ("balance", "account_balance") if name in shown}
    assert versions.downgrade_params(version, "POST", "/v1/customers", sent) == {"balance": balance}


def test_an_accounts_version_history_picks_the_version_in_effect_at_each_second() -> None:
    from ledgerd.service.accounts import AccountSettings

    settings = AccountSettings("2020-08-27", None, ((100.0, "2019-09-09"), (200.0, "2020-08-27")))
    assert settings.version_at(50) == "2019-09-09"  # before the first entry: the first one
    assert settings.version_at(100) == settings.version_at(199) == "2019-09-09"
    assert settings.version_at(200) == settings.version_at(10**10) == "2020-08-27"
    assert AccountSettings("2019-09-09").version_at(0) == "2019-09-09"  # no history: the current one
