-- The Stripe-shaped event feed (GET /v1/events): one or two rows per domain event.

-- name: customer_row
SELECT * FROM customers WHERE id = $1

-- name: transaction_row
SELECT * FROM balance_transactions WHERE id = $1

-- name: insert
INSERT INTO stripe_events (id, account, livemode, position, seq, type, created, customer_id, data, request)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb)
