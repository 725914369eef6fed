"""Call control from the desktop: an agent's (or a supervisor's) request to act on a call
becomes a `route.control` command to the PBX (cti/commands.py), and its outcome the
answer. The call changes only when the PBX's events say it did (call.held, ...).

Which action is legal in which call state, who may ask, and what the PBX is told are
decided here; sending, the single decision of the outcome and the timeout are the
commands' business.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cti.calls import TALKING, CallError, CallState
from cti.commands import CommandError, Guard, Outcome, PbxCommands, UnknownCommand
from cti.schemas import ControlResult
from routing.service import Router
from routing.states import AgentState

log = logging.getLogger(__name__)

ROUTE_CONTROL = "route.control"

# action -> the call states it may be asked in
ACTION_STATES: dict[str, frozenset[CallState]] = {
    "hold": frozenset({CallState.connected}),
    "resume": frozenset({CallState.on_hold}),
    "hangup": frozenset({CallState.connected, CallState.on_hold}),
    "answer": frozenset({CallState.ringing}),
    "transfer": TALKING,
}

# Outcome reasons of ours, and the PBX's well-known ones, as error codes; any other reason
# the PBX gives is a `control_failed` carrying it.
_CODES = {"timeout": "control_timeout", "pbx_unavailable": "pbx_unavailable",
          "call_ended": "call_ended", "not_supported": "not_supported"}
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
    integration any call (`agent_id` None)."""

    call_id: str
    action: str
    agent_id: int | None = None


class ControlService:
    def __init__(self, commands: PbxCommands, router: Router) -> None:
        self.commands, self.router, self.store = commands, router, router.store

    async def control(self, request: Request, **fields: Any) -> Outcome:
        """Send the action to the call's PBX and wait for its outcome: returned when done,
        ControlFailed when not, a CommandError when refused before sending."""
        states = ACTION_STATES.get(request.action)
        if states is None:
            raise ValueError(f"unknown action {request.action!r}")
        extra = await self.phone(request.call_id)
        if request.action == "transfer":
            fields = await self._target(fields, extra.get("agent_id"))
        outcome = await self.commands.send(
            ROUTE_CONTROL, {"action": request.action, **extra, **fields},
            call_id=request.call_id,
            guard=Guard([s.value for s in states], request.agent_id))
        if not outcome.ok:
            raise ControlFailed(request.action, outcome)
        return outcome

    async def phone(self, call_id: str) -> dict[str, Any]:
        """What the PBX needs to find the call's agent leg: the agent and its extension."""
        agent_id = await self.store.redis.hget(self.store.keys.call(call_id), "agent_id")
        if not agent_id:
            return {}
        agent = await self.store.agent(int(agent_id))
        return {"agent_id": int(agent_id), "extension": agent.get("extension", "")}

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
        """A call observer: the commands pending on a call that ended fail at once."""
        if name == "call.ended":
            await self.commands.call_gone(str(data.get("id") or data.get("call_id")))


__all__ = ["ACTION_STATES", "ControlFailed", "ControlService", "LateResult", "Request",
           "UnknownCommand"]
