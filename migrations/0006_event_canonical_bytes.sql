-- The exact bytes each event's hash covers (canonical bytes, version 1: see service/store/base.py):
-- written at append, so a verifier can check the chain as sha256(previous hash || canonical) without
-- rebuilding the bytes from the JSON columns. It is redundant with the other columns by design; a
-- verifier also proves that they agree. NULL for events appended before this migration: verifiers
-- rebuild those bytes from the columns, as before.
ALTER TABLE events ADD COLUMN canonical bytea;
