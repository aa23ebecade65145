"""Idempotency-Key on the Webhook Endpoints API's POSTs and DELETEs, as on the command path: the same key and
parameters replay the first result (`Idempotent-Replayed: true`) instead of writing again (a create retried by
an SDK makes one endpoint, not two); other parameters are a 400 `idempotency_error`. The record is written
in the same transaction as the endpoint, in the same `idempotency_keys` table (same retention)."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from ledgerd.domain.errors import Conflict
from ledgerd.service.appkeys import ACCOUNT, LIVEMODE, REPLAYED, REQUEST_ID
from ledgerd.service.commands.idempotency import IdempotencyRequest, check_replay
from ledgerd.service.errors import json_response
from ledgerd.service.routes.plumbing import idempotency_of
from ledgerd.service.store.base import IdempotencyRecord

SQL_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
SQL_FIND = "SELECT * FROM idempotency_keys WHERE account = $1 AND livemode = $2 AND key = $3"
SQL_RECORD = """
INSERT INTO idempotency_keys (account, livemode, key, method, path, params_hash, params, status, response, request_id)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)
ON CONFLICT DO NOTHING
"""


async def begin(
    conn: asyncpg.Connection, request: web.Request, payload: dict[str, Any]
) -> tuple[IdempotencyRequest | None, web.Response | None]:
    """First thing in the writing transaction: wait for any request holding the same key; then either the
    key to record the result under, or the recorded answer to replay (write nothing then)."""
    idempotency = idempotency_of(request, payload)
    if idempotency is None:
        return None, None
    scope = (request[ACCOUNT], request[LIVEMODE], idempotency.key)
    await conn.execute(SQL_LOCK, f"webhooks-idempotency:{scope}")
    row = await conn.fetchrow(SQL_FIND, *scope)
    if row is None:
        return idempotency, None
    record = IdempotencyRecord(
        account=row["account"], livemode=row["livemode"], key=row["key"], method=row["method"], path=row["path"],
        params_hash=bytes(row["params_hash"]), params=msgspec.json.decode(row["params"]), status=row["status"],
        response=bytes(row["response"]), request_id=row["request_id"],
    )
    check_replay(record, idempotency)
    headers = {"Idempotency-Key": idempotency.key, "Idempotent-Replayed": "true"}
    if record.request_id:
        headers["Original-Request"] = record.request_id
    request[REPLAYED] = True
    return idempotency, json_response(record.status, record.response, headers)


async def finish(
    conn: asyncpg.Connection, request: web.Request, idempotency: IdempotencyRequest | None, body: bytes
) -> web.Response:
    """Record the result under the key (same transaction) and answer it."""
    if idempotency is None:
        return json_response(200, body)
    status = await conn.execute(
        SQL_RECORD, request[ACCOUNT], request[LIVEMODE], idempotency.key, idempotency.method, idempotency.path,
        idempotency.params_hash, msgspec.json.encode(idempotency.params).decode(), 200, body, request[REQUEST_ID],
    )
    if status.endswith(" 0"):  # a command took the key meanwhile: roll back; the retry replays that result
        raise Conflict("Another request used this Idempotency-Key at the same time; retry.", code="lock_timeout")
    return json_response(200, body, {"Idempotency-Key": idempotency.key})
