-- Commands in two round trips (service/store/postgres.sql): one statement reads what a command decides
-- on, without locks; one statement writes everything it decided (version check, events, projection
-- rows, idempotency record, external_id claims) and commits.

-- external_id uniqueness is a rule of the command side, so the command side keeps it: one claim per
-- (account, mode, external_id), taken and released by the command's own statement. The customers
-- projection no longer enforces anything the commands rely on.
CREATE TABLE external_id_claims (
    account     text NOT NULL,
    livemode    boolean NOT NULL,
    external_id text NOT NULL,
    customer_id text NOT NULL,
    PRIMARY KEY (account, livemode, external_id)
);

INSERT INTO external_id_claims (account, livemode, external_id, customer_id)
SELECT account, livemode, external_id, id FROM customers WHERE external_id IS NOT NULL AND NOT deleted;

DROP INDEX customers_external_id;
CREATE INDEX customers_by_external_id ON customers (account, livemode, external_id)
    WHERE external_id IS NOT NULL AND NOT deleted;

-- The recording time of each stream's head event: a command's events are recorded no earlier than it
-- (one clock per stream, whatever the clocks of the processes that write it).
ALTER TABLE streams ADD COLUMN recorded_at timestamptz;
UPDATE streams s SET recorded_at = e.recorded_at
FROM events e WHERE e.stream_id = s.stream_id AND e.stream_version = s.version;

-- UpdateBalanceTransaction decides on one ledger entry's events, read from the log by this index
-- instead of folding the customer's whole stream.
CREATE INDEX events_by_transaction ON events (stream_id, (data ->> 'transaction_id'))
    WHERE data ? 'transaction_id';

-- The write statement's version check: every stream it names must have been created, advanced or
-- confirmed at the version the command decided on, and no session may be holding a stream's lock
-- (a command that lost a race before takes it while it decides again: see service/commands/runner.py);
-- otherwise the whole statement fails (and nothing of it is written), and the command is decided again.
CREATE FUNCTION ledger_expect_streams(matched bigint, wanted integer, unlocked boolean) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF matched <> wanted OR NOT coalesce(unlocked, true) THEN
        RAISE EXCEPTION 'stream version conflict: % of % streams at the expected version, unlocked: %',
            matched, wanted, unlocked
            USING ERRCODE = 'LD409';
    END IF;
    RETURN wanted;
END
$$;

-- The lock-taking round trips they replace.
DROP FUNCTION ledger_begin_command(text, text, boolean, text, text, text);
DROP FUNCTION ledger_begin_batch(text[], text[], boolean[], text[], text[]);
DROP FUNCTION ledger_lock_and_read_stream(text, text);
DROP FUNCTION ledger_lock_and_find_idempotency(text, text, boolean, text);

REVOKE ALL ON external_id_claims FROM ledger_service;
GRANT SELECT, INSERT, DELETE ON external_id_claims TO ledger_service;
