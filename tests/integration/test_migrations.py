"""Migrations: building a database from the numbered SQL files gives exactly the expected schema;
migrating again is a no-op; concurrent migrators are safe; an edited applied file is refused."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from ledgerd.service.migrate import Migration, MigrationError, apply_migrations, bundled_migrations, migrate

MIGRATIONS = [
    "0001_event_store.sql",
    "0002_projections.sql",
    "0003_api_keys_and_events.sql",
    "0004_stream_snapshots.sql",
    "0005_service_role.sql",
    "0006_event_canonical_bytes.sql",
    "0007_begin_command.sql",
    "0008_begin_batch.sql",
    "0011_one_statement_commands.sql",
    "0012_webhooks.sql",
    "0014_account_settings.sql",
    "0015_account_api_versions.sql",
]

# table.column  type  nullability  [default]  (from information_schema.columns)
EXPECTED_COLUMNS = """
account_api_versions.account text NOT NULL
account_api_versions.effective_at timestamp_with_time_zone NOT NULL now()
account_api_versions.api_version text NOT NULL
account_settings.account text NOT NULL
account_settings.api_version text NULL
account_settings.default_currency text NULL
account_settings.updated_at timestamp_with_time_zone NOT NULL now()
api_keys.id text NOT NULL
api_keys.account text NOT NULL
api_keys.livemode boolean NOT NULL
api_keys.prefix text NOT NULL
api_keys.secret_hash bytea NOT NULL
api_keys.created_at timestamp_with_time_zone NOT NULL now()
api_keys.revoked_at timestamp_with_time_zone NULL
balance_transactions.id text NOT NULL
balance_transactions.customer_id text NOT NULL
balance_transactions.account text NOT NULL
balance_transactions.livemode boolean NOT NULL
balance_transactions.position bigint NOT NULL
balance_transactions.version bigint NOT NULL
balance_transactions.type text NOT NULL
balance_transactions.amount bigint NOT NULL
balance_transactions.currency text NOT NULL
balance_transactions.ending_balance bigint NOT NULL
balance_transactions.description text NULL
balance_transactions.metadata jsonb NOT NULL
balance_transactions.created bigint NOT NULL
customers.id text NOT NULL
customers.account text NOT NULL
customers.livemode boolean NOT NULL
customers.position bigint NOT NULL
customers.version bigint NOT NULL
customers.created bigint NOT NULL
customers.deleted boolean NOT NULL false
customers.email text NULL
customers.name text NULL
customers.phone text NULL
customers.description text NULL
customers.business_name text NULL
customers.individual_name text NULL
customers.address jsonb NULL
customers.shipping jsonb NULL
customers.invoice_prefix text NOT NULL
customers.invoice_settings jsonb NOT NULL
customers.next_invoice_sequence bigint NOT NULL
customers.preferred_locales jsonb NOT NULL
customers.tax_exempt text NOT NULL
customers.metadata jsonb NOT NULL
customers.external_id text NULL
customers.balance bigint NOT NULL
customers.currency text NULL
customers.balances jsonb NOT NULL '{}'::jsonb
events.position bigint NOT NULL IDENTITY
events.tx_id bigint NOT NULL ((pg_current_xact_id())::text)::bigint
events.stream_id text NOT NULL
events.stream_version bigint NOT NULL
events.event_id text NOT NULL
events.event_type text NOT NULL
events.schema_version integer NOT NULL
events.data jsonb NOT NULL
events.metadata jsonb NOT NULL
events.recorded_at timestamp_with_time_zone NOT NULL
events.hash bytea NOT NULL
events.canonical bytea NULL
external_id_claims.account text NOT NULL
external_id_claims.livemode boolean NOT NULL
external_id_claims.external_id text NOT NULL
external_id_claims.customer_id text NOT NULL
idempotency_keys.account text NOT NULL
idempotency_keys.livemode boolean NOT NULL
idempotency_keys.key text NOT NULL
idempotency_keys.method text NOT NULL
idempotency_keys.path text NOT NULL
idempotency_keys.params_hash bytea NOT NULL
idempotency_keys.params jsonb NOT NULL
idempotency_keys.status integer NOT NULL
idempotency_keys.response bytea NOT NULL
idempotency_keys.request_id text NULL
idempotency_keys.created_at timestamp_with_time_zone NOT NULL now()
schema_migrations.name text NOT NULL
schema_migrations.checksum text NOT NULL
schema_migrations.applied_at timestamp_with_time_zone NOT NULL now()
streams.stream_id text NOT NULL
streams.stream_type text NOT NULL
streams.account text NOT NULL
streams.livemode boolean NOT NULL
streams.version bigint NOT NULL
streams.head_hash bytea NOT NULL
streams.created_at timestamp_with_time_zone NOT NULL now()
streams.updated_at timestamp_with_time_zone NOT NULL now()
streams.snapshot jsonb NULL
streams.recorded_at timestamp_with_time_zone NULL
stripe_events.id text NOT NULL
stripe_events.account text NOT NULL
stripe_events.livemode boolean NOT NULL
stripe_events.position bigint NOT NULL
stripe_events.seq smallint NOT NULL
stripe_events.type text NOT NULL
stripe_events.created bigint NOT NULL
stripe_events.customer_id text NOT NULL
stripe_events.data jsonb NOT NULL
stripe_events.request jsonb NOT NULL
webhook_attempts.id bigint NOT NULL IDENTITY
webhook_attempts.delivery_id bigint NOT NULL
webhook_attempts.event_id text NOT NULL
webhook_attempts.endpoint_id text NOT NULL
webhook_attempts.at timestamp_with_time_zone NOT NULL
webhook_attempts.status_code integer NULL
webhook_attempts.error text NULL
webhook_attempts.latency_ms integer NOT NULL
webhook_attempts.response bytea NOT NULL
webhook_attempts.next_attempt_at timestamp_with_time_zone NULL
webhook_attempts.manual boolean NOT NULL false
webhook_deliveries.id bigint NOT NULL IDENTITY
webhook_deliveries.event_id text NOT NULL
webhook_deliveries.endpoint_id text NOT NULL
webhook_deliveries.account text NOT NULL
webhook_deliveries.livemode boolean NOT NULL
webhook_deliveries.event_position bigint NOT NULL
webhook_deliveries.event_seq smallint NOT NULL
webhook_deliveries.event_recorded_at timestamp_with_time_zone NOT NULL
webhook_deliveries.state text NOT NULL 'pending'::text
webhook_deliveries.attempts integer NOT NULL 0
webhook_deliveries.manual boolean NOT NULL false
webhook_deliveries.due_at timestamp_with_time_zone NOT NULL
webhook_deliveries.lease_until timestamp_with_time_zone NULL
webhook_deliveries.lease_owner text NULL
webhook_deliveries.created_at timestamp_with_time_zone NOT NULL now()
webhook_deliveries.delivered_at timestamp_with_time_zone NULL
webhook_dispatch_checkpoint.name text NOT NULL
webhook_dispatch_checkpoint.tx_id bigint NOT NULL
webhook_dispatch_checkpoint.position bigint NOT NULL
webhook_dispatch_checkpoint.seq integer NOT NULL
webhook_dispatch_checkpoint.updated_at timestamp_with_time_zone NOT NULL now()
webhook_endpoints.id text NOT NULL
webhook_endpoints.account text NOT NULL
webhook_endpoints.livemode boolean NOT NULL
webhook_endpoints.position bigint NOT NULL IDENTITY
webhook_endpoints.url text NOT NULL
webhook_endpoints.enabled_events ARRAY NOT NULL
webhook_endpoints.description text NULL
webhook_endpoints.metadata jsonb NOT NULL '{}'::jsonb
webhook_endpoints.api_version text NULL
webhook_endpoints.status text NOT NULL 'enabled'::text
webhook_endpoints.disabled_reason text NULL
webhook_endpoints.secret text NOT NULL
webhook_endpoints.previous_secret text NULL
webhook_endpoints.previous_secret_expires_at timestamp_with_time_zone NULL
webhook_endpoints.created bigint NOT NULL
webhook_endpoints.deleted boolean NOT NULL false
webhook_endpoints.failing_since timestamp_with_time_zone NULL
webhook_endpoints.updated_at timestamp_with_time_zone NOT NULL now()
webhook_endpoints.forwarder boolean NOT NULL false
webhook_subscriptions.endpoint_id text NOT NULL
webhook_subscriptions.valid_from timestamp_with_time_zone NOT NULL
webhook_subscriptions.seq bigint NOT NULL IDENTITY
webhook_subscriptions.enabled_events ARRAY NOT NULL
webhook_subscriptions.active boolean NOT NULL
"""

EXPECTED_INDEXES = {
    "account_api_versions_pkey": (
        "CREATE UNIQUE INDEX account_api_versions_pkey ON public.account_api_versions USING btree (account, effective_at)"
    ),
    "account_settings_pkey": "CREATE UNIQUE INDEX account_settings_pkey ON public.account_settings USING btree (account)",
    "api_keys_pkey": "CREATE UNIQUE INDEX api_keys_pkey ON public.api_keys USING btree (id)",
    "api_keys_prefix": "CREATE INDEX api_keys_prefix ON public.api_keys USING btree (prefix)",
    "api_keys_secret_hash_key": "CREATE UNIQUE INDEX api_keys_secret_hash_key ON public.api_keys USING btree (secret_hash)",
    "balance_transactions_by_customer": "CREATE INDEX balance_transactions_by_customer ON public.balance_transactions "
    'USING btree (customer_id, "position" DESC)',
    "balance_transactions_pkey": "CREATE UNIQUE INDEX balance_transactions_pkey ON public.balance_transactions "
    "USING btree (id)",
    "customers_by_account": "CREATE INDEX customers_by_account ON public.customers "
    'USING btree (account, livemode, "position" DESC) WHERE (NOT deleted)',
    "customers_by_email": "CREATE INDEX customers_by_email ON public.customers "
    "USING btree (account, livemode, lower(email)) WHERE (NOT deleted)",
    "customers_by_external_id": "CREATE INDEX customers_by_external_id ON public.customers "
    "USING btree (account, livemode, external_id) WHERE ((external_id IS NOT NULL) AND (NOT deleted))",
    "customers_pkey": "CREATE UNIQUE INDEX customers_pkey ON public.customers USING btree (id)",
    "events_event_id_key": "CREATE UNIQUE INDEX events_event_id_key ON public.events USING btree (event_id)",
    "events_global_order": 'CREATE INDEX events_global_order ON public.events USING btree (tx_id, "position")',
    "events_pkey": "CREATE UNIQUE INDEX events_pkey ON public.events USING btree (stream_id, stream_version)",
    "events_position_key": 'CREATE UNIQUE INDEX events_position_key ON public.events USING btree ("position")',
    "events_recorded_at": "CREATE INDEX events_recorded_at ON public.events USING btree (recorded_at)",
    "events_by_transaction": "CREATE INDEX events_by_transaction ON public.events "
    "USING btree (stream_id, ((data ->> 'transaction_id'::text))) WHERE (data ? 'transaction_id'::text)",
    "external_id_claims_pkey": "CREATE UNIQUE INDEX external_id_claims_pkey ON public.external_id_claims "
    "USING btree (account, livemode, external_id)",
    "idempotency_keys_created_at": "CREATE INDEX idempotency_keys_created_at ON public.idempotency_keys "
    "USING btree (created_at)",
    "idempotency_keys_pkey": "CREATE UNIQUE INDEX idempotency_keys_pkey ON public.idempotency_keys "
    "USING btree (account, livemode, key)",
    "schema_migrations_pkey": "CREATE UNIQUE INDEX schema_migrations_pkey ON public.schema_migrations USING btree (name)",
    "streams_pkey": "CREATE UNIQUE INDEX streams_pkey ON public.streams USING btree (stream_id)",
    "stripe_events_by_account": "CREATE INDEX stripe_events_by_account ON public.stripe_events "
    'USING btree (account, livemode, "position" DESC, seq DESC)',
    "stripe_events_by_type": "CREATE INDEX stripe_events_by_type ON public.stripe_events "
    'USING btree (account, livemode, type, "position" DESC, seq DESC)',
    "stripe_events_order_key": "CREATE UNIQUE INDEX stripe_events_order_key ON public.stripe_events "
    'USING btree ("position", seq)',
    "stripe_events_pkey": "CREATE UNIQUE INDEX stripe_events_pkey ON public.stripe_events USING btree (id)",
    'webhook_attempts_by_delivery': 'CREATE INDEX webhook_attempts_by_delivery ON public.webhook_attempts USING btree (delivery_id, id)',
    'webhook_attempts_by_endpoint': 'CREATE INDEX webhook_attempts_by_endpoint ON public.webhook_attempts USING btree (endpoint_id, id DESC)',
    'webhook_attempts_by_event': 'CREATE INDEX webhook_attempts_by_event ON public.webhook_attempts USING btree (event_id, id DESC)',
    'webhook_attempts_pkey': 'CREATE UNIQUE INDEX webhook_attempts_pkey ON public.webhook_attempts USING btree (id)',
    'webhook_deliveries_by_endpoint': 'CREATE INDEX webhook_deliveries_by_endpoint ON public.webhook_deliveries USING btree (endpoint_id, state)',
    'webhook_deliveries_due': "CREATE INDEX webhook_deliveries_due ON public.webhook_deliveries USING btree (due_at) WHERE (state = 'pending'::text)",
    'webhook_deliveries_event_endpoint_key': 'CREATE UNIQUE INDEX webhook_deliveries_event_endpoint_key ON public.webhook_deliveries USING btree (event_id, endpoint_id)',
    'webhook_deliveries_pkey': 'CREATE UNIQUE INDEX webhook_deliveries_pkey ON public.webhook_deliveries USING btree (id)',
    'webhook_dispatch_checkpoint_pkey': 'CREATE UNIQUE INDEX webhook_dispatch_checkpoint_pkey ON public.webhook_dispatch_checkpoint USING btree (name)',
    'webhook_endpoints_by_account': 'CREATE INDEX webhook_endpoints_by_account ON public.webhook_endpoints USING btree (account, livemode, "position" DESC) WHERE (NOT deleted)',
    'webhook_endpoints_pkey': 'CREATE UNIQUE INDEX webhook_endpoints_pkey ON public.webhook_endpoints USING btree (id)',
    'webhook_subscriptions_pkey': 'CREATE UNIQUE INDEX webhook_subscriptions_pkey ON public.webhook_subscriptions USING btree (endpoint_id, valid_from, seq)',
}

EXPECTED_CONSTRAINTS = {
    ("account_api_versions", "account_api_versions_pkey", "PRIMARY KEY (account, effective_at)"),
    ("account_settings", "account_settings_default_currency_check", "CHECK ((default_currency ~ '^[a-z]{3}$'::text))"),
    ("account_settings", "account_settings_pkey", "PRIMARY KEY (account)"),
    ("api_keys", "api_keys_pkey", "PRIMARY KEY (id)"),
    ("api_keys", "api_keys_secret_hash_check", "CHECK ((length(secret_hash) = 32))"),
    ("api_keys", "api_keys_secret_hash_key", "UNIQUE (secret_hash)"),
    ("balance_transactions", "balance_transactions_pkey", "PRIMARY KEY (id)"),
    ("customers", "customers_pkey", "PRIMARY KEY (id)"),
    ("events", "events_event_id_key", "UNIQUE (event_id)"),
    ("events", "events_hash_check", "CHECK ((length(hash) = 32))"),
    ("events", "events_pkey", "PRIMARY KEY (stream_id, stream_version)"),
    ("events", "events_position_key", 'UNIQUE ("position")'),
    ("events", "events_schema_version_check", "CHECK ((schema_version >= 1))"),
    ("events", "events_stream_id_fkey", "FOREIGN KEY (stream_id) REFERENCES streams(stream_id)"),
    ("events", "events_stream_version_check", "CHECK ((stream_version >= 1))"),
    ("idempotency_keys", "idempotency_keys_pkey", "PRIMARY KEY (account, livemode, key)"),
    ("external_id_claims", "external_id_claims_pkey", "PRIMARY KEY (account, livemode, external_id)"),
    ("schema_migrations", "schema_migrations_pkey", "PRIMARY KEY (name)"),
    ("streams", "streams_head_hash_check", "CHECK ((length(head_hash) = 32))"),
    ("streams", "streams_pkey", "PRIMARY KEY (stream_id)"),
    ("streams", "streams_version_check", "CHECK ((version >= 1))"),
    ("stripe_events", "stripe_events_order_key", 'UNIQUE ("position", seq)'),
    ("stripe_events", "stripe_events_pkey", "PRIMARY KEY (id)"),
    ('webhook_attempts', 'webhook_attempts_delivery_id_fkey', 'FOREIGN KEY (delivery_id) REFERENCES webhook_deliveries(id)'),
    ('webhook_attempts', 'webhook_attempts_pkey', 'PRIMARY KEY (id)'),
    ('webhook_attempts', 'webhook_attempts_response_check', 'CHECK ((length(response) <= 20000))'),
    ('webhook_deliveries', 'webhook_deliveries_endpoint_id_fkey', 'FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoints(id)'),
    ('webhook_deliveries', 'webhook_deliveries_event_endpoint_key', 'UNIQUE (event_id, endpoint_id)'),
    ('webhook_deliveries', 'webhook_deliveries_pkey', 'PRIMARY KEY (id)'),
    ('webhook_deliveries', 'webhook_deliveries_state_check', "CHECK ((state = ANY (ARRAY['pending'::text, 'succeeded'::text, 'failed'::text, 'canceled'::text])))"),
    ('webhook_dispatch_checkpoint', 'webhook_dispatch_checkpoint_pkey', 'PRIMARY KEY (name)'),
    ('webhook_endpoints', 'webhook_endpoints_pkey', 'PRIMARY KEY (id)'),
    ('webhook_endpoints', 'webhook_endpoints_status_check', "CHECK ((status = ANY (ARRAY['enabled'::text, 'disabled'::text])))"),
    ('webhook_subscriptions', 'webhook_subscriptions_endpoint_id_fkey', 'FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoints(id)'),
    ('webhook_subscriptions', 'webhook_subscriptions_pkey', 'PRIMARY KEY (endpoint_id, valid_from, seq)'),
}

EXPECTED_TRIGGERS = {
    (
        "events",
        "events_no_truncate",
        "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON public.events "
        "FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only()",
    ),
    (
        "events",
        "events_no_update_delete",
        "CREATE TRIGGER events_no_update_delete BEFORE DELETE OR UPDATE ON public.events "
        "FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only()",
    ),
}


# What the service's role may do (migrations/0005_service_role.sql): table -> privileges. Nothing else, and
# nothing at all for PUBLIC. A new table the service uses must be granted in its migration and listed here.
EXPECTED_SERVICE_GRANTS = {
    "account_api_versions": {"SELECT"},
    "account_settings": {"SELECT"},
    "api_keys": {"SELECT"},
    "balance_transactions": {"SELECT", "INSERT", "UPDATE"},
    "customers": {"SELECT", "INSERT", "UPDATE"},
    "events": {"SELECT", "INSERT"},
    "external_id_claims": {"SELECT", "INSERT", "DELETE"},
    "idempotency_keys": {"SELECT", "INSERT", "DELETE"},
    "streams": {"SELECT", "INSERT", "UPDATE"},
    "stripe_events": {"SELECT", "INSERT"},
    'webhook_attempts': {'INSERT', 'SELECT'},
    'webhook_deliveries': {'INSERT', 'SELECT', 'UPDATE'},
    'webhook_dispatch_checkpoint': {'SELECT', 'UPDATE'},
    'webhook_endpoints': {'INSERT', 'SELECT', 'UPDATE'},
    'webhook_subscriptions': {'INSERT', 'SELECT'},
}


async def table_grants(conn: asyncpg.Connection) -> dict[str, dict[str, set[str]]]:
    """grantee ('ledger_service', 'PUBLIC', ...) -> table -> privileges, for every relation in public."""
    grants: dict[str, dict[str, set[str]]] = {}
    for row in await conn.fetch(
        """SELECT c.relname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS grantee,
                  a.privilege_type
           FROM pg_class c, aclexplode(c.relacl) a
           WHERE c.relnamespace = 'public'::regnamespace AND a.grantee <> c.relowner"""
    ):
        grants.setdefault(row["grantee"], {}).setdefault(row["relname"], set()).add(row["privilege_type"])
    return grants


def expected_columns() -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for line in EXPECTED_COLUMNS.strip().splitlines():
        name, data_type, rest = line.split(" ", 2)
        table, column = name.split(".")
        nullable = "NO" if rest.startswith("NOT NULL") else "YES"
        extra = rest.removeprefix("NOT NULL").removeprefix("NULL").strip()
        identity = "YES" if extra == "IDENTITY" else "NO"
        default = "" if extra in ("", "IDENTITY") else extra
        rows.append((table, column, data_type.replace("_", " "), nullable, default, identity))
    return rows


async def schema(conn: asyncpg.Connection) -> dict[str, Any]:
    columns = [
        (
            r["table_name"],
            r["column_name"],
            r["data_type"],
            r["is_nullable"],
            r["column_default"] or "",
            r["is_identity"],
        )
        for r in await conn.fetch(
            """SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity
               FROM information_schema.columns WHERE table_schema = 'public'
               ORDER BY table_name, ordinal_position"""
        )
    ]
    indexes = {
        r["indexname"]: r["indexdef"]
        for r in await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
    }
    constraints = {
        (r[0], r[1], r[2])
        for r in await conn.fetch(
            """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
               WHERE connamespace = 'public'::regnamespace AND contype <> 'n'"""
        )
    }
    triggers = {
        (r[0], r[1], r[2])
        for r in await conn.fetch(
            """SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
               WHERE NOT tgisinternal"""
        )
    }
    functions = sorted(
        r[0]
        for r in await conn.fetch("SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace")
    )
    other = sorted(
        (r[0], r[1])
        for r in await conn.fetch(
            """SELECT relname, relkind::text FROM pg_class WHERE relnamespace = 'public'::regnamespace
               AND relkind NOT IN ('r', 'i')"""
        )
    )
    return {
        "columns": columns,
        "indexes": indexes,
        "constraints": constraints,
        "triggers": triggers,
        "functions": functions,
        "other": other,
    }


async def applied(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    return [tuple(r) for r in await conn.fetch("SELECT name, checksum FROM schema_migrations ORDER BY name")]


async def test_migrations_build_exactly_the_expected_schema(empty_db_url: str) -> None:
    conn = await asyncpg.connect(empty_db_url)
    try:
        assert [m.name for m in bundled_migrations()] == MIGRATIONS
        assert await apply_migrations(conn) == MIGRATIONS
        found = await schema(conn)
        assert found["columns"] == expected_columns()
        assert found["indexes"] == EXPECTED_INDEXES
        assert found["constraints"] == EXPECTED_CONSTRAINTS
        assert found["triggers"] == EXPECTED_TRIGGERS
        assert found["functions"] == [
            "events_are_append_only",
            "ledger_expect_streams",
        ]
        assert found["other"] == [  # the identities' sequences, nothing else
            ("events_position_seq", "S"),
            ("webhook_attempts_id_seq", "S"),
            ("webhook_deliveries_id_seq", "S"),
            ("webhook_endpoints_position_seq", "S"),
            ("webhook_subscriptions_seq_seq", "S"),
        ]
        assert await applied(conn) == [(m.name, m.checksum) for m in bundled_migrations()]
        assert await table_grants(conn) == {"ledger_service": EXPECTED_SERVICE_GRANTS}
        role = await conn.fetchrow(
            "SELECT rolcanlogin, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
            "WHERE rolname = 'ledger_service'"
        )
        assert tuple(role) == (False, False, True, False, False, False)
        assert await conn.fetchval("SELECT has_schema_privilege('ledger_service', 'public', 'USAGE')")
        assert not await conn.fetchval("SELECT has_schema_privilege('ledger_service', 'public', 'CREATE')")
    finally:
        await conn.close()


async def test_migrating_twice_is_a_no_op(empty_db_url: str) -> None:
    assert await migrate(empty_db_url) == MIGRATIONS
    conn = await asyncpg.connect(empty_db_url)
    try:
        before = (await schema(conn), await conn.fetch("SELECT * FROM schema_migrations ORDER BY name"))
        assert await apply_migrations(conn) == []
        assert await migrate(empty_db_url) == []
        assert (
            await schema(conn),
            await conn.fetch("SELECT * FROM schema_migrations ORDER BY name"),
        ) == before
    finally:
        await conn.close()


async def test_concurrent_migrators_are_safe(empty_db_url: str) -> None:
    conns = [await asyncpg.connect(empty_db_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(apply_migrations(conn) for conn in conns))
        assert sorted(results, key=len) == [[], [], [], MIGRATIONS]
        assert await applied(conns[0]) == [(m.name, m.checksum) for m in bundled_migrations()]
        assert (await schema(conns[0]))["indexes"] == EXPECTED_INDEXES
    finally:
        for conn in conns:
            await conn.close()


async def test_an_edited_applied_migration_is_refused(empty_db_url: str) -> None:
    conn = await asyncpg.connect(empty_db_url)
    try:
        await apply_migrations(conn)
        before = await schema(conn)
        original = bundled_migrations()
        edited = [Migration(original[0].name, original[0].sql + "\n-- edited\n"), *original[1:]]
        addition = Migration("0099_new.sql", "CREATE TABLE added_later (x int);")
        with pytest.raises(MigrationError, match=r"0001_event_store\.sql changed"):
            await apply_migrations(conn, [*edited, addition])
        # nothing was applied, not even the new file
        assert await conn.fetchval("SELECT to_regclass('added_later')") is None
        assert await schema(conn) == before
        # an applied file missing from the build is refused too
        with pytest.raises(MigrationError, match="missing"):
            await apply_migrations(conn, original[:-1])
        # the migration lock was released: the real list still migrates (the new file only)
        other = await asyncpg.connect(empty_db_url)
        try:
            assert await asyncio.wait_for(apply_migrations(other, [*original, addition]), 10) == [
                "0099_new.sql"
            ]
        finally:
            await other.close()
    finally:
        await conn.close()


async def test_a_failing_migration_is_rolled_back(empty_db_url: str) -> None:
    conn = await asyncpg.connect(empty_db_url)
    try:
        await apply_migrations(conn)
        broken = Migration("0099_broken.sql", "CREATE TABLE half_done (x int); SELECT 1 / 0;")
        with pytest.raises(asyncpg.DivisionByZeroError):
            await apply_migrations(conn, [*bundled_migrations(), broken])
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert [name for name, _ in await applied(conn)] == MIGRATIONS
        fixed = Migration("0099_broken.sql", "CREATE TABLE half_done (x int);")
        assert await apply_migrations(conn, [*bundled_migrations(), fixed]) == ["0099_broken.sql"]
    finally:
        await conn.close()
