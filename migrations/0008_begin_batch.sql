-- The first round trip of a group-commit transaction (service/group_commit.py): take every advisory
-- lock its commands need (idempotency keys and streams) in one global order, so that no two batches
-- can wait for each other, then read the idempotency records and stream heads as committed by the
-- previous holders (a VOLATILE function: the reads take a snapshot after the locks).
-- One row per record found (kind 'idempotency') and per existing stream (kind 'stream').
CREATE FUNCTION ledger_begin_batch(
    p_lock_keys text[], p_accounts text[], p_livemodes boolean[], p_keys text[], p_stream_ids text[]
)
RETURNS TABLE (
    kind text, account text, livemode boolean, key text, method text, path text, params_hash bytea,
    params text, status integer, response bytea, request_id text,
    stream_id text, version bigint, head_hash bytea, snapshot text
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    lock_id bigint;
BEGIN
    FOR lock_id IN
        SELECT DISTINCT hashtextextended(k, 0) FROM unnest(p_lock_keys) AS k ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(lock_id);
    END LOOP;
    RETURN QUERY
        SELECT 'idempotency'::text, r.account, r.livemode, r.key, r.method, r.path, r.params_hash,
               r.params::text, r.status, r.response, r.request_id,
               NULL::text, NULL::bigint, NULL::bytea, NULL::text
        FROM idempotency_keys r
        JOIN unnest(p_accounts, p_livemodes, p_keys) AS u(account, livemode, key)
          ON r.account = u.account AND r.livemode = u.livemode AND r.key = u.key
        UNION ALL
        SELECT 'stream'::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               s.stream_id, s.version, s.head_hash, s.snapshot::text
        FROM streams s WHERE s.stream_id = ANY (p_stream_ids);
END
$$;
