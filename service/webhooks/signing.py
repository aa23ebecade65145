"""Webhook signatures over the exact bytes sent.

* Stripe: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>]``, HMAC-SHA256 keyed by the whole secret
  string as UTF-8 (``whsec_`` included) over ``f"{t}.{body}"``: what `stripe.Webhook.construct_event` and
  stripe-node's `webhooks.constructEvent` verify. One ``v1`` per secret still active (a rolled secret
  keeps signing until it expires).
* Standard Webhooks: ``webhook-id`` (the event id, the same on every retry), ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64> [v1,<base64>]``, HMAC-SHA256 over ``f"{id}.{t}.{body}"`` keyed by
  the secret's base64 part decoded (``whsec_`` + 32 base62 characters is valid base64 for 24 bytes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from ledgerd.service.ids import random_token

SECRET_PREFIX = "whsec_"
SECRET_LENGTH = 32


def new_secret() -> str:
    return SECRET_PREFIX + random_token(SECRET_LENGTH)


def stripe_signature(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def standard_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    message = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secrets: Sequence[str], event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    stripe_header = f"t={timestamp}," + ",".join(
        f"v1={stripe_signature(secret, timestamp, body)}" for secret in secrets
    )
    return {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": stripe_header,
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(standard_signature(s, event_id, timestamp, body) for s in secrets),
    }
