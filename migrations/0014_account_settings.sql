-- Per-account settings that change how the API answers (issue 13): the account's default Stripe API
-- version (what a request without a Stripe-Version header is rendered at, and what events say in
-- `api_version`) and its default currency (what `balance` without `currency` is in). Written by
-- `ledgerd api-keys create --api-version V --default-currency C`; an account without a row uses the
-- latest version and has no default currency. The service only reads it.

CREATE TABLE account_settings (
    account          text PRIMARY KEY,
    api_version      text,
    default_currency text CHECK (default_currency ~ '^[a-z]{3}$'),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON account_settings FROM ledger_service;
GRANT SELECT ON account_settings TO ledger_service;

-- Multi-currency balances: a customer has one ledger per currency. `balance`/`currency` stay the
-- customer's own currency's; `balances` holds every currency's balance (projections/customers.py).
-- Until now a customer had one currency, so its balances are {currency: balance}.
ALTER TABLE customers ADD COLUMN balances jsonb NOT NULL DEFAULT '{}'::jsonb;
UPDATE customers SET balances = jsonb_build_object(currency, balance) WHERE currency IS NOT NULL;
