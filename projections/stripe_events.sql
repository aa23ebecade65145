-- The reads of the stripe_events projection (projections/stripe_events.py writes it): the Events API, newest
-- first by (position, seq) (the list statements as in customers.sql). `delivery_success` is read from the
-- webhook deliveries: false = some delivery of the event is pending or failed, true = none is.

-- name: event
SELECT * FROM stripe_events WHERE id = $1 AND account = $2 AND livemode = $3

-- name: event_cursor
SELECT position, seq FROM stripe_events WHERE id = $1 AND account = $2 AND livemode = $3

-- name: events_older
-- $1 account, $2 livemode, $3 type prefix (`type=customer.*`), $4 types, $5 delivery_success,
-- $6-$9 created gt/gte/lt/lte, $10-$11 cursor (position, seq), $12 limit
SELECT * FROM stripe_events
WHERE account = $1 AND livemode = $2
  AND ($3::text IS NULL OR starts_with(type, $3)) AND ($4::text[] IS NULL OR type = ANY($4))
  AND ($5::boolean IS NULL OR $5 <> EXISTS (SELECT FROM webhook_deliveries d
                                            WHERE d.event_id = stripe_events.id AND d.state IN ('pending', 'failed')))
  AND ($6::bigint IS NULL OR created > $6) AND ($7::bigint IS NULL OR created >= $7)
  AND ($8::bigint IS NULL OR created < $8) AND ($9::bigint IS NULL OR created <= $9)
  AND (position, seq) < (coalesce($10::bigint, 9223372036854775807), coalesce($11::smallint, 32767))
ORDER BY position DESC, seq DESC LIMIT $12

-- name: events_newer
SELECT * FROM stripe_events
WHERE account = $1 AND livemode = $2
  AND ($3::text IS NULL OR starts_with(type, $3)) AND ($4::text[] IS NULL OR type = ANY($4))
  AND ($5::boolean IS NULL OR $5 <> EXISTS (SELECT FROM webhook_deliveries d
                                            WHERE d.event_id = stripe_events.id AND d.state IN ('pending', 'failed')))
  AND ($6::bigint IS NULL OR created > $6) AND ($7::bigint IS NULL OR created >= $7)
  AND ($8::bigint IS NULL OR created < $8) AND ($9::bigint IS NULL OR created <= $9)
  AND (position, seq) > ($10::bigint, $11::smallint)
ORDER BY position ASC, seq ASC LIMIT $12

-- name: events_of_type_older
-- Of one type (`type=customer.created`), through the index stripe_events_by_type: $3 the type.
SELECT * FROM stripe_events
WHERE account = $1 AND livemode = $2
  AND type = $3::text AND ($4::text[] IS NULL OR type = ANY($4))
  AND ($5::boolean IS NULL OR $5 <> EXISTS (SELECT FROM webhook_deliveries d
                                            WHERE d.event_id = stripe_events.id AND d.state IN ('pending', 'failed')))
  AND ($6::bigint IS NULL OR created > $6) AND ($7::bigint IS NULL OR created >= $7)
  AND ($8::bigint IS NULL OR created < $8) AND ($9::bigint IS NULL OR created <= $9)
  AND (position, seq) < (coalesce($10::bigint, 9223372036854775807), coalesce($11::smallint, 32767))
ORDER BY position DESC, seq DESC LIMIT $12

-- name: events_of_type_newer
SELECT * FROM stripe_events
WHERE account = $1 AND livemode = $2
  AND type = $3::text AND ($4::text[] IS NULL OR type = ANY($4))
  AND ($5::boolean IS NULL OR $5 <> EXISTS (SELECT FROM webhook_deliveries d
                                            WHERE d.event_id = stripe_events.id AND d.state IN ('pending', 'failed')))
  AND ($6::bigint IS NULL OR created > $6) AND ($7::bigint IS NULL OR created >= $7)
  AND ($8::bigint IS NULL OR created < $8) AND ($9::bigint IS NULL OR created <= $9)
  AND (position, seq) > ($10::bigint, $11::smallint)
ORDER BY position ASC, seq ASC LIMIT $12
