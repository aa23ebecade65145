"""The customer's field list is `domain.values.Profile`'s. Where another list of the same names must stay
its own declaration (a patch or an event type for mypy --strict and stored history, a wire type's
nullability, the SQL table), these tests fail when it drifts from the profile."""

from __future__ import annotations

import msgspec

from ledgerd.domain import validation
from ledgerd.domain.commands import ProfilePatch
from ledgerd.domain.events import CustomerChanges
from ledgerd.domain.values import PROFILE_FIELDS, Profile
from ledgerd.projections import customers
from ledgerd.projections.objects import Customer
from ledgerd.service import params, wire
from tests.integration.test_migrations import EXPECTED_COLUMNS

WIRE_ONLY = {"balance", "currency", "expand", "validate"}  # ledger facts and per-request options


def names(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    return tuple(field.name for field in msgspec.structs.fields(cls))


def test_the_patch_and_the_change_set_have_the_profiles_fields_in_its_order() -> None:
    assert names(ProfilePatch) == PROFILE_FIELDS == names(Profile)
    assert names(CustomerChanges) == (*PROFILE_FIELDS, "currency")


def test_the_request_types_take_the_profile_plus_the_ledger_facts() -> None:
    for cls in (wire.CustomerCreateParams, wire.CustomerUpdateParams):
        assert set(names(cls)) == set(PROFILE_FIELDS) | WIRE_ONLY


def test_the_customer_object_shows_every_profile_field() -> None:
    assert set(PROFILE_FIELDS) <= set(names(Customer))


def test_the_customers_table_has_a_column_per_profile_field() -> None:
    # EXPECTED_COLUMNS is what tests/integration/test_migrations.py checks the migrated database against
    table = {
        line.split(" ")[0].split(".")[1] for line in EXPECTED_COLUMNS.split() if line.startswith("customers.")
    }
    assert table == set(customers.COLUMNS)
    assert set(PROFILE_FIELDS) <= set(customers.COLUMNS)


def test_the_text_limits_and_nullable_strings_are_profile_fields() -> None:
    assert set(validation.MAX_LENGTHS) == set(params.NULLABLE_STRINGS)
    assert set(params.NULLABLE_STRINGS) <= set(PROFILE_FIELDS)
