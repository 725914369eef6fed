"""An agent's lifecycle around its calls: the state it chooses, wrap-up and its end, its
console going away and coming back, and where it goes after a call."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from core.timers import Timer
from core.writer import numbered
from cti import legs, messages, records
from cti.calls import WITH_AGENT, CallState, WrongAgent, check
from cti.context import CallContext
from routing.admin_steps import Supervised
from routing.service import UnknownAgent
from routing.states import AgentState

log = logging.getLogger(__name__)

# The timer of an agent's console lease (agent_console/presence.py): it fires when no
# console of the agent has renewed it for a while.
AWAY = "away"


def away_timer(agent_id: int) -> Timer:
    return Timer(AWAY, str(agent_id))


# The not-ready reason of an agent whose console went away.
DISCONNECTED = "disconnected"
# What a supervisor may set: out of routing. Only the agent makes itself available.
SUPERVISABLE = frozenset({AgentState.not_ready, AgentState.logged_out})
BUSY = (AgentState.ringing.value, AgentState.on_call.value, AgentState.wrap_up.value)


class AgentLifecycle(CallContext):
    # Agent events -------------------------------------------------------

    async def set_agent_state(self, agent_id: int, state: AgentState, reason: str) -> None:
        now = self.clock()
        assignment = await self.router.set_state(agent_id, state, reason, now)
        await self._record_agent_state(agent_id)
        if assignment is not None:
            await self._dispatch(assignment, None)

    async def supervise_state(self, agent_id: int, state: AgentState, reason: str,
                              by: str) -> Supervised:
        """A supervisor sets an agent's state: now, or after the agent's call (pending).
        Either way the agent's console hears it, with who did it."""
        if state not in SUPERVISABLE or self.admin_steps is None:
            raise ValueError(f"{state.value} is not a state a supervisor can set")
        now = self.clock()
        done = await self.admin_steps.supervise(agent_id, state, reason, by, now)
        if done.outcome == -1:
            raise UnknownAgent(agent_id)
        if done.outcome == 2:  # nothing changed yet: no state to log, only news for the agent
            await self._to_agent(agent_id, messages.agent_state(agent_id, done.agent))
            return done
        await self._agent_changed(agent_id, done.agent)
        await self._offer_next_call(agent_id, done.agent, now)
        return done

    async def offer_waiting(self, agent_id: int, agent: dict[str, str]) -> None:
        """An agent whose pools changed (admin/) takes a waiting call it may now serve."""
        await self._offer_next_call(agent_id, agent, self.clock())

    async def wrapup_done(self, agent_id: int, call_id: str, disposition: str,
                          notes: str) -> None:
        wrap = {"disposition": disposition, "notes": notes}
        # The usual case first, in one step: the call is in this agent's wrap-up.
        if await self._finish_wrap_up(agent_id, call_id, self.clock(), wrap, strict=True):
            return
        if await self._wraps_earlier_leg(agent_id, call_id):
            # The agent wraps up its own leg of a call that went on without it (a
            # transfer): its wrap-up goes on its leg, whatever the call is now.
            await self._wrap_leg(agent_id, call_id, wrap)
            await self._finish_wrap_up(agent_id, call_id, self.clock())
            return
        # A finished call is no longer in Redis: its state from the database.
        live = await self._live(call_id)
        check(call_id, live["state"], "wrapup.done")
        if live.get("agent_id") != str(agent_id) and live.get("wrap_agent") != str(agent_id):
            raise WrongAgent(call_id, messages.int_or_none(live.get("agent_id")), agent_id)
        await self._finish_wrap_up(agent_id, call_id, self.clock(), wrap)

    async def _wraps_earlier_leg(self, agent_id: int, call_id: str) -> bool:
        """The agent is in wrap-up of this call, which is no longer its own: the call
        moved on to others (or ended with them) after this agent's leg."""
        agent = await self.store.agent(agent_id)
        if agent.get("state") != AgentState.wrap_up.value or agent.get("call_id") != call_id:
            return False
        call = await self.store.call(call_id)
        return call.get("state") != CallState.wrap_up.value \
            or call.get("wrap_agent") != str(agent_id)

    async def _wrap_leg(self, agent_id: int, call_id: str, wrap: dict[str, str]) -> None:
        """Note the agent's disposition and notes on its leg: on the live call in one
        versioned step (a loser reads again), then on the record."""
        for _ in range(5):
            call = await self.store.call(call_id)
            if not call:
                await self._wrap_recorded_leg(agent_id, call_id, wrap)
                return
            changed = legs.wrapped(legs.legs_of(call), agent_id, wrap)
            if changed is None:
                return
            step = await self.legs.step(call_id, [call["state"]], call.get("v", "0"),
                                        call["state"], {"legs": orjson.dumps(changed).decode()})
            if step.won:
                await self.writer.write(numbered(
                    [records.interaction_op(call_id, legs=changed)], step.seq))
                return
        log.warning("wrap-up of agent %s not noted on call %s: it kept changing",
                    agent_id, call_id)

    async def _wrap_recorded_leg(self, agent_id: int, call_id: str,
                                 wrap: dict[str, str]) -> None:
        """The call ended meanwhile: the leg is in the record only."""
        async with self._reader() as session:
            record = await records.interaction(session, call_id)
        changed = legs.wrapped(list(record.legs or []) if record else [], agent_id, wrap)
        if changed is not None:
            await self.writer.write([records.interaction_op(call_id, legs=changed)])

    async def agent_snapshot(self, agent_id: int) -> list[dict[str, Any]]:
        """What a (re)connecting console needs at once: its state and its current call."""
        agent = await self.store.agent(agent_id)
        out = [messages.agent_state(agent_id, agent)]
        call_id = agent.get("call_id")
        if call_id:
            call = await self.store.call(call_id)
            if call and call.get("pop"):
                # The call's own agent, talking or consulting about it, is the one
                # monitored (cti/monitor.py); a consulted colleague is not.
                monitored = call.get("state") in {s.value for s in WITH_AGENT} and \
                    call.get("agent_id") == str(agent_id)
                monitor = await self._monitor_notice(call_id) if monitored else []
                out += _call_snapshot(call, agent_id, monitor)
        return out

    async def _monitor_notice(self, call_id: str) -> list[dict[str, Any]]:
        """A supervisor whispering or on the call (cti/monitor.py), as the console shows it."""
        mode, name = await self.store.redis.hmget(self.keys.monitor(call_id),
                                                  ["mode", "supervisor"])
        if mode not in ("whisper", "barge"):
            return []
        return [{"type": "monitor.notice", "call_id": call_id, "mode": mode,
                 "supervisor": name}]

    async def console_gone(self, agent_id: int, now: float) -> None:
        """No console of this agent has been connected for a while (agent_console/presence.py):
        stop offering it calls. A busy agent's phone still works, so its call goes on, and
        not-ready applies after the call."""
        done, agent = await self.store.console_gone(agent_id, DISCONNECTED, now)
        if done == 1:
            await self._agent_changed(agent_id, agent)

    async def console_back(self, agent_id: int) -> None:
        """A console connected again: forget a not-ready that its absence put in store for
        after the current call (what the agent chose itself stays)."""
        await self.store.console_back(agent_id, DISCONNECTED)

    async def _finish_wrap_up(self, agent_id: int, call_id: str, now: float,
                              wrap: dict[str, str] | None = None, *,
                              strict: bool = False) -> bool:
        """End an agent's wrap-up of a call, unless wrapup.done or the timer (here or on
        another node) did first: only the step's winner records, counts and tells. An
        agent left available has taken the best waiting call in the same step. `strict`:
        only if the call is in this agent's wrap-up. Whether this caller ended it."""
        end = await self.store.end_wrap_up(
            agent_id, call_id, now, timers=self.timers.key,
            wrap_timer=Timer("wrapup", str(agent_id), call_id).member, strict=strict)
        if not end.won:
            log.debug("wrap-up of %s by agent %s was over already", call_id, agent_id)
            return False
        if end.agent:
            await self._agent_changed(agent_id, end.agent)
        if end.took is not None:  # rung before the record is written: it is reserved
            await self._dispatch(self.router.assignment_for(agent_id, end.took, now), None)
        if end.call:
            await self._end_call(end.call, now, wrap or {})
        return True

    async def _end_call(self, call: dict[str, str], now: float, wrap: dict[str, str]) -> None:
        """Record and announce a call that ended with its wrap-up (out of Redis already)."""
        ops = [records.call_op(call["id"], state=CallState.ended.value,
                               queue=call.get("queue", ""),
                               agent_id=messages.int_or_none(call.get("agent_id")))]
        # The wrap-up ran from the call's end until now (reports: handle time).
        wrap_up_s = round(max(0.0, now - float(call.get("ended_at") or now)), 3)
        ops.append(records.interaction_op(call["id"], **wrap, wrap_up_s=wrap_up_s))
        if wrap and "wrap_agent" in call:  # the last leg's wrap-up, on the leg too
            last = legs.wrapped(legs.legs_of(call), int(call["wrap_agent"]), wrap)
            if last is not None:
                ops.append(records.interaction_op(call["id"], legs=last))
        try:
            await self.writer.write(numbered(ops, int(call.get("seq") or 0)))
        except Exception:
            log.exception("call %s ended but its end was not stored", call["id"])
            raise
        talk = float(call.get("ended_at") or now) - float(call.get("answered_at") or now)
        handle = now - float(call.get("answered_at") or now)
        await self._notify("call.completed", {**call, "talk_s": talk, "handle_s": handle})


def _call_snapshot(call: dict[str, str], agent_id: int, monitor: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """An agent's call as its console must show it: the pop, then where the call stands
    (a consulted agent sees the consult; the call's own agent sees it too)."""
    call_id, state = call["id"], call.get("state", "")
    reason = orjson.loads(call.get("reason") or "{}")
    consulted = call.get("consult_agent") == str(agent_id)
    out = [messages.consult_pop(call, reason) if consulted else messages.screen_pop(call, reason)]
    if state in {s.value for s in WITH_AGENT} and (not consulted or state != "consult_ringing"):
        out.append({"type": "call.connected", "call_id": call_id})
        out += monitor
    if state == CallState.on_hold.value:
        out.append({"type": "call.held", "call_id": call_id})
    if call.get("rec_paused_at"):  # cti/recording_pauses.py
        out.append({"type": "recording.paused", "call_id": call_id})
    if state in messages.CONSULT_STATES:
        out.append(messages.consult_notice(
            call_id, messages.CONSULT_STATES[state], messages.int_or_none(call.get("agent_id")),
            messages.int_or_none(call.get("consult_agent"))))
    if state == CallState.wrap_up.value:
        out.append({"type": "call.ended", "call_id": call_id,
                    "wrap_up_until": float(call.get("wrap_until") or 0)})
    return out
