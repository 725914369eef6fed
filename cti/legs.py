"""A call's legs: each agent who talked with the caller, in order, how the leg ended
(`hangup`, `transferred`, ...), where a transfer sent the caller, and the agent's own
wrap-up of the leg. Kept on the live call (`legs`, JSON) and written to the interaction
record (`interactions.legs`) with the event that ends each leg; pure functions here."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from cti import messages, records

log = logging.getLogger(__name__)


def legs_of(call: dict[str, str]) -> list[dict[str, Any]]:
    """The legs the call has ended so far (none when it has no valid list)."""
    try:
        legs = orjson.loads(call.get("legs") or "[]")
    except orjson.JSONDecodeError:
        log.warning("call %s holds legs that are not JSON; starting again", call.get("id"))
        return []
    return legs if isinstance(legs, list) else []


def ended_leg(call: dict[str, str], now: float, end: str, **extra: Any) -> dict[str, Any]:
    """The leg of the call's current agent, ending now."""
    answered = float(call.get("answered_at") or now)
    return {"agent_id": messages.int_or_none(call.get("agent_id")),
            "answered_at": records.at(answered).isoformat(),
            "ended_at": records.at(now).isoformat(), "talk_s": round(now - answered, 3),
            "end": end, **extra}


def with_leg(call: dict[str, str], leg: dict[str, Any]) -> list[dict[str, Any]]:
    return [*legs_of(call), leg]


def wrapped(legs: list[dict[str, Any]], agent_id: int, wrap: dict[str, str]
            ) -> list[dict[str, Any]] | None:
    """The legs with the agent's wrap-up (disposition, notes) on its last leg not yet
    wrapped up; None when it has none."""
    for i in range(len(legs) - 1, -1, -1):
        leg = legs[i]
        if leg.get("agent_id") == agent_id and "disposition" not in leg:
            return [*legs[:i], {**leg, **wrap}, *legs[i + 1:]]
    return None


def target(to_queue: str | None, to_agent_id: int | None, to_number: str | None) -> str:
    """Where a transfer sends the caller, as legs name it."""
    if to_queue is not None:
        return f"queue:{to_queue}"
    if to_agent_id is not None:
        return f"agent:{to_agent_id}"
    return f"number:{to_number}"
