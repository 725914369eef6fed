"""What every part of the call path shares: its collaborators, and the few steps all of
them take (tell an agent and the observers, dispatch a call to an agent, tell the PBX
where a waiting call stands)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import writer
from core.bus import Bus
from core.db import Read, session_reader
from core.gathered import GatheredReads
from core.keys import Keys
from core.models import Call
from core.redisconn import log_failure
from core.timers import Timer, Timers
from core.writer import Op
from cti import messages
from cti.calls import IllegalTransition, NoSuchCall, check
from cti.schemas import Frame
from routing import engine
from routing.admin_steps import AdminSteps
from routing.callbacks import CallbackStore
from routing.consult import ConsultStore
from routing.legs import LegStore
from routing.service import Assignment, Router
from routing.states import AgentState
from routing.store import RoutingStore

log = logging.getLogger(__name__)

# How often an event's versioned step decides again when the call kept moving on.
STEP_ROUNDS = 5
# For the call as read and now: the state it must be in, the state after, the fields the
# step sets on it, and the writes the event owes (CallContext._versioned_step).
StepWrites = Callable[[dict[str, str], float],
                      tuple[str, str, dict[str, Any], list[Op]]]

Observer = Callable[[str, dict[str, Any]], Awaitable[None]]

RecordingHandler = Callable[[str, str, int | None], Awaitable[Any]]

# In a `call.ended` notice: False when the hang-up step found nothing following the call
# (no monitor, no PBX command pending): the observers that would clear them need not look.
FOLLOWED = "_followed"

# A live call's hash read just before its handler runs (the owner check of a telephony
# event): the handler's first `_live` takes it instead of reading it again. Per task, so
# each frame sees only its own read.
PREFETCHED: ContextVar[tuple[str, dict[str, str]] | None] = ContextVar("prefetched",
                                                                       default=None)


@dataclass
class CallContext:
    maker: async_sessionmaker[AsyncSession]
    writer: writer.RecordWriter
    router: Router
    timers: Timers
    bus: Bus
    keys: Keys
    node_id: str
    ring_timeout_s: float = 15.0
    wrap_up_s: float = 30.0
    wrap_up_by_queue: dict[str, float] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    observers: list[Observer] = field(default_factory=list)
    on_recording: RecordingHandler | None = None
    reader: async_sessionmaker[AsyncSession] | None = None
    read: Read[Any] | None = None
    # Let one site's PBXs send events about each other's calls (CALLCENTER_INTEGRATION_HANDOVER).
    integration_handover: bool = False
    # Supervisors' changes of agents' states (admin/); None: not offered.
    admin_steps: AdminSteps | None = None
    # Queue callbacks (cti/callbacks.py; core/settings.py says what each is).
    callback_retry_s: float = 300.0
    callback_attempts: int = 3
    callback_attempt_timeout_s: float = 120.0
    callback_max_ahead_s: float = 30 * 86400.0
    legs: LegStore = field(init=False)
    callbacks: CallbackStore = field(init=False)
    consults: ConsultStore = field(init=False)
    # The screen pops' caller lookups, gathered per loop turn (core/gathered.py).
    lookups: GatheredReads = field(init=False)

    def __post_init__(self) -> None:
        self.legs = LegStore(self.router.store.redis, self.keys)
        self.callbacks = CallbackStore(self.router.store.redis, self.keys, self.timers.key)
        self.consults = ConsultStore(self.router.store.redis, self.keys, self.timers.key)
        if self.reader is None:
            self.reader = self.maker
        if self.read is None:
            self.read = session_reader(self.reader)
        self.lookups = GatheredReads(self.read)

    @property
    def store(self) -> RoutingStore:
        return self.router.store

    @property
    def _reader(self) -> async_sessionmaker[AsyncSession]:
        return self.reader or self.maker
    async def _dispatch(self, a: Assignment, integration: str | None,
                        reply: bool = False) -> dict[str, Any]:
        """A call was given to an agent: ring its phone, pop its screen, start the clock.

        Returns the PBX's route.connect (route.callback for a callback: the PBX rings the
        agent, then calls the customer), or nothing when the caller hung up since the
        reservation (the hang-up freed the agent)."""
        now = self.clock()
        reason = a.reason()
        tried = ",".join(filter(None, [a.call.get("agents", ""), str(a.agent_id)]))
        noted = {"reason": orjson.dumps(reason).decode(), "agents": tried}
        call = a.call | noted
        extension = a.agent.get("extension", "")
        if call.get("kind") == "callback":
            connect = messages.route_callback(call, a.agent_id, extension)
            timer = Timer("cbtry", a.call_id, str(a.agent_id))
            deadline = now + self.callback_attempt_timeout_s
        else:
            connect = messages.route_connect(a.call_id, a.agent_id, extension)
            timer = Timer("rona", a.call_id, str(a.agent_id))
            deadline = now + self.ring_timeout_s
        state = messages.agent_state(a.agent_id, a.agent)
        channel = self.keys.agent_channel(a.agent_id)
        out = [(channel, orjson.dumps(messages.screen_pop(call, reason))),
               (channel, orjson.dumps(state))]
        if not reply:
            out.append((self.keys.telephony_channel(call["integration"]),
                             orjson.dumps(connect)))
        rang = await self.store.ring(
            a.call_id, a.agent_id, noted, timers=self.timers.key, timer=timer.member,
            deadline=deadline, messages=out, log=self._log_entry(state))
        if not rang:
            log.debug("call %s ended before it rang agent %s", a.call_id, a.agent_id)
            return {}
        self.timers.expect(deadline)
        await self._notify("agent.state", state)
        await self._notify("call.routed", {**call, "reason": reason})
        return connect

    def _mark(self, frame: Frame, ops: list[Op]) -> tuple[str, bytes]:
        """An event's key and the writes it owes, kept with its step in Redis."""
        return self.keys.event(frame.event_id), writer.dumps(ops)

    async def _queued_notice(self, call_id: str) -> dict[str, Any]:
        """route.queued for a waiting call, in one step that also notes the position as
        announced; nothing when the call no longer waits (answered, or hung up)."""
        at = await self.store.queued_notice(call_id)
        if at is None:
            log.debug("call %s no longer waits: no position to announce", call_id)
            return {}
        return messages.route_queued(call_id, at.queue, at.position, at.wait_s)

    async def _schedule_widening(self, call_id: str, rings: list[engine.Ring],
                                 offered_at: float, now: float) -> None:
        opens = engine.next_widening_s(rings, now - offered_at)
        if opens is not None:
            await self.timers.schedule(Timer("widen", call_id), offered_at + opens)

    def _wrap_up_s(self, queue: str) -> float:
        return self.wrap_up_by_queue.get(queue, self.wrap_up_s)

    async def _offer_next_call(self, agent_id: int, agent: dict[str, str], now: float) -> None:
        """An agent that left its call available takes the best waiting call at once."""
        if agent.get("state") != AgentState.available.value:
            return
        assignment = await self.router.route_agent(agent_id, now, agent)
        if assignment is not None:
            await self._dispatch(assignment, None)

    async def _live(self, call_id: str) -> dict[str, str]:
        prefetched = PREFETCHED.get()
        PREFETCHED.set(None)
        if prefetched is not None and prefetched[0] == call_id:
            call = prefetched[1]
        else:
            call = await self.store.call(call_id)
        if call:
            return call
        state, _ = await self._any_state(call_id)
        return {"id": call_id, "state": state}

    async def _any_state(self, call_id: str) -> tuple[str, str | None]:
        """A call's state from Redis while live, else from the record of a finished call."""
        call = await self.store.call(call_id)
        if call:
            return call["state"], call.get("customer_id") or None
        async with self.maker() as session:
            row = await session.get(Call, call_id)
        if row is None:
            raise NoSuchCall(call_id)
        return row.state, row.customer_id

    async def _refuse(self, frame: Frame, state: str) -> NoReturn:
        """The call moved on while this event was decided: refused on what it is now."""
        if state == "unknown":  # it ended meanwhile: its state from the record
            state, _ = await self._any_state(frame.call_id)
        log.debug("%s for call %s refused: it is %s now", frame.type, frame.call_id, state)
        check(frame.call_id, state, frame.type)
        raise IllegalTransition(frame.call_id, state, frame.type)

    async def _versioned_step(self, frame: Frame, writes: StepWrites
                              ) -> tuple[dict[str, str], list[Op], float]:
        """An event's versioned step on a live call (routing/legs.py): `writes` says, for
        the call as read now, the state it must be in, the state after, the fields the
        step sets and the writes the event owes (or refuses). A loser only because the
        call moved on (its version) reads it again and decides again. Answers the call as
        it was read, the owed writes with their number, and now."""
        for _ in range(STEP_ROUNDS):
            now = self.clock()
            call = await self._live(frame.call_id)
            before, after, fields, ops = writes(call, now)
            step = await self.legs.step(frame.call_id, [before], call.get("v", "0"), after,
                                        fields, event=self._mark(frame, ops))
            if step.won:
                return call, writer.numbered(ops, step.seq), now
            if not step.stale:
                await self._refuse(frame, step.state)
            log.debug("call %s moved on under %s; deciding again", frame.call_id, frame.type)
        raise IllegalTransition(frame.call_id, call["state"], frame.type)

    async def _to_agent(self, agent_id: int, message: dict[str, Any]) -> None:
        await self.bus.publish(self.keys.agent_channel(agent_id), message)

    async def _record_agent_state(self, agent_id: int) -> None:
        await self._agent_changed(agent_id, await self.store.agent(agent_id))

    async def _agent_changed(self, agent_id: int, agent: dict[str, str],
                             *before: dict[str, Any]) -> None:
        """After a transition this caller won: tell the agent (messages first, then its new
        state) in one round trip, log the state for reports (persisted in batches), and
        tell the observers."""
        state = messages.agent_state(agent_id, agent)
        await self.store.tell_agent(self.keys.agent_channel(agent_id),
                                    [orjson.dumps(message) for message in (*before, state)],
                                    self._log_entry(state))
        await self._notify("agent.state", state)

    def _log_entry(self, state: dict[str, Any]) -> dict[str, str | int | float]:
        return {"agent_id": state["agent_id"], "state": state["state"],
                "reason": state["reason"] or "", "at": state["since"] or self.clock()}

    async def _notify(self, name: str, data: dict[str, Any]) -> None:
        for observer in self.observers:
            try:
                await observer(name, data)
            except Exception:
                log_failure(log, "observer failed on %s", name)
