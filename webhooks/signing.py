"""HMAC-SHA256 signatures over the timestamp and the body, in the style Stripe uses.

Header ``Webhook-Signature: t=<unix seconds>,v1=<hex>`` where hex is
HMAC-SHA256(secret, "<t>.<body>"). The timestamp inside the signed text lets a
receiver refuse replays older than a few minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

HEADER = "Webhook-Signature"
ID_HEADER = "Webhook-Id"
TYPE_HEADER = "Webhook-Event"


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(secret: str, value: str, body: bytes, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    parts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(parts.get("v1", ""), signature(secret, timestamp, body))
