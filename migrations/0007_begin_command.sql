-- A command's first round trip, for commands whose stream is known up front (every command but an
-- upsert or an external_id change, which must resolve the external_id first): wait for the request
-- holding the same idempotency key and read its record; unless there is one, serialize on the stream
-- and read its head. Same locks in the same order as ledger_lock_and_find_idempotency followed by
-- ledger_lock_and_read_stream, in one call instead of two. Always exactly one row: `record_found` tells
-- whether a record exists; `stream_locked` whether the stream part ran (version NULL = no stream yet).
CREATE FUNCTION ledger_begin_command(
    p_idempotency_lock_key text, p_account text, p_livemode boolean, p_key text,
    p_stream_lock_key text, p_stream_id text,
    OUT record_found boolean, OUT method text, OUT path text, OUT params_hash bytea, OUT params text,
    OUT status integer, OUT response bytea, OUT request_id text,
    OUT stream_locked boolean, OUT version bigint, OUT head_hash bytea, OUT snapshot text
)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_idempotency_lock_key, 0));
    SELECT k.method, k.path, k.params_hash, k.params::text, k.status, k.response, k.request_id
        INTO method, path, params_hash, params, status, response, request_id
        FROM idempotency_keys k WHERE k.account = p_account AND k.livemode = p_livemode AND k.key = p_key;
    record_found := FOUND;
    stream_locked := NOT record_found;
    IF stream_locked THEN
        -- A fresh snapshot per statement (VOLATILE): this sees what the previous lock holder committed.
        PERFORM pg_advisory_xact_lock(hashtextextended(p_stream_lock_key, 0));
        SELECT s.version, s.head_hash, s.snapshot::text INTO version, head_hash, snapshot
            FROM streams s WHERE s.stream_id = p_stream_id;
    END IF;
END
$$;

