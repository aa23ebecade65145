-- Webhooks (issue 11). Endpoint configuration is mutable configuration, not the ledger: ordinary tables.
-- The event log stays append-only; deliveries are fanned out from it by the dispatcher
-- (service/webhooks/dispatcher.py), which reads stripe_events in the gap-safe (tx_id, position, seq) order.

CREATE TABLE webhook_endpoints (
    id                         text PRIMARY KEY,
    account                    text NOT NULL,
    livemode                   boolean NOT NULL,
    -- List order (newest first), like the projections' `position`.
    position                   bigint GENERATED ALWAYS AS IDENTITY,
    url                        text NOT NULL,
    enabled_events             text[] NOT NULL,
    description                text,
    metadata                   jsonb NOT NULL DEFAULT '{}',
    api_version                text,
    status                     text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    -- Why it is disabled: 'manual' (disabled=true), 'gone' (a 410), 'failing' (no success for too long).
    disabled_reason            text,
    secret                     text NOT NULL,
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    created                    bigint NOT NULL,
    deleted                    boolean NOT NULL DEFAULT false,
    -- The first failed attempt since the last success (NULL while healthy): auto-disable after N hours.
    failing_since              timestamptz,
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    -- `ledgerd listen`'s endpoint: delivered by that process only (to a local URL), never by the service.
    forwarder                  boolean NOT NULL DEFAULT false
);

CREATE INDEX webhook_endpoints_by_account ON webhook_endpoints (account, livemode, position DESC)
    WHERE NOT deleted;

-- What each endpoint was subscribed to from when: an event goes to the endpoints that were enabled and
-- subscribed to its type when the event was recorded (not when the dispatcher happens to read it).
CREATE TABLE webhook_subscriptions (
    endpoint_id    text NOT NULL REFERENCES webhook_endpoints (id),
    valid_from     timestamptz NOT NULL,
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    enabled_events text[] NOT NULL,
    active         boolean NOT NULL,
    PRIMARY KEY (endpoint_id, valid_from, seq)
);

-- One row per (event, endpoint): the unit of retry.
CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         text NOT NULL,
    endpoint_id      text NOT NULL REFERENCES webhook_endpoints (id),
    account          text NOT NULL,
    livemode         boolean NOT NULL,
    event_position   bigint NOT NULL,
    event_seq        smallint NOT NULL,
    event_recorded_at timestamptz NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'succeeded', 'failed', 'canceled')),
    attempts         integer NOT NULL DEFAULT 0,
    -- Queued again by POST /v1/events/{id}/retry or .../recover: its next attempt is recorded as manual.
    manual           boolean NOT NULL DEFAULT false,
    due_at           timestamptz NOT NULL,
    lease_until      timestamptz,
    lease_owner      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    CONSTRAINT webhook_deliveries_event_endpoint_key UNIQUE (event_id, endpoint_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (due_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, state);

-- Every attempt, automatic or manual.
CREATE TABLE webhook_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     bigint NOT NULL REFERENCES webhook_deliveries (id),
    event_id        text NOT NULL,
    endpoint_id     text NOT NULL,
    at              timestamptz NOT NULL,
    status_code     integer,              -- NULL when no response arrived
    error           text,                 -- error class: timeout, connection, ssrf_blocked, redirect, http_status
    latency_ms      integer NOT NULL,
    response        bytea NOT NULL CHECK (length(response) <= 20000),
    next_attempt_at timestamptz,          -- NULL: no further attempt scheduled
    manual          boolean NOT NULL DEFAULT false
);

CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);
CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_attempts_by_event ON webhook_attempts (event_id, id DESC);

-- The dispatcher's place in the feed: (tx_id, position, seq) of the last feed row it fanned out.
-- One row, locked by the dispatching transaction (FOR UPDATE SKIP LOCKED): any number of service
-- processes may run a dispatcher; one of them fans out each batch.
CREATE TABLE webhook_dispatch_checkpoint (
    name       text PRIMARY KEY,
    tx_id      bigint NOT NULL,
    position   bigint NOT NULL,
    seq        integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO webhook_dispatch_checkpoint (name, tx_id, position, seq) VALUES ('webhooks', 0, 0, -1);

REVOKE ALL ON webhook_endpoints, webhook_subscriptions, webhook_deliveries, webhook_attempts,
    webhook_dispatch_checkpoint FROM ledger_service;
GRANT SELECT, INSERT, UPDATE ON webhook_endpoints TO ledger_service;            -- deleted is a flag
GRANT SELECT, INSERT ON webhook_subscriptions TO ledger_service;                 -- history, append-only
GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO ledger_service;
GRANT SELECT, INSERT ON webhook_attempts TO ledger_service;                      -- the record of attempts
GRANT SELECT, UPDATE ON webhook_dispatch_checkpoint TO ledger_service;
