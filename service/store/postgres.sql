-- The two statements of a command (or of a batch of commands): `read`, then, after Python has decided,
-- `write`. Each runs on its own, outside any explicit transaction: `read` holds no lock while the
-- decision is made; `write` is one implicit transaction that checks every stream's version and writes
-- everything or nothing. {customer_assignments} is filled in from projections/customers.py.

-- name: read
-- $1 streams; $2-$4 idempotency scopes; $5-$7 external_id claims; $8-$9 (stream, balance transaction);
-- and one row with the database's clock.
SELECT 'stream' AS kind, s.stream_id, s.version, s.head_hash, s.snapshot::text AS snapshot,
       s.recorded_at, NULL::text AS account, NULL::boolean AS livemode, NULL::text AS key,
       NULL::text AS method, NULL::text AS path, NULL::bytea AS params_hash, NULL::text AS params,
       NULL::integer AS status, NULL::bytea AS response, NULL::text AS request_id,
       NULL::bigint AS position, NULL::bigint AS tx_id, NULL::text AS event_id, NULL::text AS event_type,
       NULL::integer AS schema_version, NULL::text AS data, NULL::text AS metadata, NULL::bytea AS hash
FROM streams s
WHERE s.stream_id = ANY ($1::text[])
UNION ALL
SELECT 'claim', c.customer_id, s.version, s.head_hash, s.snapshot::text, s.recorded_at,
       c.account, c.livemode, c.external_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM external_id_claims c
JOIN unnest($5::text[], $6::boolean[], $7::text[]) AS u(account, livemode, external_id)
  ON c.account = u.account AND c.livemode = u.livemode AND c.external_id = u.external_id
LEFT JOIN streams s ON s.stream_id = c.customer_id
UNION ALL
SELECT 'idempotency', NULL, NULL, NULL, NULL, NULL, k.account, k.livemode, k.key, k.method, k.path,
       k.params_hash, k.params::text, k.status, k.response, k.request_id,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM idempotency_keys k
JOIN unnest($2::text[], $3::boolean[], $4::text[]) AS u(account, livemode, key)
  ON k.account = u.account AND k.livemode = u.livemode AND k.key = u.key
UNION ALL
SELECT 'transaction', e.stream_id, e.stream_version, NULL, NULL, e.recorded_at, NULL, NULL,
       e.data ->> 'transaction_id', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       e.position, e.tx_id, e.event_id, e.event_type, e.schema_version, e.data::text, e.metadata::text,
       e.hash
FROM events e
JOIN unnest($8::text[], $9::text[]) AS u(stream_id, transaction_id)
  ON e.stream_id = u.stream_id AND e.data ? 'transaction_id' AND e.data ->> 'transaction_id' = u.transaction_id
UNION ALL
-- The database's clock: the one clock of every process writing to it (plan.py, one clock per stream).
SELECT 'clock', NULL, NULL, NULL, NULL, clock_timestamp(), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL

-- name: write
-- Streams ($1-$9, one entry per stream of the batch: its expected version, and its new head, which is
-- the expected version itself when the stream is only confirmed), events ($10-$19, in append order),
-- projection rows as JSON arrays ($20-$24; new rows without their position, which comes from the event
-- that created them), idempotency records ($25-$34), external_id claims released ($35-$38) and taken
-- ($39-$42), and $43: how many stream entries must match. A stream whose lock another session holds
-- (a command deciding again after a lost race, runner.py) fails the statement as a moved stream does.
WITH
streams_created AS (
    INSERT INTO streams (stream_id, stream_type, account, livemode, version, head_hash, snapshot, recorded_at)
    SELECT u.stream_id, u.stream_type, u.account, u.livemode, u.version, u.head_hash, u.snapshot::jsonb,
           u.recorded_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[], $5::bigint[], $6::bigint[], $7::bytea[],
                $8::text[], $9::timestamptz[])
         AS u(stream_id, stream_type, account, livemode, expected, version, head_hash, snapshot, recorded_at)
    WHERE u.expected = 0 AND u.version > 0
    ON CONFLICT (stream_id) DO NOTHING
    RETURNING 1
),
streams_advanced AS (
    UPDATE streams s
    SET version = u.version, head_hash = u.head_hash, snapshot = u.snapshot::jsonb, recorded_at = u.recorded_at,
        updated_at = now()
    FROM unnest($1::text[], $5::bigint[], $6::bigint[], $7::bytea[], $8::text[], $9::timestamptz[])
         AS u(stream_id, expected, version, head_hash, snapshot, recorded_at)
    WHERE u.expected > 0 AND u.version > u.expected AND s.stream_id = u.stream_id AND s.version = u.expected
    RETURNING 1
),
streams_confirmed AS (
    SELECT 1 FROM streams s
    JOIN unnest($1::text[], $5::bigint[], $6::bigint[]) AS u(stream_id, expected, version)
      ON s.stream_id = u.stream_id
    WHERE u.expected > 0 AND u.version = u.expected AND s.version = u.expected
    FOR SHARE OF s
),
appended AS (
    INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data, metadata,
                        recorded_at, hash, canonical)
    SELECT u.stream_id, u.version, u.event_id, u.event_type, u.schema_version, u.data::jsonb, u.metadata::jsonb,
           u.recorded_at, u.hash, u.canonical
    FROM unnest($10::text[], $11::bigint[], $12::text[], $13::text[], $14::integer[], $15::text[], $16::text[],
                $17::timestamptz[], $18::bytea[], $19::bytea[]) WITH ORDINALITY
         AS u(stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at, hash,
              canonical, n)
    ORDER BY u.n  -- positions in append order: one command's events stay together
    RETURNING stream_id, stream_version, position, tx_id
),
customers_created AS (
    INSERT INTO customers
    SELECT r.* FROM jsonb_array_elements($20::jsonb) AS doc(row)
    JOIN appended a ON a.stream_id = doc.row ->> 'id' AND a.stream_version = 1
    CROSS JOIN LATERAL jsonb_populate_record(NULL::customers, doc.row || jsonb_build_object('position', a.position)) AS r
    RETURNING 1
),
customers_changed AS (
    UPDATE customers c SET {customer_assignments}
    FROM jsonb_populate_recordset(NULL::customers, $21::jsonb) AS r
    -- The ANY(...) gives the planner an index path: it estimates 100 rows for the recordset and, with a
    -- generic plan, hash-joined it against a sequential scan of every customer (O(customers) per command).
    WHERE c.id = r.id AND c.id = ANY (ARRAY(SELECT jsonb_array_elements($21::jsonb) ->> 'id'))
    RETURNING 1
),
transactions_created AS (
    INSERT INTO balance_transactions
    SELECT r.* FROM jsonb_array_elements($22::jsonb) AS doc(row)
    JOIN appended a ON a.stream_id = doc.row ->> 'customer_id' AND a.stream_version = (doc.row ->> 'version')::bigint
    CROSS JOIN LATERAL jsonb_populate_record(NULL::balance_transactions,
                                             doc.row || jsonb_build_object('position', a.position)) AS r
    RETURNING 1
),
transactions_changed AS (
    UPDATE balance_transactions t SET description = r.description, metadata = r.metadata
    FROM jsonb_populate_recordset(NULL::balance_transactions, $23::jsonb) AS r
    WHERE t.id = r.id AND t.id = ANY (ARRAY(SELECT jsonb_array_elements($23::jsonb) ->> 'id'))
    RETURNING 1
),
feed AS (
    INSERT INTO stripe_events
    SELECT r.* FROM jsonb_array_elements($24::jsonb) AS doc(row)
    JOIN appended a ON a.stream_id = doc.row ->> 'customer_id'
                   AND a.stream_version = (doc.row ->> 'stream_version')::bigint
    CROSS JOIN LATERAL jsonb_populate_record(NULL::stripe_events,
                                             doc.row || jsonb_build_object('position', a.position)) AS r
    RETURNING 1
),
recorded AS (
    INSERT INTO idempotency_keys (account, livemode, key, method, path, params_hash, params, status, response,
                                  request_id)
    SELECT u.account, u.livemode, u.key, u.method, u.path, u.params_hash, u.params::jsonb, u.status, u.response,
           u.request_id
    FROM unnest($25::text[], $26::boolean[], $27::text[], $28::text[], $29::text[], $30::bytea[], $31::text[],
                $32::integer[], $33::bytea[], $34::text[])
         AS u(account, livemode, key, method, path, params_hash, params, status, response, request_id)
    RETURNING 1
),
released AS (
    DELETE FROM external_id_claims c
    USING unnest($35::text[], $36::boolean[], $37::text[], $38::text[]) AS u(account, livemode, external_id, customer_id)
    WHERE c.account = u.account AND c.livemode = u.livemode AND c.external_id = u.external_id
      AND c.customer_id = u.customer_id
      AND c.account = ANY ($35::text[]) AND c.external_id = ANY ($37::text[])
    RETURNING 1
),
claimed AS (
    INSERT INTO external_id_claims (account, livemode, external_id, customer_id)
    SELECT * FROM unnest($39::text[], $40::boolean[], $41::text[], $42::text[])
    RETURNING 1
)
SELECT ledger_expect_streams(
           (SELECT count(*) FROM streams_created) + (SELECT count(*) FROM streams_advanced)
               + (SELECT count(*) FROM streams_confirmed),
           $43::integer,
           (SELECT bool_and(pg_try_advisory_xact_lock(hashtextextended('stream:' || u.stream_id, 0)))
            FROM unnest($1::text[]) AS u(stream_id))) AS streams,
       (SELECT count(*) FROM customers_created) + (SELECT count(*) FROM customers_changed)
           + (SELECT count(*) FROM transactions_created) + (SELECT count(*) FROM transactions_changed)
           + (SELECT count(*) FROM feed) + (SELECT count(*) FROM recorded) + (SELECT count(*) FROM released)
           + (SELECT count(*) FROM claimed) AS rows,
       coalesce((SELECT array_agg(a.stream_id ORDER BY a.position) FROM appended a), '{}') AS stream_ids,
       coalesce((SELECT array_agg(a.stream_version ORDER BY a.position) FROM appended a), '{}') AS versions,
       coalesce((SELECT array_agg(a.position ORDER BY a.position) FROM appended a), '{}') AS positions,
       (SELECT max(a.tx_id) FROM appended a) AS tx_id
