"""Supervisors' live monitoring: listen (nobody hears the supervisor), whisper (only the
agent does) and barge (all three talk), switching between them, and stop.

A change is claimed in one Lua step (cti/monitor_steps.py: the call is in progress, no one
else monitors it, no other change pending), sent to the call's PBX as `route.monitor`
through the PBX commands (cti/commands.py), and settled by the PBX's outcome in another.
Only the winner of the settling step audits the change and tells the agent (whisper and
barge show on the agent's console as `monitor.notice`). The call's end or transfer clears
the monitor (`observe`); the PBX tears down its own side then.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit
from core.bus import Bus
from core.keys import Keys
from core.models import Call
from cti.calls import CONSULT, TALKING, CallError, NoSuchCall
from cti.commands import CommandError, Guard, Outcome, PbxCommands
from cti.context import FOLLOWED
from cti.control import ControlFailed, ControlService
from cti.monitor_steps import Claim, Monitor, MonitorSteps

log = logging.getLogger(__name__)

ROUTE_MONITOR = "route.monitor"
MODES = ("listen", "whisper", "barge", "stop")
# What the agent is shown: whisper and barge; listening is silent.
SHOWN = frozenset({"whisper", "barge"})
SYSTEM = audit.Viewer("system", "system", None)
# A call in progress: its agent talks to the caller (or consults a colleague about it).
MONITORED = sorted(s.value for s in TALKING | CONSULT)
# What takes the call from its agent, and with it the monitoring of the agent's leg.
LEFT_AGENT = {"call.transferred": "transferred", "consult.completed": "transferred"}


@dataclass(frozen=True)
class Supervisor:
    """Who monitors: its agent id, name and phone; `override`: may stop another's
    monitor (an admin)."""

    agent_id: int
    name: str
    extension: str
    override: bool = False


@dataclass(frozen=True)
class Change:
    call_id: str
    mode: str  # now: listen, whisper, barge, or stop (no monitor)
    previous: str  # before: '' when there was none
    command_id: str  # '' when nothing was sent (already in that mode)


class MonitorError(CallError):
    code = "invalid"


class CallOver(MonitorError):
    code = "call_ended"

    def __init__(self, call_id: str, meanwhile: bool = False) -> None:
        super().__init__(
            f"call {call_id!r} ended or left its agent while the PBX carried this out"
            if meanwhile else f"call {call_id!r} has ended: there is nothing to monitor")


class NotInProgress(MonitorError):
    code = "illegal_transition"

    def __init__(self, call_id: str, state: str) -> None:
        super().__init__(f"call {call_id!r} is {state}: only a call in progress (an agent "
                         "talking to the caller) can be monitored")


class MonitoredByOther(MonitorError):
    code = "monitored_by_other"

    def __init__(self, call_id: str, holder: str, mode: str) -> None:
        super().__init__(f"{holder or 'another supervisor'} is monitoring call {call_id!r}"
                         f"{f' ({mode})' if mode else ''}; one supervisor monitors a call "
                         "at a time")


class NotMonitoring(MonitorError):
    code = "not_monitoring"

    def __init__(self, call_id: str) -> None:
        super().__init__(f"nobody is monitoring call {call_id!r}: nothing to stop")


class MonitorPending(MonitorError):
    code = "monitor_pending"

    def __init__(self, call_id: str) -> None:
        super().__init__(f"a monitoring change for call {call_id!r} is waiting for the PBX; "
                         "try again in a moment")


class MonitorService:
    def __init__(self, steps: MonitorSteps, commands: PbxCommands, control: ControlService,
                 bus: Bus, keys: Keys, maker: async_sessionmaker[AsyncSession]) -> None:
        self.steps, self.commands, self.control = steps, commands, control
        self.bus, self.keys, self.maker = bus, keys, maker

    async def monitor(self, call_id: str, who: Supervisor, mode: str,
                      viewer: audit.Viewer) -> Change:
        """Start, switch or stop monitoring the call; returns once the PBX did it."""
        if mode not in MODES:
            raise ValueError(f"unknown monitoring mode {mode!r}")
        token = uuid.uuid4().hex
        claim = await self.steps.claim(call_id, who.agent_id, who.name, who.extension, mode,
                                       token, MONITORED, who.override)
        await self._check(call_id, claim)
        if claim.code == 5:
            return Change(call_id, mode, claim.mode, "")
        phone = await self.control.phone(call_id)
        outcome = await self._send(call_id, who, mode, claim.mode, token, phone)
        code, now = await self.steps.settle(call_id, token, outcome.ok)
        if not outcome.ok:
            raise ControlFailed(mode, outcome)
        if code != 1:
            raise CallOver(call_id, meanwhile=True)  # cleared by the call's end or transfer
        change = Change(call_id, now or "stop", claim.mode, outcome.command_id)
        await self._changed(change, who, viewer, phone.get("agent_id"))
        return change

    async def _check(self, call_id: str, claim: Claim) -> None:
        match claim.code:
            case 0 if claim.state == "unknown":
                raise await self._gone(call_id)
            case 0 if claim.state in ("wrap_up", "ended", "abandoned"):
                raise CallOver(call_id)
            case 0:
                raise NotInProgress(call_id, claim.state)
            case 2:
                raise MonitoredByOther(call_id, claim.holder, claim.mode)
            case 3:
                raise NotMonitoring(call_id)
            case 4:
                raise MonitorPending(call_id)

    async def _gone(self, call_id: str) -> CallError:
        """A call not live: one that ended, or one there never was."""
        async with self.maker() as session:
            known = await session.scalar(select(Call.id).where(Call.id == call_id))
        return CallOver(call_id) if known else NoSuchCall(call_id)

    async def _send(self, call_id: str, who: Supervisor, mode: str, previous: str,
                    token: str, phone: dict[str, Any]) -> Outcome:
        """`route.monitor` to the call's PBX; a refusal before sending gives back the claim."""
        fields = {"supervisor_extension": who.extension, "mode": mode,
                  "previous_mode": previous, "supervisor_id": who.agent_id, **phone}
        try:
            return await self.commands.send(ROUTE_MONITOR, fields, call_id=call_id,
                                             guard=Guard(MONITORED, exclusive=False))
        except CommandError as e:
            await self.steps.settle(call_id, token, False)
            if e.code in ("unknown_call", "illegal_transition"):
                raise CallOver(call_id) from e
            raise

    async def _changed(self, change: Change, who: Supervisor, viewer: audit.Viewer,
                       agent_id: int | None) -> None:
        action = ("monitor.stop" if change.mode == "stop" else
                  "monitor.start" if not change.previous else "monitor.switch")
        await self._audit(viewer, action, change.call_id, {
            "mode": change.mode, "previous": change.previous or None, "agent_id": agent_id,
            "supervisor_id": who.agent_id, "supervisor_extension": who.extension,
            "command_id": change.command_id})
        await self._notice(agent_id, change.call_id, change.previous, change.mode, who.name)

    async def _audit(self, viewer: audit.Viewer, action: str, call_id: str,
                     detail: dict[str, Any]) -> None:
        async with self.maker() as session, session.begin():
            audit.record(session, viewer, action, [("call", call_id)], detail)

    async def _notice(self, agent_id: int | None, call_id: str, before: str, after: str,
                      supervisor: str) -> None:
        """Tell the agent when what it can notice changed (whisper, barge, or neither)."""
        shown = after if after in SHOWN else "none"
        if agent_id is None or shown == (before if before in SHOWN else "none"):
            return
        await self.bus.publish(self.keys.agent_channel(agent_id), {
            "type": "monitor.notice", "call_id": call_id, "mode": shown,
            "supervisor": supervisor})

    async def observe(self, name: str, data: dict[str, Any]) -> None:
        """A call observer: the call's end, or its agent handing it on (a transfer, a
        completed consult transfer), ends its monitor."""
        if name != "call.ended" and name not in LEFT_AGENT:
            return
        if data.get(FOLLOWED) is False:  # its hang-up found no monitor
            return
        call_id = str(data.get("id") or data.get("call_id"))
        agent = data.get("agent_id")
        agent_id = int(agent) if agent not in (None, "") else None
        gone = await self.steps.clear(call_id, None if name == "call.ended" else agent_id)
        await self._ended(call_id, gone, LEFT_AGENT.get(name, "call_ended"))

    async def supervisor_left(self, call_id: str, supervisor_id: int,
                              reason: str = "supervisor_left") -> None:
        """The PBX says the supervisor's phone left the monitoring (hung up, or never
        answered; `failed`: the PBX could not keep it up): that supervisor's monitor of
        the call is gone."""
        gone = await self.steps.clear(call_id, supervisor_id=supervisor_id)
        await self._ended(call_id, gone, reason)

    async def _ended(self, call_id: str, gone: Monitor | None, reason: str) -> None:
        if gone is None or not gone.mode:
            return  # nothing, or a start the PBX had not confirmed yet (it fails now)
        log.debug("call %s: %s's monitor ended (%s)", call_id, gone.supervisor, reason)
        await self._audit(SYSTEM, "monitor.end", call_id, {
            "mode": gone.mode, "supervisor_id": gone.supervisor_id,
            "supervisor": gone.supervisor, "agent_id": gone.agent_id, "reason": reason})
        await self._notice(gone.agent_id, call_id, gone.mode, "stop", gone.supervisor)
