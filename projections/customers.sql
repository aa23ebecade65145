-- The reads of the customers projection (projections/customers.py writes it). The list is newest first by
-- `position`: "older" reads down the index from a cursor (NULL: from the newest), "newer" up it. Each list
-- statement takes account and mode, its filters (NULL: not filtered), then the cursor, then the page size;
-- it runs with a custom plan (service/routes/paging.py), so a filter left out folds away and one given can
-- use its index.

-- name: customer
SELECT * FROM customers WHERE id = $1 AND account = $2 AND livemode = $3

-- name: customer_cursor
SELECT position FROM customers WHERE id = $1 AND account = $2 AND livemode = $3

-- name: customers_older
-- $1 account, $2 livemode, $3-$6 created gt/gte/lt/lte, $7 match none, $8 email, $9 strict (match `email`
-- exactly, as Stripe does, not case-insensitively), $10 cursor position, $11 limit
SELECT * FROM customers
WHERE account = $1 AND livemode = $2 AND NOT deleted
  AND ($3::bigint IS NULL OR created > $3) AND ($4::bigint IS NULL OR created >= $4)
  AND ($5::bigint IS NULL OR created < $5) AND ($6::bigint IS NULL OR created <= $6)
  AND NOT $7::boolean
  AND ($8::text IS NULL OR CASE WHEN $9::boolean THEN email = $8 ELSE lower(email) = lower($8) END)
  AND position < coalesce($10::bigint, 9223372036854775807)
ORDER BY position DESC LIMIT $11

-- name: customers_newer
SELECT * FROM customers
WHERE account = $1 AND livemode = $2 AND NOT deleted
  AND ($3::bigint IS NULL OR created > $3) AND ($4::bigint IS NULL OR created >= $4)
  AND ($5::bigint IS NULL OR created < $5) AND ($6::bigint IS NULL OR created <= $6)
  AND NOT $7::boolean
  AND ($8::text IS NULL OR CASE WHEN $9::boolean THEN email = $8 ELSE lower(email) = lower($8) END)
  AND position > $10::bigint
ORDER BY position ASC LIMIT $11

-- name: customers_count
SELECT count(*) FROM customers
WHERE account = $1 AND livemode = $2 AND NOT deleted
  AND ($3::bigint IS NULL OR created > $3) AND ($4::bigint IS NULL OR created >= $4)
  AND ($5::bigint IS NULL OR created < $5) AND ($6::bigint IS NULL OR created <= $6)
  AND NOT $7::boolean
  AND ($8::text IS NULL OR CASE WHEN $9::boolean THEN email = $8 ELSE lower(email) = lower($8) END)
