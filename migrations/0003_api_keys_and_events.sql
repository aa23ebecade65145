-- API keys (stored as SHA-256 of the secret; the secret itself is shown once) and the Stripe-shaped
-- event feed, a read model projected inline from the log like the other projections.

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    account     text NOT NULL,
    livemode    boolean NOT NULL,
    prefix      text NOT NULL,
    secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT api_keys_secret_hash_key UNIQUE (secret_hash)
);

CREATE INDEX api_keys_prefix ON api_keys (prefix);

CREATE TABLE stripe_events (
    id          text PRIMARY KEY,
    account     text NOT NULL,
    livemode    boolean NOT NULL,
    position    bigint NOT NULL,
    seq         smallint NOT NULL,
    type        text NOT NULL,
    created     bigint NOT NULL,
    customer_id text NOT NULL,
    data        jsonb NOT NULL,
    request     jsonb NOT NULL,
    CONSTRAINT stripe_events_order_key UNIQUE (position, seq)
);

CREATE INDEX stripe_events_by_account ON stripe_events (account, livemode, position DESC, seq DESC);
CREATE INDEX stripe_events_by_type ON stripe_events (account, livemode, type, position DESC, seq DESC);
