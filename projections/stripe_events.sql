-- The reads of the stripe_events projection (projections/stripe_events.py writes it): the Events API, newest
-- first by (position, seq); the list statement as in customers.sql. `delivery_success` is read from the
-- webhook deliveries: false = some delivery of the event is pending or failed, true = none is.

-- name: event
SELECT * FROM stripe_events WHERE id = $1 AND account = $2 AND livemode = $3

-- name: event_cursor
SELECT position, seq FROM stripe_events WHERE id = $1 AND account = $2 AND livemode = $3

-- name: events_page
-- $1 account, $2 livemode, $3 type, $4 type prefix (`type=customer.*`), $5 types, $6 delivery_success,
-- $7-$10 created gt/gte/lt/lte, $11-$12 cursor (position, seq), $13 newer, $14 limit
SELECT * FROM stripe_events
WHERE account = $1 AND livemode = $2
  AND ($3::text IS NULL OR type = $3) AND ($4::text IS NULL OR starts_with(type, $4))
  AND ($5::text[] IS NULL OR type = ANY($5))
  AND ($6::boolean IS NULL OR $6 <> EXISTS (SELECT FROM webhook_deliveries d
                                            WHERE d.event_id = stripe_events.id AND d.state IN ('pending', 'failed')))
  AND ($7::bigint IS NULL OR created > $7) AND ($8::bigint IS NULL OR created >= $8)
  AND ($9::bigint IS NULL OR created < $9) AND ($10::bigint IS NULL OR created <= $10)
  AND CASE WHEN $13::boolean THEN (position, seq) > ($11::bigint, $12::smallint)
           ELSE (position, seq) < (coalesce($11, 9223372036854775807), coalesce($12, 32767)) END
ORDER BY CASE WHEN $13 THEN position END, CASE WHEN $13 THEN seq END,
         CASE WHEN NOT $13 THEN position END DESC, CASE WHEN NOT $13 THEN seq END DESC
LIMIT $14
