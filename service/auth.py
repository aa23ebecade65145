"""Secret API keys: generated once, stored only as SHA-256, checked in constant time.

A key belongs to one account and one mode (`sk_test_…` or `sk_live_…`). Lookups are cached for a
few seconds (Config.api_key_cache_ttl_s), so a revocation takes effect within that time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import string
import time
from dataclasses import dataclass

import asyncpg

from ledgerd.service.errors import StripeError
from ledgerd.service.ids import random_token

KEY_ALPHABET = string.ascii_letters + string.digits
PREFIX_LENGTH = 16  # "sk_test_" + 8 characters: enough to name a key, useless to an attacker
NO_KEY_MESSAGE = (
    "You did not provide an API key. You need to provide your API key in the Authorization header, "
    "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
)


@dataclass(frozen=True)
class ApiKey:
    id: str
    account: str
    livemode: bool
    secret_hash: bytes


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_secret(livemode: bool) -> str:
    mode = "live" if livemode else "test"
    return f"sk_{mode}_" + random_token(40, KEY_ALPHABET)


def masked(secret: str) -> str:
    return f"{secret[:8]}****{secret[-4:]}" if len(secret) > 12 else "****"


async def create_key(conn: asyncpg.Connection, account: str, livemode: bool) -> tuple[str, str]:
    """Create a key; return (key id, secret). The secret is not stored anywhere."""
    secret = new_secret(livemode)
    key_id = "key_" + random_token(16, KEY_ALPHABET)
    await conn.execute(
        "INSERT INTO api_keys (id, account, livemode, prefix, secret_hash) VALUES ($1, $2, $3, $4, $5)",
        key_id,
        account,
        livemode,
        secret[:PREFIX_LENGTH],
        hash_secret(secret),
    )
    return key_id, secret


async def revoke_key(conn: asyncpg.Connection, key_prefix_or_id: str) -> str:
    """Revoke one key named by its id, its full secret, or an unambiguous prefix (≥ 12 characters)."""
    needle = key_prefix_or_id.strip()
    if needle.startswith("key_"):
        rows = await conn.fetch("SELECT id FROM api_keys WHERE id = $1 AND revoked_at IS NULL", needle)
    elif len(needle) > PREFIX_LENGTH:
        rows = await conn.fetch(
            "SELECT id FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL", hash_secret(needle)
        )
    elif len(needle) >= 12:
        rows = await conn.fetch(
            "SELECT id FROM api_keys WHERE starts_with(prefix, $1) AND revoked_at IS NULL", needle
        )
    else:
        raise ValueError("give a key id (key_…), the secret, or at least its first 12 characters")
    if len(rows) != 1:
        raise ValueError(f"{len(rows)} active keys match {needle!r}; nothing revoked")
    await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", rows[0]["id"])
    return str(rows[0]["id"])


def secret_from_header(authorization: str | None) -> str:
    if not authorization:
        raise StripeError(401, NO_KEY_MESSAGE)
    if not (authorization.isascii() and authorization.isprintable()):
        raise StripeError(401, "Invalid API Key provided: the Authorization header is not printable ASCII.")
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise StripeError(401, "Invalid Basic authorization header.") from None
        user, _, _ = decoded.partition(":")
        if user:
            return user
    raise StripeError(401, NO_KEY_MESSAGE)


class KeyCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[bytes, tuple[ApiKey | None, float]] = {}

    def get(self, digest: bytes) -> tuple[bool, ApiKey | None]:
        entry = self._entries.get(digest)
        if entry is None or entry[1] < time.monotonic():
            return False, None
        return True, entry[0]

    def put(self, digest: bytes, key: ApiKey | None) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[digest] = (key, time.monotonic() + self.ttl_s)


async def authenticate(pool: asyncpg.Pool, cache: KeyCache, authorization: str | None) -> ApiKey:
    secret = secret_from_header(authorization)
    digest = hash_secret(secret)
    hit, key = cache.get(digest)
    if not hit:
        row = await pool.fetchrow(
            "SELECT id, account, livemode, secret_hash FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL",
            digest,
        )
        key = (
            None
            if row is None
            else ApiKey(row["id"], row["account"], row["livemode"], bytes(row["secret_hash"]))
        )
        cache.put(digest, key)
    if key is None or not hmac.compare_digest(key.secret_hash, digest):
        raise StripeError(401, f"Invalid API Key provided: {masked(secret)}")
    return key
