-- The reads of the customers projection (projections/customers.py writes it). Lists are newest first by
-- `position`; a page "older" than a cursor (or from the newest: a NULL cursor) runs down the index, a page
-- "newer" than one up it. Each list statement takes its filters after account and mode, then the cursor's
-- sort key, then the page size (service/routes/paging.py).

-- name: customer
SELECT * FROM customers WHERE id = $1 AND account = $2 AND livemode = $3

-- name: customer_cursor
SELECT position FROM customers WHERE id = $1 AND account = $2 AND livemode = $3

-- name: customers_older
-- $1 account, $2 livemode, $3-$6 created gt/gte/lt/lte, $7 match none, $8 cursor position, $9 limit
SELECT * FROM customers
WHERE account = $1 AND livemode = $2 AND NOT deleted
  AND ($3::bigint IS NULL OR created > $3) AND ($4::bigint IS NULL OR created >= $4)
  AND ($5::bigint IS NULL OR created < $5) AND ($6::bigint IS NULL OR created <= $6)
  AND NOT $7::boolean
  AND position < coalesce($8::bigint, 9223372036854775807)
ORDER BY position DESC LIMIT $9

-- name: customers_newer
SELECT * FROM customers
WHERE account = $1 AND livemode = $2 AND NOT deleted
  AND ($3::bigint IS NULL OR created > $3) AND ($4::bigint IS NULL OR created >= $4)
  AND ($5::bigint IS NULL OR created < $5) AND ($6::bigint IS NULL OR created <= $6)
  AND NOT $7::boolean
  AND position > $8::bigint
ORDER BY position ASC LIMIT $9

-- name: customers_count
SELECT count(*) FROM customers
WHERE account = $1 AND livemode = $2 AND NOT deleted
  AND ($3::bigint IS NULL OR created > $3) AND ($4::bigint IS NULL OR created >= $4)
  AND ($5::bigint IS NULL OR created < $5) AND ($6::bigint IS NULL OR created <= $6)
  AND NOT $7::boolean

-- name: customers_by_email_older
-- The list filtered by `email`, through the index customers_by_email: matched case-insensitively, or exactly
-- when $9 (strict: Stripe's own matching).
-- $1 account, $2 livemode, $3-$6 created gt/gte/lt/lte, $7 match none, $8 email, $9 strict,
-- $10 cursor position, $11 limit
SELECT * FROM customers
WHERE account = $1 AND livemode = $2 AND NOT deleted
  AND ($3::bigint IS NULL OR created > $3) AND ($4::bigint IS NULL OR created >= $4)
  AND ($5::bigint IS NULL OR created < $5) AND ($6::bigint IS NULL OR created <= $6)
  AND NOT $7::boolean
  AND lower(email) = lower($8::text) AND (NOT $9::boolean OR email = $8)
  AND position < coalesce($10::bigint, 9223372036854775807)
ORDER BY position DESC LIMIT $11

-- name: customers_by_email_newer
SELECT * FROM customers
WHERE account = $1 AND livemode = $2 AND NOT deleted
  AND ($3::bigint IS NULL OR created > $3) AND ($4::bigint IS NULL OR created >= $4)
  AND ($5::bigint IS NULL OR created < $5) AND ($6::bigint IS NULL OR created <= $6)
  AND NOT $7::boolean
  AND lower(email) = lower($8::text) AND (NOT $9::boolean OR email = $8)
  AND position > $10::bigint
ORDER BY position ASC LIMIT $11

-- name: customers_by_email_count
SELECT count(*) FROM customers
WHERE account = $1 AND livemode = $2 AND NOT deleted
  AND ($3::bigint IS NULL OR created > $3) AND ($4::bigint IS NULL OR created >= $4)
  AND ($5::bigint IS NULL OR created < $5) AND ($6::bigint IS NULL OR created <= $6)
  AND NOT $7::boolean
  AND lower(email) = lower($8::text) AND (NOT $9::boolean OR email = $8)
