"""Desktop call control over ARI: the gateway's `route.control` commands carried out on
Asterisk, each answered with exactly one `control.result`.

- hold / resume: `POST` / `DELETE /channels/{caller}/hold`. Asterisk indicates hold to the
  caller's channel (music on hold plays to the caller); then `call.held` / `call.resumed`.
- hangup: `DELETE /channels/{agent leg}`; Asterisk's hangup events for the agent's leg end
  the call with cause `agent_hangup` as when the agent hangs up the phone.
- transfer (blind): to a number, `POST /channels/{caller}/continue` into the transfer
  context (CALLCENTER_ARI_TRANSFER_CONTEXT) with the number as extension; to a queue or an
  agent, the agent's leg is hung up, the caller stays in the bridge and `call.transferred`
  sends the call back to routing (music on the bridge, or the next agent rung).
- recording.pause / recording.resume (PCI): `POST` / `DELETE
  /recordings/live/{name}/pause` on the call's bridge recording (Asterisk writes no audio
  while it is paused); then `recording.paused` / `recording.resumed` carrying the command's
  id. A call not being recorded is refused `recording_not_running`. A transfer back into
  routing resumes a paused recording first.
- consult transfer, consult.complete, consult.cancel, conference: cti/ari_consult.py.
- answer: `not_supported`: ARI cannot make the agent's phone go off-hook; the agent leg is
  answered at the phone (see docs/asterisk.md).

ARI refusals become `ok: false` with a reason from the HTTP status. A call the adapter no
longer knows (ended meanwhile) is answered `call_ended`; the server usually failed the
command already, and a late result is then only logged.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict

from cti.ari_calls import CallControl
from cti.ari_client import AriError
from cti.ari_consult import AriConsult, ConsultRefused
from cti.ari_legs import Legs
from cti.calls import CallError
from cti.control import ControlService
from cti.schemas import (
    CallHeld,
    CallResumed,
    CallTransferred,
    ControlResult,
    Frame,
    RecordingPaused,
    RecordingResumed,
)
from cti.service import Outcome

log = logging.getLogger(__name__)

# ARI's HTTP statuses for channel requests (rest-api/api-docs/channels.json) as reasons.
_REASONS = {0: "ari_unreachable", 400: "ari_bad_request", 404: "channel_not_found",
            409: "channel_not_in_stasis", 412: "channel_invalid_state"}


class ControlMessage(BaseModel):
    """`route.control` from the gateway, as the adapter reads it."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["route.control"]
    command_id: str
    call_id: str
    action: str
    to_queue: str | None = None
    to_agent_id: int | None = None
    to_number: str | None = None
    to_extension: str = ""
    mode: str = "blind"
    reason: str = ""


def reason_for(error: AriError) -> str:
    return _REASONS.get(error.status, "ari_error")


class AriCommands:
    def __init__(self, calls: CallControl, control: ControlService) -> None:
        self.calls, self.control = calls, control
        self.client = calls.client
        self.consult = AriConsult(calls)

    async def carry_out(self, command: ControlMessage) -> None:
        """Do the command (under the call's lock) and answer it once."""
        legs = self.calls.legs.get(command.call_id)
        if legs is None or legs.ended:
            await self._result(command, "call_ended")
            return
        try:
            follow = await self._do(legs, command)
        except AriError as e:
            log.info("call %s: %s refused by Asterisk: %s", legs.call_id, command.action, e)
            await self._result(command, reason_for(e))
            return
        except (_Refused, ConsultRefused) as e:
            await self._result(command, e.reason)
            return
        await self._result(command, "")
        if follow is not None:
            outcome = await self.calls.send(follow)
            if isinstance(follow, CallTransferred):
                await self._after_transfer(legs, follow, outcome)

    async def _do(self, legs: Legs, command: ControlMessage) -> Frame | None:
        """Carry the action out on Asterisk: the state event to send after the result."""
        action, eid = command.action, f"ari:{command.command_id}:{command.action}"
        if action == "hold":
            await self.client.hold(legs.call_id)
            return CallHeld(type="call.held", event_id=eid, call_id=legs.call_id)
        if action == "resume":
            await self.client.unhold(legs.call_id)
            return CallResumed(type="call.resumed", event_id=eid, call_id=legs.call_id)
        if action == "hangup":
            if legs.agent_channel is None:
                raise _Refused("no_agent_leg")
            await self.client.hangup(legs.agent_channel)
            return None  # the agent leg's hangup events end the call
        if action == "transfer" and command.mode == "consult":
            await self.consult.start(legs, command)
            return None  # consult.answered comes with the colleague's answer
        if action == "transfer":
            return await self._transfer(legs, command, eid)
        if action == "consult.complete":
            return await self.consult.complete(legs, eid)
        if action == "consult.cancel":
            return await self.consult.cancel(legs, command, eid)
        if action == "conference":
            return await self.consult.conference(legs, eid)
        if action in ("recording.pause", "recording.resume"):
            return await self._recording(legs, command, eid)
        raise _Refused("not_supported")  # answer, and anything this adapter cannot do

    async def _recording(self, legs: Legs, command: ControlMessage, eid: str) -> Frame:
        """PCI pause or resume of the call's bridge recording."""
        if not legs.recording:
            raise _Refused("recording_not_running")
        pausing = command.action == "recording.pause"
        try:
            if pausing:
                await self.client.pause_recording(legs.recording_name)
            else:
                await self.client.unpause_recording(legs.recording_name)
        except AriError as e:
            if e.status in (404, 409):  # no such recording, or not in session
                raise _Refused("recording_not_running") from e
            raise
        legs.recording_paused = pausing
        if pausing:
            return RecordingPaused(type="recording.paused", event_id=eid, call_id=legs.call_id,
                                   command_id=command.command_id)
        return RecordingResumed(type="recording.resumed", event_id=eid, call_id=legs.call_id,
                                command_id=command.command_id)

    async def _resume_recording(self, legs: Legs) -> None:
        """A transfer resumes a paused recording (the service closes the pause itself)."""
        if legs.recording_paused:
            await self.client.unpause_recording(legs.recording_name)
            legs.recording_paused = False

    async def _transfer(self, legs: Legs, command: ControlMessage, eid: str) -> Frame:
        """Blind transfer. Out to a number: the caller leaves the application for the
        transfer context, which dials it. To a queue or an agent: the agent's leg is hung
        up (the caller stays in the bridge) and the call goes back to routing."""
        frame = CallTransferred(type="call.transferred", event_id=eid, call_id=legs.call_id,
                                to_queue=command.to_queue, to_agent_id=command.to_agent_id,
                                to_number=command.to_number)
        if command.to_number is not None:
            await self.client.continue_in_dialplan(
                legs.call_id, self.calls.config.transfer_context, command.to_number)
            return frame
        await self.client.unhold(legs.call_id)  # no-op unless held: the caller hears routing
        await self._resume_recording(legs)
        old = legs.agent_channel
        legs.forget_agent()  # its hangup events are no longer the call's end
        await self.calls.end_monitor(legs)  # the monitoring was of this agent's leg
        if old is not None:
            try:
                await self.client.hangup(old)
            except AriError as e:
                if not e.gone:
                    raise
        return frame

    async def _after_transfer(self, legs: Legs, frame: CallTransferred,
                              outcome: Outcome | None) -> None:
        if frame.to_number is not None:
            await self.calls.release(legs)
            return
        if frame.to_queue is not None:
            legs.queue = frame.to_queue
        await self.calls.follow(legs, outcome)

    async def _result(self, command: ControlMessage, reason: str) -> None:
        await self.answer(command.command_id, reason)

    async def answer(self, command_id: str, reason: str) -> None:
        """The command's `control.result`: ok when `reason` is empty."""
        frame = ControlResult.model_validate(
            {"type": "control.result", "event_id": f"ari:{command_id}:result",
             "command_id": command_id, "ok": not reason,
             **({"reason": reason} if reason else {})})
        try:
            await self.control.result(frame, self.calls.integration)
        except CallError as e:
            # Decided already (the call ended, the command timed out): normal in telephony.
            log.debug("control.result for %s not taken: %s", command_id, e)


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
