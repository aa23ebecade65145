-- Each stream's folded state after its current version, written in the same statement as the version
-- check. It is a cache of fold(events): a command decides on it instead of re-reading the whole stream.
-- A snapshot whose schema or version does not match is ignored and the stream is folded from events.

ALTER TABLE streams ADD COLUMN snapshot jsonb;

-- Serialize on a key, then read: one round trip. Inside a VOLATILE function every statement takes a
-- fresh snapshot, so the SELECT sees what the previous lock holder committed.
CREATE FUNCTION ledger_lock_and_read_stream(p_lock_key text, p_stream_id text)
RETURNS TABLE (version bigint, head_hash bytea, snapshot jsonb)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_lock_key, 0));
    RETURN QUERY SELECT s.version, s.head_hash, s.snapshot FROM streams s WHERE s.stream_id = p_stream_id;
END
$$;

-- The idempotency record of a key, read after waiting for any request holding the same key.
CREATE FUNCTION ledger_lock_and_find_idempotency(
    p_lock_key text, p_account text, p_livemode boolean, p_key text
)
RETURNS SETOF idempotency_keys
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_lock_key, 0));
    RETURN QUERY SELECT * FROM idempotency_keys k
        WHERE k.account = p_account AND k.livemode = p_livemode AND k.key = p_key;
END
$$;
