"""Given/when/then tests of the customer decider: given past events, when a command, then the new events
(or the rejection, with the parameter it names). Plus: `evolve` never raises on any event sequence."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import UNSET

from ledgerd.domain.customer import (
    AdjustBalance,
    AnyCommand,
    AnyEvent,
    BalanceAdjusted,
    BalanceTransactionState,
    BalanceTransactionUpdated,
    CreateCustomer,
    CustomerChanges,
    CustomerCreated,
    CustomerDeleted,
    CustomerState,
    CustomerUpdated,
    DeleteCustomer,
    InvoiceSettingsPatch,
    ProfilePatch,
    TransactionChanges,
    UpdateBalanceTransaction,
    UpdateCustomer,
    UpsertCustomer,
    decide,
    decide_transaction_update,
    evolve,
    evolve_transaction,
    fold,
    ledgers,
    resolve_upsert,
)
from ledgerd.domain.errors import (
    BalanceOverflow,
    Conflict,
    CurrencyMismatch,
    DomainError,
    InvalidParameter,
    ResourceMissing,
)
from ledgerd.domain.money import MAX_BALANCE
from ledgerd.domain.values import Address, CustomField, InvoiceSettings, Profile, RenderingOptions

CID = "cus_1"
T0 = 1_700_000_000_123_456  # microseconds
S0 = 1_700_000_000  # the same instant in whole seconds
PROFILE = Profile(invoice_prefix="ABC123", email="a@example.com", name="Ada", metadata={"a": "1", "b": "2"})


# --- given / when / then -------------------------------------------------------------------------------


def run(given_events: Sequence[Any], when: AnyCommand) -> list[AnyEvent]:
    if isinstance(when, UpdateBalanceTransaction):
        state = BalanceTransactionState(transaction_id=when.transaction_id)
        for event in given_events:
            state = evolve_transaction(state, event)
        return decide_transaction_update(when, state)
    return decide(when, fold(list(given_events)))


def then(given_events: Sequence[Any], when: AnyCommand, expected: Sequence[Any]) -> None:
    assert run(given_events, when) == list(expected)
    # The new events must also fold: the history stays replayable.
    fold([*given_events, *expected])


def rejected(
    given_events: Sequence[Any], when: AnyCommand, error: type[DomainError], param: str
) -> DomainError:
    with pytest.raises(error) as caught:
        run(given_events, when)
    assert type(caught.value) is error
    assert caught.value.param == param
    return caught.value


# --- builders ------------------------------------------------------------------------------------------


def created(currency: str | None = None, profile: Profile = PROFILE) -> CustomerCreated:
    return CustomerCreated(
        customer_id=CID, account="acct_1", livemode=False, created=S0, profile=profile, currency=currency
    )


def adjusted(
    amount: int,
    ending: int,
    currency: str = "usd",
    txn: str = "cbtxn_1",
    kind: str = "adjustment",
    description: str | None = None,
    metadata: dict[str, str] | None = None,
) -> BalanceAdjusted:
    return BalanceAdjusted(
        customer_id=CID,
        transaction_id=txn,
        amount=amount,
        currency=currency,
        type=kind,
        ending_balance=ending,
        description=description,
        metadata=metadata or {},
        created=S0,
    )


def deleted() -> CustomerDeleted:
    return CustomerDeleted(customer_id=CID, deleted_at=S0)


def create_cmd(**kwargs: Any) -> CreateCustomer:
    values: dict[str, Any] = {"account": "acct_1", "livemode": False, "profile": PROFILE, **kwargs}
    return CreateCustomer(customer_id=CID, occurred_at=T0, **values)


def update_cmd(patch: ProfilePatch | None = None, **kwargs: Any) -> UpdateCustomer:
    return UpdateCustomer(customer_id=CID, occurred_at=T0, patch=patch or ProfilePatch(), **kwargs)


def adjust_cmd(amount: int, currency: str = "usd", txn: str = "cbtxn_2", **kwargs: Any) -> AdjustBalance:
    return AdjustBalance(
        customer_id=CID, occurred_at=T0, transaction_id=txn, amount=amount, currency=currency, **kwargs
    )


def txn_cmd(txn: str = "cbtxn_1", **kwargs: Any) -> UpdateBalanceTransaction:
    return UpdateBalanceTransaction(customer_id=CID, occurred_at=T0, transaction_id=txn, **kwargs)


def profile_update(changes: dict[str, Any], previous: dict[str, Any]) -> CustomerUpdated:
    return CustomerUpdated(
        customer_id=CID, changes=CustomerChanges(**changes), previous=CustomerChanges(**previous)
    )


DELETE = DeleteCustomer(customer_id=CID, occurred_at=T0)

# --- CreateCustomer ------------------------------------------------------------------------------------


def test_create_without_balance() -> None:
    then([], create_cmd(), [created()])


def test_create_times_are_whole_seconds() -> None:
    (event,) = run([], create_cmd())
    assert isinstance(event, CustomerCreated)
    assert event.created == T0 // 1_000_000 == S0


def test_create_with_currency_and_zero_balance_fixes_currency_without_an_entry() -> None:
    then([], create_cmd(currency="jpy"), [created("jpy")])
    assert fold([created("jpy")]).currency == "jpy"


def test_create_with_initial_balance_is_an_initial_entry() -> None:
    then(
        [],
        create_cmd(balance=500, currency="usd", initial_transaction_id="cbtxn_0"),
        [created("usd"), adjusted(500, 500, "usd", "cbtxn_0", kind="initial")],
    )


def test_create_with_initial_credit() -> None:
    then(
        [],
        create_cmd(balance=-700, currency="eur", initial_transaction_id="cbtxn_0"),
        [created("eur"), adjusted(-700, -700, "eur", "cbtxn_0", kind="initial")],
    )
    state = fold([created("eur"), adjusted(-700, -700, "eur", "cbtxn_0", kind="initial")])
    assert (state.balance, state.currency, state.entries, state.version) == (-700, "eur", 1, 2)


def test_create_non_zero_balance_requires_currency() -> None:
    rejected([], create_cmd(balance=1, initial_transaction_id="cbtxn_0"), InvalidParameter, "currency")


def test_create_non_zero_balance_requires_transaction_id() -> None:
    rejected([], create_cmd(balance=1, currency="usd"), InvalidParameter, "balance")


def test_create_existing_customer_conflicts() -> None:
    error = rejected([created()], create_cmd(), Conflict, "id")
    assert error.code == "conflict"


def test_create_over_deleted_customer_is_rejected() -> None:
    rejected([created(), deleted()], create_cmd(), Conflict, "id")


# --- UpdateCustomer ------------------------------------------------------------------------------------


def test_update_profile_field_records_previous_value() -> None:
    then(
        [created()],
        update_cmd(ProfilePatch(email="b@example.com")),
        [profile_update({"email": "b@example.com"}, {"email": "a@example.com"})],
    )


def test_update_unset_nullable_field() -> None:
    then([created()], update_cmd(ProfilePatch(name=None)), [profile_update({"name": None}, {"name": "Ada"})])
    state = fold([created(), profile_update({"name": None}, {"name": "Ada"})])
    assert state.profile.name is None
    assert state.profile.email == "a@example.com"


def test_update_with_unchanged_values_appends_nothing() -> None:
    then([created()], update_cmd(ProfilePatch(email="a@example.com", metadata={"a": "1"})), [])
    then([created()], update_cmd(), [])


def test_update_metadata_merges() -> None:
    then(
        [created()],
        update_cmd(ProfilePatch(metadata={"b": "3", "c": "4"})),
        [profile_update({"metadata": {"a": "1", "b": "3", "c": "4"}}, {"metadata": {"a": "1", "b": "2"}})],
    )


def test_update_metadata_unset_one_key() -> None:
    then(
        [created()],
        update_cmd(ProfilePatch(metadata={"a": None})),
        [profile_update({"metadata": {"b": "2"}}, {"metadata": {"a": "1", "b": "2"}})],
    )


def test_update_metadata_unset_unknown_key_appends_nothing() -> None:
    then([created()], update_cmd(ProfilePatch(metadata={"zzz": None})), [])


@pytest.mark.parametrize("clear", [None, {}])
def test_update_metadata_unset_all(clear: dict[str, str | None] | None) -> None:
    expected = [profile_update({"metadata": {}}, {"metadata": {"a": "1", "b": "2"}})]
    then([created()], update_cmd(ProfilePatch(metadata=clear)), expected)
    assert fold([created(), *expected]).profile.metadata == {}


def test_update_metadata_beyond_50_keys_is_rejected() -> None:
    full = msgspec.structs.replace(PROFILE, metadata={f"k{i}": "v" for i in range(50)})
    rejected(
        [created(profile=full)], update_cmd(ProfilePatch(metadata={"new": "v"})), InvalidParameter, "metadata"
    )
    # replacing a key keeps 50 and is fine
    (event,) = run([created(profile=full)], update_cmd(ProfilePatch(metadata={"k0": "w"})))
    assert isinstance(event, CustomerUpdated)


def test_update_invoice_settings_merges_sub_fields() -> None:
    fields = (CustomField(name="PO", value="1"),)
    profile = msgspec.structs.replace(
        PROFILE, invoice_settings=InvoiceSettings(custom_fields=fields, footer="old")
    )
    then(
        [created(profile=profile)],
        update_cmd(ProfilePatch(invoice_settings=InvoiceSettingsPatch(footer="new"))),
        [
            profile_update(
                {"invoice_settings": InvoiceSettings(custom_fields=fields, footer="new")},
                {"invoice_settings": InvoiceSettings(custom_fields=fields, footer="old")},
            )
        ],
    )
    then(
        [created(profile=profile)],
        update_cmd(
            ProfilePatch(
                invoice_settings=InvoiceSettingsPatch(
                    custom_fields=None, rendering_options=RenderingOptions(amount_tax_display="exclude_tax")
                )
            )
        ),
        [
            profile_update(
                {
                    "invoice_settings": InvoiceSettings(
                        footer="old", rendering_options=RenderingOptions(amount_tax_display="exclude_tax")
                    )
                },
                {"invoice_settings": InvoiceSettings(custom_fields=fields, footer="old")},
            )
        ],
    )


def test_update_several_fields_at_once() -> None:
    address = Address(city="Paris", country="FR")
    then(
        [created()],
        update_cmd(ProfilePatch(address=address, phone="+33", external_id="ext-1", email="a@example.com")),
        [
            profile_update(
                {"phone": "+33", "address": address, "external_id": "ext-1"},
                {"phone": None, "address": None, "external_id": None},
            )
        ],
    )


def test_update_balance_is_an_adjustment_of_the_difference() -> None:
    history = [created("usd"), adjusted(100, 100)]
    then(
        history,
        update_cmd(balance=250, adjustment_transaction_id="cbtxn_9"),
        [adjusted(150, 250, "usd", "cbtxn_9")],
    )
    then(
        history,
        update_cmd(balance=-40, adjustment_transaction_id="cbtxn_9"),
        [adjusted(-140, -40, "usd", "cbtxn_9")],
    )


def test_update_balance_to_the_current_value_appends_nothing() -> None:
    then([created("usd"), adjusted(100, 100)], update_cmd(balance=100, adjustment_transaction_id="t"), [])
    then([created()], update_cmd(balance=0), [])


def test_update_balance_without_any_currency_is_rejected() -> None:
    rejected(
        [created()], update_cmd(balance=10, adjustment_transaction_id="cbtxn_9"), InvalidParameter, "balance"
    )


def test_update_balance_without_transaction_id_is_rejected() -> None:
    rejected([created("usd")], update_cmd(balance=10), InvalidParameter, "balance")


def test_update_sets_currency_once() -> None:
    then(
        [created()],
        update_cmd(currency="kwd"),
        [profile_update({"currency": "kwd"}, {"currency": None})],
    )
    state = fold([created(), profile_update({"currency": "kwd"}, {"currency": None})])
    assert state.currency == "kwd"


def test_update_currency_and_balance_together() -> None:
    then(
        [created()],
        update_cmd(currency="usd", balance=900, adjustment_transaction_id="cbtxn_9"),
        [profile_update({"currency": "usd"}, {"currency": None}), adjusted(900, 900, "usd", "cbtxn_9")],
    )


def test_update_same_currency_appends_nothing() -> None:
    then([created("usd")], update_cmd(currency="usd"), [])
    then([created(), adjusted(5, 5, "usd")], update_cmd(currency="usd"), [])


def test_update_currency_mismatch_is_rejected() -> None:
    error = rejected([created("usd")], update_cmd(currency="eur"), CurrencyMismatch, "currency")
    assert error.code == "currency_mismatch"
    # currency fixed by the first adjustment rather than at create
    rejected([created(), adjusted(5, 5, "jpy")], update_cmd(currency="usd"), CurrencyMismatch, "currency")
    # a mismatch rejects the whole command, even with other valid changes
    rejected(
        [created("usd")],
        update_cmd(ProfilePatch(name="Bob"), currency="eur", balance=3, adjustment_transaction_id="t"),
        CurrencyMismatch,
        "currency",
    )


def test_update_profile_and_balance_together() -> None:
    then(
        [created("usd")],
        update_cmd(ProfilePatch(name="Bob"), balance=-5, adjustment_transaction_id="cbtxn_9"),
        [profile_update({"name": "Bob"}, {"name": "Ada"}), adjusted(-5, -5, "usd", "cbtxn_9")],
    )


def test_update_missing_customer() -> None:
    rejected([], update_cmd(ProfilePatch(name="x")), ResourceMissing, "id")


def test_update_deleted_customer() -> None:
    rejected([created(), deleted()], update_cmd(ProfilePatch(name="x")), ResourceMissing, "id")
    rejected(
        [created("usd"), deleted()],
        update_cmd(balance=5, adjustment_transaction_id="t"),
        ResourceMissing,
        "id",
    )
    # even a no-op update is rejected once deleted
    rejected([created(), deleted()], update_cmd(), ResourceMissing, "id")


# --- DeleteCustomer ------------------------------------------------------------------------------------


def test_delete() -> None:
    then([created()], DELETE, [deleted()])
    state = fold([created(), adjusted(5, 5), deleted()])
    assert state.deleted and state.exists and state.balance == 5 and state.version == 3


def test_delete_missing() -> None:
    rejected([], DELETE, ResourceMissing, "id")


def test_delete_twice() -> None:
    rejected([created(), deleted()], DELETE, ResourceMissing, "id")


# --- AdjustBalance -------------------------------------------------------------------------------------


def test_adjust_adds_to_the_previous_balance() -> None:
    then([created("usd"), adjusted(100, 100)], adjust_cmd(-30), [adjusted(-30, 70, txn="cbtxn_2")])


def test_adjust_carries_description_and_metadata() -> None:
    then(
        [created("usd")],
        adjust_cmd(7, description="refund", metadata={"order": "42"}),
        [adjusted(7, 7, txn="cbtxn_2", description="refund", metadata={"order": "42"})],
    )


def test_first_adjustment_fixes_the_currency() -> None:
    first = adjusted(250, 250, "eur", txn="cbtxn_2")
    then([created()], adjust_cmd(250, "eur"), [first])
    state = fold([created(), first])
    assert state.currency == "eur"
    then([created(), first], adjust_cmd(-1, "eur", txn="cbtxn_3"), [adjusted(-1, 249, "eur", txn="cbtxn_3")])
    # a later entry in another currency opens that currency's ledger; the customer's currency stays
    usd = adjusted(1, 1, "usd", txn="cbtxn_3")
    then([created(), first], adjust_cmd(1, "usd", txn="cbtxn_3"), [usd])
    after = fold([created(), first, usd])
    assert (after.currency, after.balance, ledgers(after)) == ("eur", 250, {"eur": 250, "usd": 1})


def test_an_entry_in_another_currency_goes_to_that_currencys_ledger() -> None:
    """Stripe's invoice_credit_balance buckets: `balance` stays the customer's currency's."""
    history = [created("usd"), adjusted(100, 100)]
    then(history, adjust_cmd(-30, "jpy"), [adjusted(-30, -30, "jpy", txn="cbtxn_2")])
    jpy = [*history, adjusted(-30, -30, "jpy", txn="cbtxn_2")]
    then(jpy, adjust_cmd(5, "jpy", txn="cbtxn_3"), [adjusted(5, -25, "jpy", txn="cbtxn_3")])
    then(jpy, adjust_cmd(5, "usd", txn="cbtxn_3"), [adjusted(5, 105, "usd", txn="cbtxn_3")])
    state = fold(jpy)
    assert (state.currency, state.balance, ledgers(state)) == ("usd", 100, {"usd": 100, "jpy": -30})
    # setting `balance` moves the customer's own currency's ledger only
    moved = fold([*jpy, *run(jpy, update_cmd(balance=0, adjustment_transaction_id="cbtxn_4"))])
    assert ledgers(moved) == {"usd": 0, "jpy": -30}


def test_each_currencys_ledger_has_its_own_bound() -> None:
    history = [created("usd"), adjusted(MAX_BALANCE, MAX_BALANCE)]
    then(history, adjust_cmd(MAX_BALANCE, "eur"), [adjusted(MAX_BALANCE, MAX_BALANCE, "eur", txn="cbtxn_2")])
    rejected(history, adjust_cmd(1, "usd"), BalanceOverflow, "amount")


def test_adjust_up_to_the_balance_bound_is_accepted() -> None:
    history = [created("usd"), adjusted(MAX_BALANCE - 10, MAX_BALANCE - 10)]
    then(history, adjust_cmd(10), [adjusted(10, MAX_BALANCE, txn="cbtxn_2")])
    history = [created("usd"), adjusted(-MAX_BALANCE + 10, -MAX_BALANCE + 10)]
    then(history, adjust_cmd(-10), [adjusted(-10, -MAX_BALANCE, txn="cbtxn_2")])


def test_adjust_beyond_the_balance_bound_overflows() -> None:
    history = [created("usd"), adjusted(MAX_BALANCE - 10, MAX_BALANCE - 10)]
    error = rejected(history, adjust_cmd(11), BalanceOverflow, "amount")
    assert error.code == "balance_overflow"
    history = [created("usd"), adjusted(-MAX_BALANCE, -MAX_BALANCE)]
    rejected(history, adjust_cmd(-1), BalanceOverflow, "amount")


def test_adjust_missing_customer() -> None:
    rejected([], adjust_cmd(1), ResourceMissing, "customer")


def test_adjust_deleted_customer() -> None:
    rejected([created("usd"), deleted()], adjust_cmd(1), ResourceMissing, "customer")


# --- UpdateBalanceTransaction --------------------------------------------------------------------------

ENTRY = adjusted(100, 100, description="first", metadata={"a": "1", "b": "2"})


def txn_updated(
    changes: dict[str, Any], previous: dict[str, Any], txn: str = "cbtxn_1"
) -> BalanceTransactionUpdated:
    return BalanceTransactionUpdated(
        customer_id=CID,
        transaction_id=txn,
        changes=TransactionChanges(**changes),
        previous=TransactionChanges(**previous),
    )


def test_update_transaction_description() -> None:
    then(
        [created("usd"), ENTRY],
        txn_cmd(description="second"),
        [txn_updated({"description": "second"}, {"description": "first"})],
    )
    then(
        [created("usd"), ENTRY],
        txn_cmd(description=None),
        [txn_updated({"description": None}, {"description": "first"})],
    )


def test_update_transaction_metadata_merge_unset_one_unset_all() -> None:
    history = [created("usd"), ENTRY]
    then(
        history,
        txn_cmd(metadata={"b": "3", "c": "4"}),
        [txn_updated({"metadata": {"a": "1", "b": "3", "c": "4"}}, {"metadata": {"a": "1", "b": "2"}})],
    )
    then(
        history,
        txn_cmd(metadata={"a": None}),
        [txn_updated({"metadata": {"b": "2"}}, {"metadata": ENTRY.metadata})],
    )
    then(history, txn_cmd(metadata=None), [txn_updated({"metadata": {}}, {"metadata": ENTRY.metadata})])
    then(history, txn_cmd(metadata={}), [txn_updated({"metadata": {}}, {"metadata": ENTRY.metadata})])


def test_update_transaction_without_changes_appends_nothing() -> None:
    history = [created("usd"), ENTRY]
    then(history, txn_cmd(), [])
    then(history, txn_cmd(description="first", metadata={"a": "1"}), [])


def test_update_transaction_sees_earlier_updates() -> None:
    history = [created("usd"), ENTRY, txn_updated({"description": "second"}, {"description": "first"})]
    then(history, txn_cmd(description="second"), [])
    then(
        history,
        txn_cmd(description="third", metadata={"z": "9"}),
        [
            txn_updated(
                {"description": "third", "metadata": {"a": "1", "b": "2", "z": "9"}},
                {"description": "second", "metadata": {"a": "1", "b": "2"}},
            )
        ],
    )


def test_update_transaction_only_touches_the_named_transaction() -> None:
    other = adjusted(5, 105, txn="cbtxn_2", description="other")
    history = [
        created("usd"),
        ENTRY,
        other,
        txn_updated({"description": "x"}, {"description": "other"}, "cbtxn_2"),
    ]
    then(history, txn_cmd(description="first"), [])  # cbtxn_1 is unchanged by cbtxn_2's update


def test_update_initial_transaction() -> None:
    initial = adjusted(100, 100, txn="cbtxn_0", kind="initial")
    then(
        [created("usd"), initial],
        txn_cmd("cbtxn_0", description="opening"),
        [txn_updated({"description": "opening"}, {"description": None}, "cbtxn_0")],
    )


def test_update_unknown_transaction() -> None:
    rejected([created("usd"), ENTRY], txn_cmd("cbtxn_404", description="x"), ResourceMissing, "transaction")
    rejected([created("usd")], txn_cmd(description="x"), ResourceMissing, "transaction")


def test_update_transaction_of_missing_or_deleted_customer() -> None:
    rejected([], txn_cmd(description="x"), ResourceMissing, "customer")
    rejected([created("usd"), ENTRY, deleted()], txn_cmd(description="x"), ResourceMissing, "customer")


def test_update_transaction_metadata_beyond_50_keys() -> None:
    entry = adjusted(1, 1, metadata={f"k{i}": "v" for i in range(50)})
    rejected([created("usd"), entry], txn_cmd(metadata={"new": "v"}), InvalidParameter, "metadata")


def test_decide_refuses_transaction_updates() -> None:
    with pytest.raises(TypeError):
        decide(txn_cmd(description="x"), fold([created("usd"), ENTRY]))


# --- a deleted customer rejects every command ----------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "error", "param"),
    [
        (create_cmd(), Conflict, "id"),
        (update_cmd(ProfilePatch(name="x")), ResourceMissing, "id"),
        (update_cmd(currency="usd"), ResourceMissing, "id"),
        (DELETE, ResourceMissing, "id"),
        (adjust_cmd(1), ResourceMissing, "customer"),
        (txn_cmd(description="x"), ResourceMissing, "customer"),
    ],
)
def test_deleted_customer_rejects_everything(
    command: AnyCommand, error: type[DomainError], param: str
) -> None:
    rejected([created("usd"), ENTRY, deleted()], command, error, param)


# --- upsert resolution ---------------------------------------------------------------------------------


def test_resolve_upsert() -> None:
    create = create_cmd(profile=msgspec.structs.replace(PROFILE, external_id="ext"))
    update = UpdateCustomer(customer_id="ignored", occurred_at=T0, patch=ProfilePatch(name="New"))
    upsert = UpsertCustomer(create=create, update=update)
    assert resolve_upsert(upsert, None) is create
    resolved = resolve_upsert(upsert, "cus_existing")
    assert isinstance(resolved, UpdateCustomer)
    assert resolved.customer_id == "cus_existing" and resolved.patch == update.patch


# --- evolve --------------------------------------------------------------------------------------------


def test_fold_tracks_version_balance_entries_and_currency() -> None:
    history: list[AnyEvent] = [
        created(),
        adjusted(10, 10, "jpy", "t1"),
        profile_update({"name": "B"}, {"name": "Ada"}),
        adjusted(-25, -15, "jpy", "t2"),
        txn_updated({"description": "d"}, {"description": None}, "t1"),
    ]
    state = fold(history)
    assert state == CustomerState(
        version=5,
        exists=True,
        customer_id=CID,
        account="acct_1",
        livemode=False,
        created=S0,
        profile=msgspec.structs.replace(PROFILE, name="B"),
        currency="jpy",
        balance=-15,
        entries=2,
        balances={"jpy": -15},
    )


def test_events_round_trip_through_json() -> None:
    events: list[AnyEvent] = [
        created("usd"),
        ENTRY,
        profile_update({"name": None, "metadata": {}}, {"name": "Ada", "metadata": {"a": "1"}}),
        txn_updated({"description": None}, {"description": "first"}),
        deleted(),
    ]
    for event in events:
        data = msgspec.json.encode(event)
        assert msgspec.json.decode(data, type=AnyEvent) == event


names = st.sampled_from(["Ada", "Bob", None])
currencies = st.sampled_from(["usd", "eur", "jpy", None])
amounts = st.integers(min_value=-(2**60), max_value=2**60)
metadata = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.text(max_size=3), max_size=3)
txns = st.sampled_from(["t1", "t2", "t3"])
event_strategy: st.SearchStrategy[AnyEvent] = st.one_of(
    st.builds(
        CustomerCreated,
        customer_id=st.just(CID),
        account=st.sampled_from(["acct_1", "acct_2"]),
        livemode=st.booleans(),
        created=st.integers(min_value=0, max_value=2**40),
        profile=st.builds(Profile, name=names, metadata=metadata),
        currency=currencies,
    ),
    st.builds(
        CustomerUpdated,
        customer_id=st.just(CID),
        changes=st.builds(
            CustomerChanges,
            name=st.just(UNSET) | names,
            metadata=st.just(UNSET) | metadata,
            currency=st.just(UNSET) | currencies,
        ),
        previous=st.just(CustomerChanges()),
    ),
    st.builds(
        CustomerDeleted, customer_id=st.just(CID), deleted_at=st.integers(min_value=0, max_value=2**40)
    ),
    st.builds(
        BalanceAdjusted,
        customer_id=st.just(CID),
        transaction_id=txns,
        amount=amounts,
        currency=st.sampled_from(["usd", "eur", "jpy"]),
        type=st.sampled_from(["adjustment", "initial"]),
        ending_balance=amounts,
        description=st.none() | st.text(max_size=3),
        metadata=metadata,
        created=st.integers(min_value=0, max_value=2**40),
    ),
    st.builds(
        BalanceTransactionUpdated,
        customer_id=st.just(CID),
        transaction_id=txns,
        changes=st.builds(
            TransactionChanges,
            description=st.just(UNSET) | st.none() | st.text(max_size=3),
            metadata=st.just(UNSET) | metadata,
        ),
        previous=st.just(TransactionChanges()),
    ),
)


@pytest.mark.slow
@settings(max_examples=200)
@given(st.lists(event_strategy, max_size=25), txns)
def test_evolve_never_raises(events: list[AnyEvent], txn: str) -> None:
    state = fold(events)
    assert state.version == len(events)
    txn_state = BalanceTransactionState(transaction_id=txn)
    for event in events:
        txn_state = evolve_transaction(txn_state, event)
    assert txn_state.customer == state
    # evolve is pure: folding again gives the same state
    assert fold(events) == state
    # and decide, on any reachable state, either returns events or raises a DomainError
    for command in (
        adjust_cmd(1, "usd"),
        update_cmd(ProfilePatch(name="Zed", metadata={"a": None}), balance=3, adjustment_transaction_id="t9"),
        DELETE,
        create_cmd(),
    ):
        try:
            new = decide(command, state)
        except DomainError:
            continue
        for event in new:
            state_after = evolve(state, event)
            assert state_after.version == state.version + 1
            state = state_after
    with contextlib.suppress(DomainError):
        decide_transaction_update(txn_cmd(txn, description="d"), txn_state)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.integers(min_value=-(10**14), max_value=10**14), st.sampled_from(["usd", "eur"])),
        max_size=30,
    ),
    st.sampled_from(["usd", "eur", None]),
)
def test_adjustments_keep_the_ledger_chain(adjustments: list[tuple[int, str]], currency: str | None) -> None:
    """Decide + evolve over random adjustments in mixed currencies, per currency: balance = sum of the
    accepted amounts = last ending balance, every ending balance = previous + amount; the customer's
    currency is fixed once set and `balance` is that currency's."""
    state = fold([created(currency)])
    accepted: list[BalanceAdjusted] = []
    for index, (amount, code) in enumerate(adjustments):
        before = state
        try:
            events = decide(adjust_cmd(amount, code, txn=f"t{index}"), state)
        except BalanceOverflow:
            assert abs(ledgers(before).get(code, 0) + amount) > MAX_BALANCE
            assert state == before
            continue
        (event,) = events
        assert isinstance(event, BalanceAdjusted)
        assert event.ending_balance == ledgers(before).get(code, 0) + amount
        state = evolve(state, event)
        accepted.append(event)
        assert state.currency == (before.currency or code)
    for code in {"usd", "eur"}:
        mine = [event for event in accepted if event.currency == code]
        assert ledgers(state).get(code, 0) == sum(event.amount for event in mine)
        assert ledgers(state).get(code, 0) == (mine[-1].ending_balance if mine else 0)
    first = currency or (accepted[0].currency if accepted else None)
    assert state.currency == first
    assert state.balance == ledgers(state).get(first, 0) if first else state.balance == 0
