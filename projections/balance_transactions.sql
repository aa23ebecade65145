-- The balance ledger: one row per BalanceAdjusted, with later description/metadata updates applied.

-- name: adjusted
INSERT INTO balance_transactions (
    id, customer_id, account, livemode, position, version, type, amount, currency, ending_balance,
    description, metadata, created)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13)
RETURNING *

-- name: updated
UPDATE balance_transactions SET
    description = CASE WHEN c ? 'description' THEN c->>'description' ELSE description END,
    metadata = CASE WHEN c ? 'metadata' THEN c->'metadata' ELSE metadata END
FROM (SELECT $2::jsonb AS c) AS changes
WHERE id = $1
RETURNING balance_transactions.*
