-- The history of each account's default API version (issue 13): Stripe renders an event at the version
-- its account had when the event was created, so a later change of the default must not re-render old
-- events. One row per change, appended by `ledgerd api-keys create --api-version` together with
-- account_settings (which keeps the current value); never updated. An event created at second S
-- renders at the newest row with effective_at <= S (service/accounts.py, service/webhooks/webhooks.sql).

CREATE TABLE account_api_versions (
    account      text NOT NULL,
    effective_at timestamptz NOT NULL DEFAULT now(),
    api_version  text NOT NULL,
    PRIMARY KEY (account, effective_at)
);

-- What was set before this table existed rendered every event so far: it holds since always.
INSERT INTO account_api_versions (account, effective_at, api_version)
SELECT account, '-infinity', api_version FROM account_settings WHERE api_version IS NOT NULL;

REVOKE ALL ON account_api_versions FROM ledger_service;
GRANT SELECT ON account_api_versions TO ledger_service;
