-- The Stripe-shaped event feed (GET /v1/events): one or two rows per domain event.

-- name: customers_row
SELECT * FROM customers WHERE id = $1

-- name: balance_transactions_row
SELECT * FROM balance_transactions WHERE id = $1

-- name: insert
INSERT INTO stripe_events (id, account, livemode, position, seq, type, created, customer_id, data, request)
SELECT id, account, livemode, position, seq, type, created, customer_id, data::jsonb, request::jsonb
FROM unnest($1::text[], $2::text[], $3::bool[], $4::bigint[], $5::smallint[], $6::text[], $7::bigint[],
            $8::text[], $9::text[], $10::text[])
     AS u(id, account, livemode, position, seq, type, created, customer_id, data, request)
