-- Statements of the dispatcher and the delivery workers (service/webhooks/dispatcher.py, delivery.py).

-- name: peek
-- Whether a round has anything to do: read-only (no transaction id, no row lock, no WAL), so an idle
-- dispatcher costs one cheap query per poll.
SELECT EXISTS (
    SELECT 1 FROM webhook_dispatch_checkpoint c
    JOIN events e ON (e.tx_id, e.position) >= (c.tx_id, c.position)
    JOIN stripe_events s ON s.position = e.position
    WHERE c.name = 'webhooks'
      AND (e.tx_id, s.position, s.seq) > (c.tx_id, c.position, c.seq)
      AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
)

-- name: lock_checkpoint
-- The dispatching transaction's first statement: whoever holds the row fans out this round; any other
-- dispatcher skips the round instead of waiting.
SELECT tx_id, position, seq FROM webhook_dispatch_checkpoint WHERE name = 'webhooks' FOR UPDATE SKIP LOCKED

-- name: fan_out
-- The next feed rows after the checkpoint, in the gap-safe order of every reader of the log: by the
-- writing transaction's id, only below the oldest transaction still running (pg_snapshot_xmin), so no
-- feed row can commit behind the checkpoint. One delivery per (feed row, endpoint of its account and
-- mode that was enabled and subscribed to its type when the event was recorded).
WITH batch AS (
    SELECT s.id, s.account, s.livemode, s.type, s.position, s.seq, e.tx_id, e.recorded_at
    FROM events e
    JOIN stripe_events s ON s.position = e.position
    WHERE (e.tx_id, e.position) >= ($1, $2)
      AND (e.tx_id, s.position, s.seq) > ($1, $2, $3)
      AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
    ORDER BY e.tx_id, s.position, s.seq
    LIMIT $4
), inserted AS (
    INSERT INTO webhook_deliveries
        (event_id, endpoint_id, account, livemode, event_position, event_seq, event_recorded_at, due_at)
    SELECT b.id, w.id, b.account, b.livemode, b.position, b.seq, b.recorded_at, now()
    FROM batch b
    JOIN webhook_endpoints w ON w.account = b.account AND w.livemode = b.livemode AND NOT w.deleted
    JOIN LATERAL (
        SELECT h.enabled_events, h.active FROM webhook_subscriptions h
        WHERE h.endpoint_id = w.id AND h.valid_from <= b.recorded_at
        ORDER BY h.valid_from DESC, h.seq DESC
        LIMIT 1
    ) h ON h.active AND (b.type = ANY (h.enabled_events) OR '*' = ANY (h.enabled_events))
    ON CONFLICT (event_id, endpoint_id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted) AS deliveries, (SELECT count(*) FROM batch) AS events,
       last.tx_id, last.position, last.seq
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT tx_id, position, seq FROM batch ORDER BY tx_id DESC, position DESC, seq DESC LIMIT 1
) AS last ON true

-- name: advance_checkpoint
UPDATE webhook_dispatch_checkpoint SET tx_id = $1, position = $2, seq = $3, updated_at = now()
WHERE name = 'webhooks'

-- name: claim
-- Lease due deliveries of enabled endpoints, in a short transaction of its own (committed before any
-- HTTP call: an open transaction with an xid would hold back the horizon of every reader of the log).
WITH due AS (
    SELECT d.id FROM webhook_deliveries d
    JOIN webhook_endpoints w ON w.id = d.endpoint_id
    WHERE d.state = 'pending' AND d.due_at <= now()
      AND (d.lease_until IS NULL OR d.lease_until < now())
      AND w.status = 'enabled' AND NOT w.deleted
      -- The service's workers ($4 NULL) never send to a `ledgerd listen` endpoint; a listener only to its own.
      AND CASE WHEN $4::text IS NULL THEN NOT w.forwarder ELSE d.endpoint_id = $4 END
    ORDER BY d.due_at
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
SET lease_until = now() + make_interval(secs => $2), lease_owner = $3, attempts = d.attempts + 1
FROM due, webhook_endpoints w, stripe_events s
WHERE d.id = due.id AND w.id = d.endpoint_id AND s.id = d.event_id
RETURNING d.id AS delivery_id, d.endpoint_id, d.attempts, d.manual, w.url, w.secret, w.previous_secret,
    w.previous_secret_expires_at > now() AS previous_active,
    s.id, s.account, s.livemode, s.created, s.data::text AS data, s.request::text AS request, s.type,
    -- the version the payload is rendered at: the endpoint's, else the account's default when the
    -- event was created (the oldest entry covers anything earlier; else the current one, else the latest)
    coalesce(
        w.api_version,
        (SELECT h.api_version FROM account_api_versions h
         WHERE h.account = s.account AND floor(extract(epoch FROM h.effective_at)) <= s.created
         ORDER BY h.effective_at DESC LIMIT 1),
        (SELECT h.api_version FROM account_api_versions h WHERE h.account = s.account
         ORDER BY h.effective_at LIMIT 1),
        (SELECT a.api_version FROM account_settings a WHERE a.account = s.account)
    ) AS api_version,
    (SELECT count(*) FROM webhook_deliveries x
     WHERE x.event_id = d.event_id AND x.state NOT IN ('succeeded', 'canceled')) AS pending_webhooks

-- name: settle
-- A failed attempt's outcome, if the lease is still ours: pending again (due at $5), or failed for good.
UPDATE webhook_deliveries
SET state = $4, due_at = coalesce($5, due_at), lease_until = NULL, lease_owner = NULL, manual = false,
    delivered_at = CASE WHEN $4 = 'succeeded' THEN now() ELSE delivered_at END
WHERE id = $1 AND lease_owner = $2 AND attempts = $3

-- name: record_attempt
INSERT INTO webhook_attempts
    (delivery_id, event_id, endpoint_id, at, status_code, error, latency_ms, response, next_attempt_at, manual)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)

-- name: endpoint_failed
-- Start (or keep) the failure clock; returns whether the endpoint has now failed for too long.
UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, $2)
WHERE id = $1
RETURNING status = 'enabled' AND NOT deleted AND failing_since < now() - make_interval(secs => $3) AS overdue

-- name: disable_endpoint
-- Disabled by the pipeline ('gone' after a 410, 'failing' after too long): from now on it receives
-- nothing (a subscription row says so), its pending retries wait until it is enabled again.
WITH disabled AS (
    UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $2, updated_at = now()
    WHERE id = $1 AND status = 'enabled'
    RETURNING id, enabled_events
)
INSERT INTO webhook_subscriptions (endpoint_id, valid_from, enabled_events, active)
SELECT id, $3, enabled_events, false FROM disabled

-- name: record_success
-- The common case in one statement (its own transaction, one round trip): the attempt, the delivery
-- succeeded if the lease is still ours, the endpoint's failure clock stopped.
WITH attempt AS (
    INSERT INTO webhook_attempts
        (delivery_id, event_id, endpoint_id, at, status_code, error, latency_ms, response, next_attempt_at, manual)
    VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, NULL, $8)
), settled AS (
    UPDATE webhook_deliveries
    SET state = 'succeeded', lease_until = NULL, lease_owner = NULL, manual = false, delivered_at = now()
    WHERE id = $1 AND lease_owner = $9 AND attempts = $10
), healthy AS (
    UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $3 AND failing_since IS NOT NULL
)
SELECT 1

-- name: endpoint_cursor
-- GET /v1/webhook_endpoints, newest first by `position`, paged as the projections' lists are
-- (projections/customers.sql, service/routes/paging.py)
SELECT position FROM webhook_endpoints WHERE id = $1 AND account = $2 AND livemode = $3

-- name: endpoints_page
-- $1 account, $2 livemode, $3 cursor position, $4 newer, $5 limit
SELECT * FROM webhook_endpoints
WHERE account = $1 AND livemode = $2 AND NOT deleted
  AND CASE WHEN $4::boolean THEN position > $3::bigint ELSE position < coalesce($3, 9223372036854775807) END
ORDER BY CASE WHEN $4 THEN position END, CASE WHEN NOT $4 THEN position END DESC
LIMIT $5
