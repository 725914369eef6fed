"""Call control from the desktop: an agent's (or a supervisor's) request to act on a call
becomes a `route.control` command to the PBX (cti/commands.py), and its outcome the
answer. The call changes only when the PBX's events say it did (call.held, ...).

Which action is legal in which call state, who may ask, and what the PBX is told are
decided here; sending, the single decision of the outcome and the timeout are the
commands' business.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from core.auth import Principal
from cti.calls import CONSULT, TALKING, WITH_AGENT, CallError, CallState
from cti.commands import (
    CommandError,
    FieldNotAsGuarded,
    Guard,
    NotInState,
    NotYourCall,
    Outcome,
    PbxCommands,
    UnknownCommand,
)
from cti.consult import ConsultEvents
from cti.context import FOLLOWED
from cti.recording_pauses import PAUSED_AT, RecordingNotPaused, RecordingNotRunning
from cti.schemas import ControlResult
from routing.service import Router
from routing.states import AgentState

log = logging.getLogger(__name__)

ROUTE_CONTROL = "route.control"

# action -> the call states it may be asked in
ACTION_STATES: dict[str, frozenset[CallState]] = {
    "hold": frozenset({CallState.connected}),
    "resume": frozenset({CallState.on_hold}),
    "hangup": WITH_AGENT,
    "answer": frozenset({CallState.ringing, CallState.consult_ringing}),
    "transfer": TALKING,
    "consult.complete": frozenset({CallState.consulting, CallState.conference}),
    "consult.cancel": CONSULT,
    "conference": frozenset({CallState.consulting}),
    "recording.pause": WITH_AGENT,
    "recording.resume": WITH_AGENT,
}
# Actions on the call's recording (PCI pause): the call field that says it is paused must
# be blank (pause) or set (resume) when the command is sent (cti/recording_pauses.py).
_RECORDING_GUARD = {"recording.pause": False, "recording.resume": True}

# Outcome reasons of ours, and the PBX's well-known ones, as error codes; any other reason
# the PBX gives is a `control_failed` carrying it.
_CODES = {"timeout": "control_timeout", "pbx_unavailable": "pbx_unavailable",
          "call_ended": "call_ended", "not_supported": "not_supported",
          "recording_not_running": "recording_not_running"}
# Outcomes no control.result decided: a result arriving after them is too late.
_EXPIRED = frozenset({"timeout", "pbx_unavailable", "call_ended"})


class ControlFailed(CallError):
    """The PBX did not carry the command out (it said so, did not answer, is not
    connected, or the call ended first)."""

    def __init__(self, action: str, outcome: Outcome) -> None:
        self.code = _CODES.get(outcome.reason, "control_failed")
        self.reason, self.command_id = outcome.reason, outcome.command_id
        super().__init__(_explain(action, outcome))


def _explain(action: str, outcome: Outcome) -> str:
    match outcome.reason:
        case "timeout":
            return f"the PBX did not confirm {action} in time; the call is unchanged"
        case "pbx_unavailable":
            return f"no PBX connection can take {action} now; the call is unchanged"
        case "call_ended":
            return f"the call ended before the PBX carried out {action}"
        case "not_supported":
            return f"this PBX cannot {action} remotely"
    return f"the PBX refused {action}: {outcome.reason or 'no reason given'}"


def _guard(request: Request, states: frozenset[CallState]) -> Guard:
    paused = _RECORDING_GUARD.get(request.action)
    return Guard([s.value for s in states], request.agent_id,
                 field=PAUSED_AT if paused is not None else "", field_set=bool(paused))


def _consulted_leaves(request: Request, extra: dict[str, Any]) -> bool:
    """The consulted agent hangs up its consult leg (or cancels the consult) from its
    console: it leaves the consult, which ends as a `consult.cancel` does."""
    return request.action in ("hangup", "consult.cancel") and request.agent_id is not None \
        and request.agent_id == extra.get("consult_agent_id") \
        and request.agent_id != extra.get("agent_id")


def _leave_consult(request: Request) -> tuple[Request, Guard]:
    """`consult.cancel` as the consulted agent asks it: checked against the call's
    consulted agent, in the consult's states."""
    left = Request(request.call_id, "consult.cancel", request.agent_id, request.by)
    return left, Guard([s.value for s in CONSULT], request.agent_id,
                       agent_field="consult_agent")


def _recording_refusal(request: Request, error: CommandError) -> CallError:
    """A refused recording action says what is wrong with the recording."""
    if request.action == "recording.pause":
        why = "paused already" if isinstance(error, FieldNotAsGuarded) else \
            f"the call is {getattr(error, 'state', '?')}"
        return RecordingNotRunning(request.call_id, why)
    if request.action == "recording.resume":
        return RecordingNotPaused(request.call_id)
    return error


class LateResult(CommandError):
    """A control.result for a command decided already (timed out, or answered)."""

    def __init__(self, command_id: str, outcome: Outcome) -> None:
        expired = outcome.reason in _EXPIRED
        self.code = "command_expired" if expired else "command_decided"
        what = f"failed ({outcome.reason})" if expired else "was answered by another result"
        super().__init__(f"command {command_id} {what} before this result; "
                         "its requester was told so")


class UnknownQueue(CallError):
    code = "unknown_queue"

    def __init__(self, queue: str) -> None:
        super().__init__(f"no queue {queue!r}")


class UnknownAgent(CallError):
    code = "unknown_agent"

    def __init__(self, agent_id: int) -> None:
        super().__init__(f"no agent {agent_id} is known to routing")


class AgentUnavailable(CallError):
    code = "agent_unavailable"

    def __init__(self, agent_id: int, why: str) -> None:
        super().__init__(f"agent {agent_id} cannot take the call: {why}")


@dataclass(frozen=True)
class Request:
    """Who asks: an agent controls only its own call (`agent_id`); a supervisor, admin or
    integration any call (`agent_id` None). `by`: who, as the audit log names them."""

    call_id: str
    action: str
    agent_id: int | None = None
    by: str = ""


def requester(principal: Principal) -> str:
    """Who asks, as the recording's pauses and the audit log name them: "role:name"."""
    return f"{principal.role.value}:{principal.name}"


class ControlService:
    def __init__(self, commands: PbxCommands, router: Router, calls: ConsultEvents) -> None:
        self.commands, self.router, self.store = commands, router, router.store
        self.calls = calls
        self._notices: set[asyncio.Task[None]] = set()

    async def control(self, request: Request, **fields: Any) -> Outcome:
        """Send the action to the call's PBX and wait for its outcome: returned when done,
        ControlFailed when not, a CommandError when refused before sending."""
        states = ACTION_STATES.get(request.action)
        if states is None:
            raise ValueError(f"unknown action {request.action!r}")
        notes = str(fields.pop("notes", None) or "")
        extra = await self._phone(request.call_id)
        state = extra.pop("state", None)
        guard = _guard(request, states)
        if request.action == "transfer":
            fields = await self._target(fields, extra.get("agent_id"))
        if fields.get("mode") == "consult":
            return await self._consult(request, {**extra, **fields}, notes)
        if request.action == "answer" and state == CallState.consult_ringing.value:
            extra, guard = self._consult_answer(request, extra)
        elif _consulted_leaves(request, extra):
            request, guard = _leave_consult(request)
        try:
            outcome = await self.commands.send(
                ROUTE_CONTROL, {"action": request.action, **extra, **fields},
                call_id=request.call_id, guard=guard, by=request.by)
        except (NotInState, FieldNotAsGuarded) as e:
            raise _recording_refusal(request, e) from e
        if not outcome.ok:
            raise ControlFailed(request.action, outcome)
        return outcome

    async def _consult(self, request: Request, fields: dict[str, Any], notes: str) -> Outcome:
        """Reserve the consulted agent (the call's step), then ask the PBX to call it; a
        PBX that does not carry it out frees the agent and gives the call back."""
        reserved = await self.calls.consult_start(
            request.call_id, request.agent_id, to_agent_id=fields.get("to_agent_id"),
            to_queue=fields.get("to_queue"), notes=notes)
        frame = {"action": "transfer", **fields, "to_agent_id": reserved.agent_id,
                 "to_extension": reserved.extension}
        try:
            outcome = await self.commands.send(
                ROUTE_CONTROL, frame, call_id=request.call_id,
                guard=Guard([CallState.consult_ringing.value], request.agent_id),
                by=request.by)
        except CommandError:
            await self.calls.consult_undo(request.call_id, reserved.agent_id, "failed")
            raise
        if not outcome.ok:
            await self.calls.consult_undo(request.call_id, reserved.agent_id, "failed")
            raise ControlFailed("transfer", outcome)
        return outcome

    @staticmethod
    def _consult_answer(request: Request, extra: dict[str, Any]
                        ) -> tuple[dict[str, Any], Guard]:
        """The consulted agent answers its consult leg from its console (the call is not
        its own yet: only it, or a supervisor, may)."""
        b = extra.get("consult_agent_id")
        if request.agent_id is not None and request.agent_id != b:
            raise NotYourCall(request.call_id)
        states = [CallState.consult_ringing.value]
        return ({"agent_id": b, "extension": extra.get("consult_extension", ""),
                 "consult": True}, Guard(states, None))

    async def phone(self, call_id: str) -> dict[str, Any]:
        """What the PBX needs to find the call's agent leg: the agent and its extension,
        and during a consult the consulted agent and its extension."""
        found = await self._phone(call_id)
        found.pop("state", None)
        return found

    async def _phone(self, call_id: str) -> dict[str, Any]:
        """phone(), and (for us only) the call's state."""
        agent_id, consulted, state = await self.store.redis.hmget(
            self.store.keys.call(call_id), ["agent_id", "consult_agent", "state"])
        if not agent_id:
            return {}
        agent = await self.store.agent(int(agent_id))
        found = {"agent_id": int(agent_id), "extension": agent.get("extension", ""),
                 "state": state}
        if consulted:
            other = await self.store.agent(int(consulted))
            found.update(consult_agent_id=int(consulted),
                         consult_extension=other.get("extension", ""))
        return found

    async def _target(self, fields: dict[str, Any], current: int | None) -> dict[str, Any]:
        """A transfer's target checked (a known queue; an agent logged in, not the one
        on the call), with what the PBX needs to reach an agent."""
        queue, agent_id = fields.get("to_queue"), fields.get("to_agent_id")
        if queue is not None and queue not in self.router.queues:
            raise UnknownQueue(queue)
        if agent_id is None:
            return fields
        agent = await self.store.agent(agent_id)
        if not agent:
            raise UnknownAgent(agent_id)
        if agent_id == current:
            raise AgentUnavailable(agent_id, "the call is with this agent already")
        if agent.get("state", AgentState.logged_out.value) == AgentState.logged_out.value:
            raise AgentUnavailable(agent_id, "logged out")
        return {**fields, "to_extension": agent.get("extension", "")}

    async def result(self, frame: ControlResult, integration: str) -> bool:
        """The PBX's control.result: True when it decided the outcome, False for a resend
        of the result that did; LateResult or UnknownCommand otherwise."""
        outcome = Outcome(frame.command_id, frame.ok, "" if frame.ok else frame.reason
                          or "refused", frame.detail)
        decision = await self.commands.decide(outcome, integration=integration,
                                              event_id=frame.event_id)
        if decision.won:
            return True
        if decision.same_event:
            return False
        assert decision.outcome is not None
        raise LateResult(frame.command_id, decision.outcome)

    async def observe(self, name: str, data: dict[str, Any]) -> None:
        """A call observer: the commands pending on a call that ended fail at once; a
        consulted agent who did not answer is hung up on (the PBX gives the caller back)."""
        if name == "call.ended":
            if data.get(FOLLOWED) is False:  # its hang-up found no command pending
                return
            await self.commands.call_gone(str(data.get("id") or data.get("call_id")))
        elif name == "consult.no_answer":
            task = asyncio.create_task(self._cancel_unanswered(data))
            self._notices.add(task)
            task.add_done_callback(self._notices.discard)

    async def _cancel_unanswered(self, call: dict[str, Any]) -> None:
        """Tell the PBX to drop the consult leg nobody answered; its outcome is only
        logged (the call has moved on already)."""
        try:
            outcome = await self.commands.send(
                ROUTE_CONTROL, {"action": "consult.cancel", "reason": "no_answer",
                                "agent_id": int(call["agent_id"]),
                                "consult_agent_id": int(call["consult_agent"])},
                call_id=str(call["id"]))
        except CommandError as e:
            log.info("consult of %s not cancelled at the PBX: %s", call.get("id"), e)
            return
        if not outcome.ok:
            log.info("the PBX did not drop the unanswered consult of %s: %s", call.get("id"),
                     outcome.reason)


__all__ = ["ACTION_STATES", "ControlFailed", "ControlService", "LateResult", "Request",
           "UnknownCommand"]
