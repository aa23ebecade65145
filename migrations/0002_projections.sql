-- Read models, maintained inline (same transaction as the append) by projections/*.py.

CREATE TABLE customers (
    id                    text PRIMARY KEY,
    account               text NOT NULL,
    livemode              boolean NOT NULL,
    position              bigint NOT NULL,
    version               bigint NOT NULL,
    created               bigint NOT NULL,
    deleted               boolean NOT NULL DEFAULT false,
    email                 text,
    name                  text,
    phone                 text,
    description           text,
    business_name         text,
    individual_name       text,
    address               jsonb,
    shipping              jsonb,
    invoice_prefix        text NOT NULL,
    invoice_settings      jsonb NOT NULL,
    next_invoice_sequence bigint NOT NULL,
    preferred_locales     jsonb NOT NULL,
    tax_exempt            text NOT NULL,
    metadata              jsonb NOT NULL,
    external_id           text,
    balance               bigint NOT NULL,
    currency              text
);

CREATE INDEX customers_by_account ON customers (account, livemode, position DESC) WHERE NOT deleted;
CREATE INDEX customers_by_email ON customers (account, livemode, lower(email)) WHERE NOT deleted;
CREATE UNIQUE INDEX customers_external_id ON customers (account, livemode, external_id)
    WHERE external_id IS NOT NULL AND NOT deleted;

CREATE TABLE balance_transactions (
    id             text PRIMARY KEY,
    customer_id    text NOT NULL,
    account        text NOT NULL,
    livemode       boolean NOT NULL,
    position       bigint NOT NULL,
    version        bigint NOT NULL,
    type           text NOT NULL,
    amount         bigint NOT NULL,
    currency       text NOT NULL,
    ending_balance bigint NOT NULL,
    description    text,
    metadata       jsonb NOT NULL,
    created        bigint NOT NULL
);

CREATE INDEX balance_transactions_by_customer ON balance_transactions (customer_id, position DESC);
