-- The reads of the balance_transactions projection (projections/balance_transactions.py writes it): one
-- customer's ledger, newest first by `position` (the list statement as in customers.sql).

-- name: balance_transaction
SELECT * FROM balance_transactions WHERE id = $1 AND customer_id = $2

-- name: balance_transaction_cursor
SELECT position FROM balance_transactions WHERE id = $1 AND account = $2 AND livemode = $3 AND customer_id = $4

-- name: balance_transactions_page
-- $1 account, $2 livemode, $3 customer, $4-$7 created gt/gte/lt/lte, $8 match none, $9 cursor position,
-- $10 newer, $11 limit
SELECT * FROM balance_transactions
WHERE account = $1 AND livemode = $2 AND customer_id = $3
  AND ($4::bigint IS NULL OR created > $4) AND ($5::bigint IS NULL OR created >= $5)
  AND ($6::bigint IS NULL OR created < $6) AND ($7::bigint IS NULL OR created <= $7)
  AND NOT $8::boolean
  AND CASE WHEN $10::boolean THEN position > $9::bigint ELSE position < coalesce($9, 9223372036854775807) END
ORDER BY CASE WHEN $10 THEN position END, CASE WHEN NOT $10 THEN position END DESC
LIMIT $11

-- name: balance_transactions_count
SELECT count(*) FROM balance_transactions
WHERE account = $1 AND livemode = $2 AND customer_id = $3
  AND ($4::bigint IS NULL OR created > $4) AND ($5::bigint IS NULL OR created >= $5)
  AND ($6::bigint IS NULL OR created < $6) AND ($7::bigint IS NULL OR created <= $7)
  AND NOT $8::boolean
