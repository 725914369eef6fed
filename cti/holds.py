"""The PBX's hold events: `call.held` (connected -> on_hold) and `call.resumed` (back).

The call counts its holds and the seconds spent on hold (`hold_count`, `hold_s`, and
`held_at` while held); the interaction record gets them with each event, and a call that
ends or is transferred while held adds its last hold (cti/telephony.py). Each is one
versioned step (routing/legs.py): a loser reads the call again and decides again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core import writer
from cti import messages, records
from cti.agents import AgentLifecycle
from cti.calls import CallState, check
from cti.schemas import CallHeld, CallResumed


def hold_figures(call: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The call's hold count and total hold time as of now (a hold in progress counted)."""
    held = float(call.get("hold_s") or 0)
    if call.get("held_at"):
        held += max(0.0, now - float(call["held_at"]))
    return {"hold_count": int(call.get("hold_count") or 0), "hold_s": round(held, 3)}


class HoldEvents(AgentLifecycle):
    async def _call_held(self, frame: CallHeld, integration: str) -> list[writer.Op]:
        return await self._hold_step(frame, CallState.connected, CallState.on_hold)

    async def _call_resumed(self, frame: CallResumed, integration: str) -> list[writer.Op]:
        return await self._hold_step(frame, CallState.on_hold, CallState.connected)

    async def _hold_step(self, frame: CallHeld | CallResumed, before: CallState,
                         after: CallState) -> list[writer.Op]:
        def writes(call: dict[str, str], now: float
                   ) -> tuple[str, str, dict[str, Any], list[writer.Op]]:
            check(frame.call_id, call["state"], frame.type)
            fields = _hold_fields(call, after, now)
            return before.value, after.value, fields, [
                records.event_op(frame.event_id, frame.call_id, frame.type),
                records.call_op(frame.call_id, state=after.value, queue=call.get("queue", ""),
                                agent_id=messages.int_or_none(call.get("agent_id"))),
                records.interaction_op(frame.call_id, **hold_figures(fields, now))]

        call, ops, now = await self._versioned_step(frame, writes)
        await self._held_or_resumed(frame, call, now)
        return ops

    async def _held_or_resumed(self, frame: CallHeld | CallResumed, call: dict[str, str],
                               now: float) -> None:
        """Tell the agent on the call and the observers (the wallboard)."""
        agent_id = messages.int_or_none(call.get("agent_id"))
        notice = {"type": frame.type, "call_id": frame.call_id}
        if agent_id is not None:
            await self._to_agent(agent_id, notice)
        await self._notify(frame.type, {**call, "agent_id": agent_id, "at": now})


def _hold_fields(call: dict[str, str], after: CallState, now: float) -> dict[str, Any]:
    """What the step writes on the call: a new hold, or the end of one."""
    if after is CallState.on_hold:
        return {"held_at": now, "hold_count": int(call.get("hold_count") or 0) + 1,
                "hold_s": call.get("hold_s") or 0}
    return {"held_at": "", "hold_count": call.get("hold_count") or 0,
            "hold_s": hold_figures(call, now)["hold_s"]}
