-- The reads of the customers projection (projections/customers.py writes it).
--
-- A list statement reads one page, newest first by `position`: older than a cursor (NULL: from the newest),
-- or, when `newer`, newer than one (oldest first then; the caller reverses the page). It takes account and
-- mode, its filters (NULL: not filtered), the cursor, `newer`, then the page size. It runs with a custom
-- plan (service/routes/paging.py): the filters left out and the CASEs on `newer` fold away, leaving the
-- statement written for just this page, which the list's index serves in order. The CASEs keep the result
-- right under any plan; only the speed depends on the folding.

-- name: customer
SELECT * FROM customers WHERE id = $1 AND account = $2 AND livemode = $3

-- name: customer_cursor
SELECT position FROM customers WHERE id = $1 AND account = $2 AND livemode = $3

-- name: customers_page
-- $1 account, $2 livemode, $3-$6 created gt/gte/lt/lte, $7 match none, $8 email, $9 strict (match `email`
-- exactly, as Stripe does, not case-insensitively), $10 cursor position, $11 newer, $12 limit
SELECT * FROM customers
WHERE account = $1 AND livemode = $2 AND NOT deleted
  AND ($3::bigint IS NULL OR created > $3) AND ($4::bigint IS NULL OR created >= $4)
  AND ($5::bigint IS NULL OR created < $5) AND ($6::bigint IS NULL OR created <= $6)
  AND NOT $7::boolean
  AND ($8::text IS NULL OR CASE WHEN $9::boolean THEN email = $8 ELSE lower(email) = lower($8) END)
  AND CASE WHEN $11::boolean THEN position > $10::bigint ELSE position < coalesce($10, 9223372036854775807) END
ORDER BY CASE WHEN $11 THEN position END, CASE WHEN NOT $11 THEN position END DESC
LIMIT $12

-- name: customers_count
SELECT count(*) FROM customers
WHERE account = $1 AND livemode = $2 AND NOT deleted
  AND ($3::bigint IS NULL OR created > $3) AND ($4::bigint IS NULL OR created >= $4)
  AND ($5::bigint IS NULL OR created < $5) AND ($6::bigint IS NULL OR created <= $6)
  AND NOT $7::boolean
  AND ($8::text IS NULL OR CASE WHEN $9::boolean THEN email = $8 ELSE lower(email) = lower($8) END)
