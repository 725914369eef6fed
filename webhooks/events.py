"""Which events a webhook can carry, and what each one says.

The call service tells its observers about calls by its own names; `from_call_service`
turns the ones receivers care about into webhook events with a stable payload (the
fields listed here and nothing else: a receiver's contract must not change when the
live call state gains a field).
"""

from __future__ import annotations

from typing import Any

COMPLAINT_STATES = ("received", "validated", "resolving", "resolved", "follow_up_done",
                    "closed", "rejected", "assigned", "escalated")
CALLBACK_EVENTS = ("requested", "scheduled", "connected", "retry", "failed", "cancelled",
                   "reassigned")
EVENT_TYPES = frozenset({
    "call.offered", "call.answered", "call.ended", "wrapup.done", "survey.result",
    "transcript.ready", "customer.created", "customer.erased",
    *(f"complaint.{state}" for state in COMPLAINT_STATES),
    *(f"callback.{what}" for what in CALLBACK_EVENTS)})
# A subscription may name these patterns besides exact types.
PATTERNS = frozenset({"complaint.*", "callback.*", "*"})

# The call service's observer names -> webhook event types.
_CALL_EVENTS = {"call.offered": "call.offered", "call.answered": "call.answered",
                "call.ended": "call.ended", "call.completed": "wrapup.done",
                "survey.result": "survey.result"}
_CALLBACK_FIELDS = ("callback_id", "call_id", "number", "queue", "customer_id", "agent_id",
                   "attempts", "outcome", "due_at", "source", "by")
_CALL_FIELDS = ("queue", "tier", "ani", "dnis", "customer_id", "agent_id", "offered_at",
                "answered_at", "ended_at", "end_cause", "outcome", "talk_s", "handle_s",
                "score")


def invalid_types(names: list[str]) -> list[str]:
    return [n for n in names if n not in EVENT_TYPES and n not in PATTERNS]


def matches(subscribed: list[str], event_type: str) -> bool:
    if "*" in subscribed or event_type in subscribed:
        return True
    family = event_type.split(".", 1)[0]
    return family in ("complaint", "callback") and f"{family}.*" in subscribed


def webhook_type(name: str) -> str | None:
    """The webhook type of a call-service event, or None if it is not one we send."""
    if name.startswith("callback.") and name in EVENT_TYPES:
        return name
    return _CALL_EVENTS.get(name)


def from_call_service(name: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(webhook type, payload) for a call-service event, or None if not one we send."""
    kind = webhook_type(name)
    if kind is None:
        return None
    if kind.startswith("callback."):
        return kind, {key: data[key] for key in _CALLBACK_FIELDS
                      if data.get(key) not in (None, "")}
    call_id = data.get("call_id") or data.get("id")
    payload: dict[str, Any] = {"call_id": call_id}
    for key in _CALL_FIELDS:
        value = data.get(key)
        if value not in (None, ""):
            payload[key] = _number(value) if key.endswith(("_at", "_s", "_id")) \
                and key != "customer_id" else value
    return kind, payload


def _number(value: Any) -> Any:
    try:
        return float(value) if "." in str(value) else int(value)
    except ValueError:
        return value
