"""Webhook errors, each with a stable code the HTTP edge turns into a status."""

from __future__ import annotations


class BadWebhook(Exception):
    """A subscription that cannot be accepted: its URL or its event types."""

    code = "invalid"


class NoSuchSubscription(Exception):
    code = "not_found"

    def __init__(self, subscription_id: int) -> None:
        super().__init__(f"no webhook subscription {subscription_id}")
        self.subscription_id = subscription_id


class NoSuchDelivery(Exception):
    code = "not_found"

    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"no dead-lettered delivery {delivery_id} for this subscription")
        self.delivery_id = delivery_id
