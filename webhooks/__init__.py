"""Outbound webhooks: signed, durable, ordered per call (docs/webhooks.md)."""
