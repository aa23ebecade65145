-- The event log, stream heads, idempotency records. The log is append-only: see the triggers below.

CREATE TABLE streams (
    stream_id   text PRIMARY KEY,
    stream_type text NOT NULL,
    account     text NOT NULL,
    livemode    boolean NOT NULL,
    version     bigint NOT NULL CHECK (version >= 1),
    head_hash   bytea NOT NULL CHECK (length(head_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    -- Global position: unique and increasing in insert order, NOT in commit order; gaps allowed.
    position       bigint GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction's id. Readers order by (tx_id, position) and only read below the
    -- oldest running transaction (pg_snapshot_xmin), so no event can commit behind a reader.
    tx_id          bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    stream_id      text NOT NULL REFERENCES streams (stream_id),
    stream_version bigint NOT NULL CHECK (stream_version >= 1),
    event_id       text NOT NULL,
    event_type     text NOT NULL,
    schema_version integer NOT NULL CHECK (schema_version >= 1),
    data           jsonb NOT NULL,
    metadata       jsonb NOT NULL,
    recorded_at    timestamptz NOT NULL,
    -- sha256(previous event's hash in this stream || canonical bytes of this event); see README.
    hash           bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (stream_id, stream_version),
    CONSTRAINT events_position_key UNIQUE (position),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

CREATE INDEX events_global_order ON events (tx_id, position);
CREATE INDEX events_recorded_at ON events (recorded_at);

CREATE FUNCTION events_are_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the events table is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_no_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

CREATE TABLE idempotency_keys (
    account     text NOT NULL,
    livemode    boolean NOT NULL,
    key         text NOT NULL,
    method      text NOT NULL,
    path        text NOT NULL,
    params_hash bytea NOT NULL,
    params      jsonb NOT NULL,
    status      integer NOT NULL,
    response    bytea NOT NULL,
    request_id  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, livemode, key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
