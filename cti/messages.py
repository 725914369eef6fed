"""The messages the call path sends: to the PBX (acks, route.connect, route.queued) and to
an agent's console (screen_pop, agent.state). Pure functions of the live state."""

from __future__ import annotations

from typing import Any

import orjson

from cti.schemas import Frame
from routing.states import AgentState


def ack(frame: Frame, duplicate: bool = False) -> dict[str, Any]:
    return {"type": "ack", "event_id": frame.event_id, "duplicate": duplicate}


def route_connect(call_id: str, agent_id: int, extension: str) -> dict[str, Any]:
    return {"type": "route.connect", "call_id": call_id, "agent_id": agent_id,
            "extension": extension}


def route_callback(callback: dict[str, str], agent_id: int, extension: str) -> dict[str, Any]:
    """Place a callback: ring the agent's extension first, then call the number."""
    return {"type": "route.callback", "callback_id": callback["id"],
            "call_id": callback.get("call_id") or None, "number": callback["number"],
            "agent_id": agent_id, "extension": extension,
            "attempt": int(callback.get("attempts") or 0) + 1}


def callback_accepted(callback_id: str, call_id: str, number: str,
                      due_at: float) -> dict[str, Any]:
    return {"type": "callback.accepted", "callback_id": callback_id, "call_id": call_id,
            "number": number, "due_at": due_at}


def route_queued(call_id: str, queue: str, position: int, wait_s: int) -> dict[str, Any]:
    return {"type": "route.queued", "call_id": call_id, "queue": queue,
            "position": position, "estimated_wait_s": wait_s}


def screen_pop(call: dict[str, str], reason: dict[str, Any]) -> dict[str, Any]:
    pop = orjson.loads(call["pop"])
    message = {"type": "screen_pop", **pop, "routing_reason": reason,
               "new_caller": pop.get("customer") is None}
    if call.get("transferred_from"):  # a transferred call: its queue now, and from whom
        message["queue"] = call.get("queue", pop.get("queue"))
        message["transferred_from"] = int(call["transferred_from"])
    return message


def consult_pop(call: dict[str, str], reason: dict[str, Any]) -> dict[str, Any]:
    """The consulted agent's screen-pop: the call's, marked as a consult from its agent."""
    return {**screen_pop(call, reason), "consult": {
        "from_agent_id": int_or_none(call.get("consult_by") or call.get("agent_id")),
        "to": call.get("consult_to", ""), "notes": call.get("consult_notes", "")}}


# A consult's call state as `call.consult` names it.
CONSULT_STATES = {"consult_ringing": "ringing", "consulting": "talking",
                  "conference": "conference"}


def consult_notice(call_id: str, state: str, a: int | None, b: int | None,
                   cause: str = "") -> dict[str, Any]:
    """`call.consult` for A's and B's consoles: where the consult stands."""
    notice: dict[str, Any] = {"type": "call.consult", "call_id": call_id, "state": state,
                              "from_agent_id": a, "agent_id": b}
    if cause:
        notice["cause"] = cause
    return notice


def agent_state(agent_id: int, agent: dict[str, str]) -> dict[str, Any]:
    """`changed_by`: the supervisor who set this state (None: the agent or a call did);
    `pending`: the state kept for after the current call, and who chose it."""
    return {"type": "agent.state", "agent_id": agent_id,
            "state": agent.get("state", AgentState.logged_out.value),
            "reason": agent.get("reason") or None, "since": float(agent.get("since") or 0),
            "call_id": agent.get("call_id") or None, "changed_by": changed_by(agent),
            "pending": pending(agent)}


def changed_by(agent: dict[str, str]) -> str | None:
    # `by` names whoever set the state that began at `by_since`; a later change of the
    # state (a new `since`) leaves it behind.
    by = agent.get("by")
    return by if by and agent.get("by_since") == agent.get("since") else None


def pending(agent: dict[str, str]) -> dict[str, Any] | None:
    after = agent.get("after_wrap")
    if not after or not agent.get("call_id"):
        return None
    return {"state": after, "reason": agent.get("after_wrap_reason") or None,
            "changed_by": agent.get("after_wrap_by") or None}


def routing_record(call: dict[str, str]) -> dict[str, Any]:
    """What the interaction keeps of routing: why the last agent was chosen, and who rang."""
    agents = [int(a) for a in (call.get("agents") or "").split(",") if a]
    values: dict[str, Any] = {"agent_ids": agents}
    if call.get("reason"):
        values["routing_reason"] = orjson.loads(call["reason"])
    if agents:
        values["agent_id"] = agents[-1]
    return values


def int_or_none(value: str | None) -> int | None:
    return int(value) if value else None
