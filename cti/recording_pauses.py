"""PCI pause of a call's recording: the PBX's `recording.paused` / `recording.resumed`.

While a card number is read out the recording is paused (the agent's `recording.pause`
control, or the PBX on its own). The call's hash says so (`rec_paused_at`, who paused in
`rec_paused_by`); each pause and resume is one versioned step (routing/legs.py) that
leaves the call's state where it is. The interaction keeps the intervals in
`recording_pauses`, seconds from the answer (`from_s`, `to_s`) with who paused and who
resumed, and each change is in the audit log. A recording still paused when the call ends
or is transferred resumes by itself (the PBX resumes it; the interval closes with
`resumed_by` "hangup" / "transfer"). An interval whose `to_s` is null (its end was lost
to a race with the call's end) lasts until the call ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import orjson

from core import writer
from core.models import utcnow
from cti import messages, records
from cti.agents import AgentLifecycle
from cti.calls import CallError, IllegalTransition, check
from cti.schemas import RecordingPaused, RecordingResumed

# Fields of the call's hash.
PAUSED_AT, PAUSED_BY, PAUSES, BASE = "rec_paused_at", "rec_paused_by", "rec_pauses", "rec_base"


class RecordingNotRunning(CallError):
    code = "recording_not_running"

    def __init__(self, call_id: str, why: str) -> None:
        super().__init__(f"the recording of call {call_id!r} is not running ({why}); "
                         "nothing to pause")


class RecordingNotPaused(CallError):
    code = "recording_not_paused"

    def __init__(self, call_id: str) -> None:
        super().__init__(f"the recording of call {call_id!r} is not paused; nothing to resume")


def pauses(call: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The call's closed pause intervals so far."""
    return cast(list[dict[str, Any]], orjson.loads(call.get(PAUSES) or "[]"))


def _base(call: Mapping[str, Any], now: float) -> float:
    return float(call.get(BASE) or call.get("answered_at") or now)


def paused_intervals(call: Mapping[str, Any], now: float, resumed_by: str
                     ) -> list[dict[str, Any]]:
    """The intervals with the one in progress (if any) closed at `now` by `resumed_by`."""
    done = pauses(call)
    if not call.get(PAUSED_AT):
        return done
    base = _base(call, now)
    return [*done, {"from_s": round(float(call[PAUSED_AT]) - base, 3),
                    "to_s": round(now - base, 3), "by": call.get(PAUSED_BY) or "pbx",
                    "resumed_by": resumed_by}]


def closing(call: Mapping[str, Any], now: float, why: str
            ) -> tuple[dict[str, str], dict[str, Any], list[writer.Op]]:
    """A call that ends or is transferred while paused: the call fields that end the pause,
    the interaction's values (the intervals; one update per step, as numbered writes want:
    core/sequenced.py) and the audit entry. Not paused as read: the fields still clear a
    pause a racing step may have set since (the PBX resumes on its own), nothing else."""
    if not call.get(PAUSED_AT):
        return {PAUSED_AT: "", PAUSED_BY: ""}, {}, []
    intervals = paused_intervals(call, now, why)
    fields = {PAUSED_AT: "", PAUSED_BY: "", PAUSES: orjson.dumps(intervals).decode()}
    return fields, {"recording_pauses": intervals}, [
        audit_op(str(call.get("id")), "recording.resumed", why, intervals[-1])]


def audit_op(call_id: str, action: str, actor: str, detail: Mapping[str, Any]) -> writer.Op:
    """An audit-log entry for a pause or resume (no personal data: who, the call, when).
    `actor`: "role:name" of whoever asked, or what did it ("pbx", "hangup", "transfer")."""
    role, _, name = actor.rpartition(":")
    return writer.Insert("audit_log", {
        "at": utcnow(), "actor": name[:64], "role": (role or "system")[:16],
        "action": action, "object_type": "call", "object_id": call_id[:128], "remote": None,
        "detail": dict(detail)})


class RecordingPauseEvents(AgentLifecycle):
    async def _recording_paused(self, frame: RecordingPaused, integration: str
                                ) -> list[writer.Op]:
        return await self._pause_step(frame, await self._requester(frame.command_id))

    async def _recording_resumed(self, frame: RecordingResumed, integration: str
                                 ) -> list[writer.Op]:
        return await self._pause_step(frame, await self._requester(frame.command_id))

    async def _requester(self, command_id: str | None) -> str:
        """Who asked for the command the PBX carried out; "pbx" when it acted alone."""
        if not command_id:
            return "pbx"
        by = await self.store.redis.hget(self.keys.command(command_id), "by")
        return cast(str | None, by) or "pbx"

    async def _pause_step(self, frame: RecordingPaused | RecordingResumed,
                          by: str) -> list[writer.Op]:
        def writes(call: dict[str, str], now: float
                   ) -> tuple[str, str, dict[str, Any], list[writer.Op]]:
            state = check(frame.call_id, call["state"], frame.type).value
            fields, ops = _step_writes(frame, call, by, now)
            return state, state, fields, ops

        call, ops, now = await self._versioned_step(frame, writes)
        agent_id = messages.int_or_none(call.get("agent_id"))
        if agent_id is not None:
            await self._to_agent(agent_id, {"type": frame.type, "call_id": frame.call_id})
        await self._notify(frame.type, {**call, "agent_id": agent_id, "at": now, "by": by})
        return ops


def _step_writes(frame: RecordingPaused | RecordingResumed, call: dict[str, str], by: str,
                 now: float) -> tuple[dict[str, Any], list[writer.Op]]:
    """What a pause or resume writes on the call and owes the database; refused (as an
    illegal transition) when the recording is paused already / not paused."""
    pausing = isinstance(frame, RecordingPaused)
    if bool(call.get(PAUSED_AT)) == pausing:
        raise IllegalTransition(frame.call_id, "recording " + (
            "paused" if pausing else "running"), frame.type)
    event = records.event_op(frame.event_id, frame.call_id, frame.type)
    if pausing:
        base = _base(call, now)
        opened = {"from_s": round(now - base, 3), "to_s": None, "by": by, "resumed_by": None}
        return ({PAUSED_AT: now, PAUSED_BY: by, BASE: base},
                [event, records.interaction_op(frame.call_id,
                                               recording_pauses=[*pauses(call), opened]),
                 audit_op(frame.call_id, "recording.paused", by, opened)])
    intervals = paused_intervals(call, now, by)
    return ({PAUSED_AT: "", PAUSED_BY: "", PAUSES: orjson.dumps(intervals).decode()},
            [event, records.interaction_op(frame.call_id, recording_pauses=intervals),
             audit_op(frame.call_id, "recording.resumed", by, intervals[-1])])


__all__ = ["PAUSED_AT", "PAUSES", "RecordingNotPaused", "RecordingNotRunning", "audit_op",
           "RecordingPauseEvents", "closing", "paused_intervals"]
