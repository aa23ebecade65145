-- The role the service runs as: it may append to the log and read it, and maintain the projections,
-- the stream heads and the idempotency records; it can never UPDATE, DELETE or TRUNCATE `events`
-- (permission denied, before the append-only triggers are even reached). Migrations, `ledgerd rebuild`,
-- `ledgerd import` and key management run as the owner of the tables.
--
-- `ledger_service` is NOLOGIN: operators log in as a member of it, e.g.
--     CREATE ROLE ledger_app LOGIN PASSWORD '...' IN ROLE ledger_service;
-- and point the service's DATABASE_URL at ledger_app (`ledgerd serve --no-migrate`).
--
-- Roles are cluster-wide, privileges are per database: the role is created once per cluster (several
-- databases may run this migration at the same time: the loser of the race finds it created), the
-- GRANTs below are made in every database that runs this file.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_service') THEN
        BEGIN
            CREATE ROLE ledger_service NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it concurrently
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role ledger_service does not exist and % may not create it', current_user
                    USING HINT = 'As a superuser or CREATEROLE role run: CREATE ROLE ledger_service NOLOGIN; '
                                 'then migrate again.';
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO ledger_service', current_schema());
END
$$;

-- Start from nothing, whatever the role may have been given before, then grant exactly what it needs.
REVOKE ALL ON events, streams, idempotency_keys, api_keys, customers, balance_transactions, stripe_events,
    schema_migrations FROM ledger_service;

GRANT SELECT, INSERT ON events TO ledger_service;                        -- append and read, nothing else
GRANT SELECT, INSERT, UPDATE ON streams TO ledger_service;               -- version check, head hash, snapshot
GRANT SELECT, INSERT, UPDATE ON customers, balance_transactions TO ledger_service;  -- inline projections
GRANT SELECT, INSERT ON stripe_events TO ledger_service;                 -- the event feed is append-only too
GRANT SELECT, INSERT, DELETE ON idempotency_keys TO ledger_service;      -- DELETE: pruning past retention
GRANT SELECT ON api_keys TO ledger_service;                              -- authentication only
