"""What queue callbacks write to the system of record (the `callbacks` table, and the
call a connected callback becomes), and how a recorded callback goes back to the live
state. Pure functions; cti/callbacks.py applies them."""

from __future__ import annotations

from typing import Any

import orjson

from core import writer
from core.models import Callback
from cti import messages, records
from cti.calls import CallState
from cti.schemas import CallbackRequested, CallbackResult
from routing.callbacks import Result


def callback_pop(row: Callback, customer: dict[str, Any] | None) -> dict[str, Any]:
    """The agent's screen-pop of a callback: the customer, marked as a callback."""
    return {"call_id": row.id, "ani": row.number, "customer": customer, "ivr": {},
            "tier": row.tier, "queue": row.queue,
            "callback": {"callback_id": row.id, "call_id": row.call_id, "number": row.number,
                         "requested_at": row.requested_at.timestamp(), "source": row.source,
                         **({"note": row.note} if row.note else {})}}


def callback_fields(row: Callback, pop: dict[str, Any]) -> dict[str, str | int | float]:
    """A recorded callback's live fields (routing/callbacks.py)."""
    return {"call_id": row.call_id or "", "number": row.number, "ani": row.number,
            "queue": row.queue, "score": row.score, "rings": row.rings,
            "offered_at": row.offered_at.timestamp(), "tier": row.tier,
            "integration": row.integration, "customer_id": row.customer_id or "",
            "source": row.source, "promised_to": row.agent_id or "",
            "attempts": row.attempts, "pop": orjson.dumps(pop).decode()}


def public(callback: dict[str, str]) -> dict[str, Any]:
    return {"callback_id": callback.get("id"), "call_id": callback.get("call_id"),
            "number": callback.get("number"), "queue": callback.get("queue"),
            "customer_id": callback.get("customer_id") or None,
            "attempts": int(callback.get("attempts") or 0)}


def request_ops(frame: CallbackRequested, call: dict[str, str], callback_id: str,
                 number: str, integration: str, now: float,
                 due: float | None) -> list[writer.Op]:
    """The call ends as converted (not abandoned); the callback is recorded."""
    return [
        records.event_op(frame.event_id, frame.call_id, frame.type),
        records.call_op(frame.call_id, state=CallState.callback.value),
        records.interaction_op(frame.call_id, ended_at=records.at(now), end_cause="callback",
                               outcome="callback",
                               wait_s=now - float(call.get("offered_at") or now),
                               **messages.routing_record(call)),
        writer.Insert("callbacks", {
            "id": callback_id, "call_id": frame.call_id, "source": "caller", "number": number,
            "queue": call["queue"], "customer_id": call.get("customer_id") or None,
            "tier": call.get("tier") or "standard", "state": "pending", "attempts": 0,
            "agent_id": None, "requested_by": None, "note": "", "integration": integration,
            "score": float(call["score"]), "rings": call.get("rings", ""),
            "offered_at": records.at(float(call["offered_at"])),
            "requested_at": records.at(now), "due_at": records.at(due or now)}),
    ]


def result_ops(frame: CallbackResult, live: dict[str, str], now: float,
                max_attempts: int) -> list[writer.Op]:
    attempts = int(live.get("attempts") or 0) + 1
    state = "connected" if frame.outcome == "connected" else (
        "pending" if attempts < max_attempts else "failed")
    ops = [records.event_op(frame.event_id, frame.callback_id, frame.type),
           callback_op(frame.callback_id, state, attempts, frame.outcome, live, now)]
    if state == "connected":
        ops += call_ops(live, now)
    return ops


def outcome_ops(callback_id: str, result: Result, outcome: str,
                 now: float) -> list[writer.Op]:
    state = "pending" if result.state == "retry" else result.state
    return [callback_op(callback_id, state, int(result.callback.get("attempts") or 0),
                        outcome, result.callback, now)]


def callback_op(callback_id: str, state: str, attempts: int, outcome: str,
                 live: dict[str, str], now: float) -> writer.Op:
    values: dict[str, Any] = {"state": state, "attempts": attempts, "last_outcome": outcome,
                              "agent_id": int(live["agent_id"]) if live.get("agent_id")
                              else None}
    if state != "pending":
        values["ended_at"] = records.at(now)
    return writer.Update("callbacks", "id", callback_id, values)


def call_ops(live: dict[str, str], now: float) -> list[writer.Op]:
    """A connected callback is a call of its own (id: the callback's), answered now."""
    when, agent_id = records.at(now), int(live["agent_id"])
    queue, customer = live.get("queue") or "default", live.get("customer_id") or None
    ivr = {"callback_of": live.get("call_id") or None, "callback_id": live["id"]}
    return [
        writer.Insert("calls", {"id": live["id"], "state": "connected", "queue": queue,
                                "ani": live.get("number", ""), "dnis": "",
                                "customer_id": customer, "tier": live.get("tier", "standard"),
                                "ivr": {**ivr, "_integration": live.get("integration", "")},
                                "offered_at": when, "updated_at": when, "node_id": None,
                                "agent_id": agent_id, "seq": records.OFFER_SEQ},
                      skip_existing=True),
        writer.Insert("interactions", {
            "call_id": live["id"], "customer_id": customer, "queue": queue,
            "tier": live.get("tier", "standard"), "ani": live.get("number", ""), "ivr": ivr,
            "offered_at": when, "answered_at": when, "wait_s": 0.0, "agent_id": agent_id,
            "agent_ids": [agent_id], "routing_reason": orjson.loads(live.get("reason") or "{}"),
            "transcript_status": "none", "complaint_flag": False, "callback_id": live["id"],
            "seq": records.OFFER_SEQ}, skip_existing=True),
    ]
