"""The live call path: apply telephony and agent events to calls, route, notify.

Each event is stored in the database before it is acknowledged, then applied to
the shared Redis state; what other connections must hear goes out over the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import writer
from core.bus import Bus
from core.db import Read, session_reader
from core.keys import Keys
from core.models import Call
from core.timers import Timer, Timers
from crm import store as crm
from cti import records
from cti.calls import (
    FINAL,
    CallError,
    CallExists,
    CallState,
    IllegalTransition,
    NoSuchCall,
    StorageUnavailable,
    WrongAgent,
    after_hangup,
    check,
)
from cti.schemas import (
    CallAnswered,
    CallEnded,
    CallOffered,
    CallTransferred,
    Frame,
    RecordingReady,
    SurveyResult,
)
from routing import engine
from routing.engine import CallProfile
from routing.service import Assignment, CallLive, Router, RoutingError
from routing.states import AgentState
from routing.store import EVENT_TTL_S, AgentChange, EventSeen

log = logging.getLogger(__name__)

Observer = Callable[[str, dict[str, Any]], Awaitable[None]]
RecordingHandler = Callable[[str, str, int | None], Awaitable[None]]


# The timer of an agent's console lease (agent_console/presence.py): it fires when no
# console of the agent has renewed it for a while.
AWAY = "away"


def away_timer(agent_id: int) -> Timer:
    return Timer(AWAY, str(agent_id))


# The not-ready reason of an agent whose console went away.
DISCONNECTED = "disconnected"
BUSY = (AgentState.ringing.value, AgentState.on_call.value, AgentState.wrap_up.value)

# The value of an event key once the event's writes are stored.
STORED = "1"

# Events whose step in Redis looks for their event key itself, atomically with the change
# (routing/store.py EventSeen): no separate look first. The others look first.
_SEEN_IN_STEP = frozenset({"call.offered", "call.answered", "call.ended", "call.transferred"})


@dataclass(frozen=True)
class Applied:
    """What applying an event to the live state produced: replies for the PBX, and the
    writes it owes the database (none when the handler stored them itself, because it
    acts on them only once they are stored: recording.ready, survey.result)."""

    replies: list[dict[str, Any]]
    ops: list[writer.Op]


@dataclass(frozen=True)
class Outcome:
    """The reply to one inbound event: the ack, then messages for the same connection."""

    ack: dict[str, Any]
    replies: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CallService:
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
    read: Read[Any] | None = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.reader is None:
            self.reader = self.maker
        if self.read is None:
            self.read = session_reader(self.reader)

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.router.store

    # Inbound telephony events -------------------------------------------

    async def handle(self, frame: Frame, integration: str) -> Outcome:
        """Apply one event to the live state, store it, and answer the PBX.

        Each handler changes Redis first and, in the same atomic step, keeps the writes
        the event owes the database under its event key; the ack waits until the group
        writer has stored them, and the key then says "stored". A resend finds the key:
        stored means a duplicate, anything else are writes still owed, stored now. So an
        event is applied once whichever node dies or whichever store is away, and the
        database never lags Redis for an acknowledged event.
        """
        if frame.type not in _SEEN_IN_STEP:
            seen = await self.store.redis.get(self.keys.event(frame.event_id))
            if seen is not None:
                return await self._seen(frame, integration, seen)
        handler = getattr(self, "_" + frame.type.replace(".", "_"))  # type: ignore[attr-defined]
        try:
            applied: Applied = await handler(frame, integration)
        except EventSeen as e:
            return await self._seen(frame, integration, e.value)
        except StorageUnavailable:
            raise
        except (CallError, RoutingError):
            # Refused on what the call is now: perhaps because this event moved it there.
            seen = await self.store.redis.get(self.keys.event(frame.event_id))
            if seen is not None:
                return await self._seen(frame, integration, seen)
            # Redis may have lost the event key (restarted empty, state rebuilt from the
            # database): the record of stored events still knows a duplicate.
            if await self._stored(frame.event_id):
                return Outcome(_ack(frame, duplicate=True))
            raise
        if applied.ops:
            await self._write(frame, applied.ops)
        return Outcome(_ack(frame), [r for r in applied.replies if r])

    async def _seen(self, frame: Frame, integration: str, value: str) -> Outcome:
        """An event whose key is there: stored means a duplicate, anything else are the
        writes it still owes, stored now."""
        if value == STORED:
            return Outcome(_ack(frame, duplicate=True))
        return await self._store_owed(frame, integration, writer.loads(value))

    async def _write(self, frame: Frame, ops: list[writer.Op]) -> None:
        try:
            await self.writer.write(ops)
        except IntegrityError as e:
            if frame.type != "call.offered":
                raise StorageUnavailable(frame.call_id) from e
            # A call id the database has seen (a finished call's, reused by the PBX):
            # take the new call back out of routing and refuse it.
            await self._withdraw(frame.call_id)
            await self.store.redis.delete(self.keys.event(frame.event_id))
            raise CallExists(frame.call_id) from e
        except Exception as e:
            log.warning("could not store %s %s: %s", frame.type, frame.event_id, e)
            raise StorageUnavailable(frame.call_id) from e
        await self.store.redis.set(self.keys.event(frame.event_id), STORED, ex=EVENT_TTL_S)

    async def _store_owed(self, frame: Frame, integration: str,
                          ops: list[writer.Op]) -> Outcome:
        """A resent event that was applied but not stored (its node died, or the
        database was away): store it now, and tell the PBX again where the call is."""
        replay = [writer.Insert(op.table, op.values, skip_existing=True)
                  if isinstance(op, writer.Insert) else op for op in ops]
        await self._write(frame, replay)
        replies = []
        if frame.type in ("call.offered", "call.transferred"):
            replies = [await self._route_notice(frame.call_id)]
        return Outcome(_ack(frame), [r for r in replies if r])

    async def _withdraw(self, call_id: str) -> None:
        call = await self.store.call(call_id)
        if not call:
            return
        await self._abandon(call, _int(call.get("agent_id")), self.clock())

    async def _stored(self, event_id: str) -> bool:
        async with self.reader() as session:  # type: ignore[misc]
            return await records.event_seen(session, event_id)

    def _mark(self, frame: Frame, ops: list[writer.Op]) -> tuple[str, bytes]:
        return self.keys.event(frame.event_id), writer.dumps(ops)

    async def _call_offered(self, frame: CallOffered, integration: str) -> Applied:
        """Route first and pop the agent's screen, then store the call, then ack.

        The screen-pop does not wait for the write; the ack does.
        """
        now = self.clock()
        ivr = frame.ivr.model_dump(exclude_none=True)
        profile = await self.read(partial(crm.profile_of_number, ani=frame.ani))
        customer_id = profile["id"] if profile else None
        tier = profile["tier"] if profile else engine.DEFAULT_TIER
        call = CallProfile(
            call_id=frame.call_id, queue=frame.queue, tier=tier,
            queue_skills=self.router.queues.get(frame.queue, ()),
            sticky_agent_id=profile["last_agent_id"] if profile else None,
            sticky_agent_working=await self.router.sticky_working(
                profile["last_agent_id"] if profile else None),
            open_complaint=bool(profile and profile["open_complaints"]),
            intent_skill=ivr.get("intent"))
        pop = {"call_id": frame.call_id, "ani": frame.ani, "customer": profile, "ivr": ivr,
               "tier": tier, "queue": frame.queue}
        ops = records.offer_ops(
            event_id=frame.event_id, call_id=frame.call_id, queue=frame.queue, ani=frame.ani,
            dnis=frame.dnis, customer_id=customer_id, tier=tier, ivr=ivr, offered_at=now,
            node_id=self.node_id, integration=integration)
        try:
            rings, assignment = await self.router.offer(
                call, now, now, event=self._mark(frame, ops), integration=integration,
                ani=frame.ani, dnis=frame.dnis, customer_id=customer_id or "",
                pop=orjson.dumps(pop).decode())
        except CallLive as e:
            raise CallExists(frame.call_id) from e
        await self._notify("call.offered", {"call_id": frame.call_id, "queue": frame.queue,
                                            "tier": tier, "offered_at": now})
        if assignment is not None:
            return Applied([await self._dispatch(assignment, integration, reply=True)], ops)
        await self._schedule_widening(frame.call_id, rings, now, now)
        return Applied([await self._queued_notice(frame.call_id)], ops)

    async def _route_notice(self, call_id: str) -> dict[str, Any]:
        """Where a live call stands, as the PBX hears it: queued, or ringing an agent."""
        live = await self.store.call(call_id)
        if live.get("state") == CallState.queued.value:
            return await self._queued_notice(call_id)
        if live.get("agent_id"):
            agent = await self.store.agent(int(live["agent_id"]))
            return {"type": "route.connect", "call_id": call_id,
                    "agent_id": int(live["agent_id"]), "extension": agent.get("extension", "")}
        return {}

    async def _call_answered(self, frame: CallAnswered, integration: str) -> Applied:
        now = self.clock()
        call = await self._live(frame.call_id)
        check(frame.call_id, call["state"], frame.type)
        if call.get("agent_id") != str(frame.agent_id):
            raise WrongAgent(frame.call_id, _int(call.get("agent_id")), frame.agent_id)
        ops = [records.event_op(frame.event_id, frame.call_id, frame.type),
               records.call_op(frame.call_id, state=CallState.connected.value,
                               agent_id=frame.agent_id),
               records.interaction_op(frame.call_id, answered_at=records.at(now),
                                      wait_s=now - float(call["offered_at"]),
                                      **_routing_record(call))]
        ok, state = await self.store.call_cas(frame.call_id, ["ringing"], "connected",
                                              event=self._mark(frame, ops), answered_at=now)
        if not ok:
            check(frame.call_id, state, frame.type)
            raise IllegalTransition(frame.call_id, state, frame.type)
        change = await self.store.make_unavailable(frame.agent_id, AgentState.on_call, "", now,
                                                   force=True, call_id=frame.call_id)
        await self._agent_changed(
            frame.agent_id, change.agent,
            {"type": "call.connected", "call_id": frame.call_id},
            cancel=Timer("rona", frame.call_id, str(frame.agent_id)))
        await self._notify("call.answered", {**call, "answered_at": now})
        return Applied([], ops)

    async def _call_ended(self, frame: CallEnded, integration: str) -> Applied:
        now = self.clock()
        for _ in range(5):
            call = await self._live(frame.call_id)
            state = check(frame.call_id, call["state"], frame.type)
            final = after_hangup(state)
            outcome = "failed" if frame.cause == "failed" else (
                "answered" if final is CallState.wrap_up else "abandoned")
            values: dict[str, Any] = {"ended_at": records.at(now), "end_cause": frame.cause,
                                      "outcome": outcome}
            if final is CallState.wrap_up:
                values["talk_s"] = now - float(call.get("answered_at") or now)
            else:
                values["wait_s"] = now - float(call["offered_at"])
                values.update(_routing_record(call))
            ops = [records.event_op(frame.event_id, frame.call_id, frame.type),
                   records.call_op(frame.call_id, state=final.value),
                   records.interaction_op(frame.call_id, **values)]
            ok, current = await self.store.call_cas(
                frame.call_id, [state.value], final.value, event=self._mark(frame, ops),
                ended_at=now, end_cause=frame.cause)
            if ok:
                break
            if current == "unknown":
                raise IllegalTransition(frame.call_id, state.value, frame.type)
            # The call moved on while this was decided (an agent was reserved for it, or
            # it was answered): decide again on what it is now.
            log.debug("call %s went from %s to %s under call.ended", frame.call_id,
                      state.value, current)
        else:
            raise IllegalTransition(frame.call_id, current, frame.type)
        agent_id = _int(call.get("agent_id"))
        if final is CallState.wrap_up and agent_id is not None:
            await self._start_wrap_up(agent_id, frame.call_id, call["queue"], now)
        else:
            await self._abandon(call, agent_id, now)
        await self._notify("call.ended", {**call, "ended_at": now, "outcome": outcome,
                                          "final": final.value})
        return Applied([], ops)

    async def _call_transferred(self, frame: CallTransferred, integration: str) -> Applied:
        now = self.clock()
        call = await self._live(frame.call_id)
        check(frame.call_id, call["state"], frame.type)
        queue = frame.to_queue or call["queue"]
        rings = engine.rings_for(CallProfile(
            call_id=frame.call_id, queue=queue, tier=call.get("tier", "standard"),
            sticky_agent_id=frame.to_agent_id, sticky_agent_working=frame.to_agent_id is not None,
        ), self.router.policy)
        previous_agent = _int(call.get("agent_id"))
        ops = [records.event_op(frame.event_id, frame.call_id, frame.type),
               records.call_op(frame.call_id, state="queued", queue=queue, agent_id=None)]
        score = engine.priority_score(now, call.get("tier", "standard"), self.router.policy)
        # A transferred call keeps its place in time: it was offered long ago.
        score = min(score, float(call["score"]))
        ok = await self.store.requeue(frame.call_id, queue, score, rings, ["connected"],
                                      event=self._mark(frame, ops), offered_at=now,
                                      transferred_from=previous_agent or "")
        if not ok:
            state = (await self._live(frame.call_id))["state"]
            check(frame.call_id, state, frame.type)
            raise IllegalTransition(frame.call_id, state, frame.type)
        if previous_agent is not None:
            await self._start_wrap_up(previous_agent, frame.call_id, call["queue"], now)
        assignment = await self.router.route_call(frame.call_id, now)
        if assignment is not None:
            return Applied([await self._dispatch(assignment, integration, reply=True)], ops)
        await self._schedule_widening(frame.call_id, rings, now, now)
        return Applied([await self._queued_notice(frame.call_id)], ops)

    async def _recording_ready(self, frame: RecordingReady, integration: str) -> Applied:
        state, customer_id = await self._any_state(frame.call_id)
        check(frame.call_id, state, frame.type)
        async with self.reader() as session:  # type: ignore[misc]
            record = await records.interaction(session, frame.call_id)
        # The same recording announced again (a new event id): its transcript stands.
        again = record is not None and record.recording_path == frame.path \
            and record.transcript_status in ("pending", "done")
        ops = [records.event_op(frame.event_id, frame.call_id, frame.type)]
        if not again:
            ops.append(records.interaction_op(frame.call_id, recording_path=frame.path,
                                              transcript_status="pending"))
        await self._write(frame, ops)
        if self.on_recording is not None and not again:
            await self.on_recording(frame.call_id, frame.path, None)
        return Applied([], [])

    async def _survey_result(self, frame: SurveyResult, integration: str) -> Applied:
        state, _ = await self._any_state(frame.call_id)
        check(frame.call_id, state, frame.type)
        await self._write(frame, [records.event_op(frame.event_id, frame.call_id, frame.type),
                                  records.interaction_op(
                                      frame.call_id, survey_score=frame.score,
                                      survey_expectation=frame.expectation,
                                      survey_perception=frame.perception)])
        await self._notify("survey.result", {"call_id": frame.call_id, "score": frame.score})
        return Applied([], [])

    # Agent events -------------------------------------------------------

    async def set_agent_state(self, agent_id: int, state: AgentState, reason: str) -> None:
        now = self.clock()
        assignment = await self.router.set_state(agent_id, state, reason, now)
        await self._record_agent_state(agent_id)
        if assignment is not None:
            await self._dispatch(assignment, None)

    async def wrapup_done(self, agent_id: int, call_id: str, disposition: str,
                          notes: str) -> None:
        agent, call = await self._agent_and_call(agent_id, call_id)
        # A finished call is no longer in Redis: its state from the database.
        live = call or await self._live(call_id)
        check(call_id, live["state"], "wrapup.done")
        if live.get("agent_id") != str(agent_id) and live.get("wrap_agent") != str(agent_id):
            raise WrongAgent(call_id, _int(live.get("agent_id")), agent_id)
        await self._finish_wrap_up(agent_id, call_id, self.clock(),
                                   {"disposition": disposition, "notes": notes},
                                   read=(agent, call))

    async def agent_snapshot(self, agent_id: int) -> list[dict[str, Any]]:
        """What a (re)connecting console needs at once: its state and its current call."""
        agent = await self.store.agent(agent_id)
        messages = [_agent_state_message(agent_id, agent)]
        call_id = agent.get("call_id")
        if call_id:
            call = await self.store.call(call_id)
            if call and call.get("pop"):
                messages.append(_screen_pop(call, orjson.loads(call.get("reason") or "{}")))
                if call.get("state") == CallState.connected.value:
                    messages.append({"type": "call.connected", "call_id": call_id})
                if call.get("state") == CallState.wrap_up.value:
                    messages.append({"type": "call.ended", "call_id": call_id,
                                     "wrap_up_until": float(call.get("wrap_until") or 0)})
        return messages

    async def state_snapshot(self, integration: str) -> dict[str, Any]:
        calls = [c for c in await self.store.live_calls() if c.get("integration") == integration]
        return {"type": "state.snapshot", "calls": [
            {"call_id": c["id"], "state": c["state"], "queue": c.get("queue"),
             "agent_id": _int(c.get("agent_id"))} for c in calls]}

    # Timers -------------------------------------------------------------

    async def on_timer(self, timer: Timer) -> None:
        now = self.clock()
        if timer.kind == "rona":
            await self._ring_no_answer(timer.ident, int(timer.token), now)
        elif timer.kind == "wrapup":
            call_id = timer.token
            await self._finish_wrap_up(int(timer.ident), call_id, now)
        elif timer.kind == AWAY:
            await self.console_gone(int(timer.ident), now)
        elif timer.kind == "widen":
            assignment = await self.router.route_call(timer.ident, now)
            if assignment is not None:
                await self._dispatch(assignment, None)
            else:
                call = await self.store.call(timer.ident)
                if call.get("state") == "queued":
                    await self._schedule_widening(timer.ident,
                                                  list(engine.decode_rings(call["rings"])),
                                                  float(call["offered_at"]), now)

    async def console_gone(self, agent_id: int, now: float) -> None:
        """No console of this agent has been connected for a while (agent_console/presence.py):
        stop offering it calls. A busy agent's phone still works, so its call goes on, and
        not-ready applies after the wrap-up."""
        agent = await self.store.agent(agent_id)
        state = agent.get("state")
        if state == AgentState.available.value:
            change = await self.store.make_unavailable(agent_id, AgentState.not_ready,
                                                       DISCONNECTED, now)
            if change.ok:
                await self._agent_changed(agent_id, change.agent)
        elif state in BUSY and not agent.get("after_wrap"):
            await self.store.set_agent_fields(agent_id, after_wrap=AgentState.not_ready.value,
                                              after_wrap_reason=DISCONNECTED)

    async def console_back(self, agent_id: int) -> None:
        """A console connected again: forget a not-ready that its absence put in store for
        after the current call (what the agent chose itself stays)."""
        agent = await self.store.agent(agent_id)
        if agent.get("after_wrap_reason") == DISCONNECTED:
            await self.store.set_agent_fields(agent_id, after_wrap="", after_wrap_reason="")

    async def _ring_no_answer(self, call_id: str, agent_id: int, now: float) -> None:
        call = await self.store.call(call_id)
        if call.get("state") != "ringing" or call.get("agent_id") != str(agent_id):
            log.debug("ring timeout for %s after it moved on", call_id)
            return
        ok = await self.store.requeue(call_id, call["queue"], float(call["score"]), None,
                                      ["ringing"])
        if not ok:
            return
        change = await self.store.make_unavailable(agent_id, AgentState.not_ready, "missed",
                                                   now, force=True, call_id="")
        await self._agent_changed(agent_id, change.agent, {
            "type": "call.ended", "call_id": call_id, "reason": "ring_no_answer"})
        await self._notify("call.rona", {"call_id": call_id, "agent_id": agent_id})
        assignment = await self.router.route_call(call_id, now)
        if assignment is not None:
            await self._dispatch(assignment, None)
        else:
            await self.bus.publish(self.keys.telephony_channel(call["integration"]),
                                   await self._queued_notice(call_id))

    # Internals ----------------------------------------------------------

    async def _dispatch(self, a: Assignment, integration: str | None,
                        reply: bool = False) -> dict[str, Any]:
        """A call was given to an agent: ring its phone, pop its screen, start the clock.

        Returns the PBX's route.connect, or nothing when the caller hung up since the
        reservation (the hang-up freed the agent)."""
        now = self.clock()
        reason = a.reason()
        tried = ",".join(filter(None, [a.call.get("agents", ""), str(a.agent_id)]))
        noted = {"reason": orjson.dumps(reason).decode(), "agents": tried}
        call = a.call | noted
        connect = {"type": "route.connect", "call_id": a.call_id, "agent_id": a.agent_id,
                   "extension": a.agent.get("extension", "")}
        state = _agent_state_message(a.agent_id, a.agent)
        channel = self.keys.agent_channel(a.agent_id)
        messages = [(channel, orjson.dumps(_screen_pop(call, reason))),
                    (channel, orjson.dumps(state))]
        if not reply:
            messages.append((self.keys.telephony_channel(call["integration"]),
                             orjson.dumps(connect)))
        rang = await self.store.ring(
            a.call_id, a.agent_id, noted, timers=self.timers.key,
            timer=Timer("rona", a.call_id, str(a.agent_id)).member,
            deadline=now + self.ring_timeout_s, messages=messages, log=self._log_entry(state))
        if not rang:
            log.debug("call %s ended before it rang agent %s", a.call_id, a.agent_id)
            return {}
        await self._notify("agent.state", state)
        await self._notify("call.routed", {**call, "reason": reason})
        return connect

    async def _queued_notice(self, call_id: str) -> dict[str, Any]:
        call = await self.store.call(call_id)
        position = await self.store.position(call_id, call["queue"]) or 1
        aht = float(await self.store.redis.hget(self.keys.stats, "aht") or 180.0)
        staffed = max(1, await self.store.pool_size(engine.queue_pool(call["queue"])))
        await self.store.redis.hset(self.keys.call(call_id), "announced_position", position)
        return {"type": "route.queued", "call_id": call_id, "queue": call["queue"],
                "position": position, "estimated_wait_s": round(position * aht / staffed)}

    async def _schedule_widening(self, call_id: str, rings: list[engine.Ring],
                                 offered_at: float, now: float) -> None:
        opens = engine.next_widening_s(rings, now - offered_at)
        if opens is not None:
            await self.timers.schedule(Timer("widen", call_id), offered_at + opens)

    async def _start_wrap_up(self, agent_id: int, call_id: str, queue: str, now: float) -> None:
        until = now + self.wrap_up_by_queue.get(queue, self.wrap_up_s)
        change = await self.store.make_unavailable(agent_id, AgentState.wrap_up, "", now,
                                                   force=True, call_id=call_id)

        def start_clock(pipe: Pipeline) -> None:
            pipe.hset(self.keys.call(call_id), mapping={"wrap_until": until,
                                                        "wrap_agent": agent_id})
            pipe.zadd(self.timers.key, {Timer("wrapup", str(agent_id), call_id).member: until})

        await self._agent_changed(agent_id, change.agent, {
            "type": "call.ended", "call_id": call_id, "wrap_up_until": until}, also=start_clock)

    async def _agent_and_call(self, agent_id: int,
                              call_id: str) -> tuple[dict[str, str], dict[str, str]]:
        async with self.store.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.agent(agent_id))
            pipe.hgetall(self.keys.call(call_id))
            agent, call = await pipe.execute()
        return agent, call

    async def _finish_wrap_up(self, agent_id: int, call_id: str, now: float,
                              wrap: dict[str, str] | None = None, *,
                              read: tuple[dict[str, str], dict[str, str]] | None = None,
                              ) -> None:
        """End an agent's wrap-up of a call; `read` is the agent and the call when the
        caller has just read them."""
        agent, call = read or await self._agent_and_call(agent_id, call_id)
        if agent.get("call_id") != call_id or agent.get("state") != AgentState.wrap_up.value:
            return  # wrap-up already finished by the agent or the timer
        if call.get("state") == CallState.wrap_up.value:
            await self._end_call(call, now, wrap or {})
        change = await self._after_call(agent_id, agent, now)
        await self._agent_changed(agent_id, change.agent,
                                  cancel=Timer("wrapup", str(agent_id), call_id))
        await self._offer_next_call(agent_id, change, now)

    async def _after_call(self, agent_id: int, agent: dict[str, str], now: float, *,
                          force: bool = False) -> AgentChange:
        """An agent leaves its call: available, or the state kept for after the call (the
        agent chose it during wrap-up, or its console went away)."""
        after = agent.get("after_wrap") or AgentState.available.value
        if after == AgentState.available.value:
            return await self.store.make_available(agent_id, now, force=force)
        return await self.store.make_unavailable(
            agent_id, AgentState(after), agent.get("after_wrap_reason", ""), now,
            force=force, call_id="", after_wrap="")

    async def _offer_next_call(self, agent_id: int, change: AgentChange, now: float) -> None:
        """An agent that left its call available takes the best waiting call at once."""
        if change.agent.get("state") != AgentState.available.value:
            return
        assignment = await self.router.route_agent(agent_id, now, change.agent)
        if assignment is not None:
            await self._dispatch(assignment, None)

    async def _end_call(self, call: dict[str, str], now: float, wrap: dict[str, str]) -> None:
        ops = [records.call_op(call["id"], state=CallState.ended.value)]
        if wrap:
            ops.append(records.interaction_op(call["id"], **wrap))
        await self.writer.write(ops)
        talk = float(call.get("ended_at") or now) - float(call.get("answered_at") or now)
        handle = now - float(call.get("answered_at") or now)
        await self.store.drop_call(call["id"], call["queue"], handle_s=handle)
        await self._notify("call.completed", {**call, "talk_s": talk, "handle_s": handle})

    async def _abandon(self, call: dict[str, str], agent_id: int | None, now: float) -> None:
        await self.store.drop_call(call["id"], call["queue"])
        if agent_id is None:
            return
        # The agent whose phone rang leaves the call (its console may have gone meanwhile).
        change = await self._after_call(agent_id, await self.store.agent(agent_id), now,
                                        force=True)
        await self._agent_changed(
            agent_id, change.agent,
            {"type": "call.ended", "call_id": call["id"], "reason": "caller_hangup"},
            cancel=Timer("rona", call["id"], str(agent_id)))
        await self._offer_next_call(agent_id, change, now)

    async def _live(self, call_id: str) -> dict[str, str]:
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

    async def _to_agent(self, agent_id: int, message: dict[str, Any]) -> None:
        await self.bus.publish(self.keys.agent_channel(agent_id), message)

    async def _record_agent_state(self, agent_id: int) -> None:
        await self._agent_changed(agent_id, await self.store.agent(agent_id))

    async def _agent_changed(self, agent_id: int, agent: dict[str, str],
                             *before: dict[str, Any], cancel: Timer | None = None,
                             also: Callable[[Pipeline], None] | None = None) -> None:
        """Tell the agent (messages first, then its new state) in one round trip, log the
        state for reports (persisted in batches), and tell the observers. `also` adds the
        caller's own commands to the same round trip."""
        state = _agent_state_message(agent_id, agent)
        channel = self.keys.agent_channel(agent_id)
        async with self.store.redis.pipeline(transaction=False) as pipe:
            if also is not None:
                also(pipe)
            for message in (*before, state):
                pipe.publish(channel, orjson.dumps(message))
            self.store.log_agent_state(pipe, self._log_entry(state))
            if cancel is not None:
                pipe.zrem(self.timers.key, cancel.member)
            await pipe.execute()
        await self._notify("agent.state", state)

    def _log_entry(self, state: dict[str, Any]) -> dict[str, str | int | float]:
        return {"agent_id": state["agent_id"], "state": state["state"],
                "reason": state["reason"] or "", "at": state["since"] or self.clock()}

    async def persist_agent_log(self, interval: float = 1.0, batch: int = 500) -> None:
        """Move logged agent state changes into the database, a batch at a time.

        A consumer group shares the work between nodes; entries are acknowledged and
        deleted only after they are stored.
        """
        stream, group = self.keys.agent_log, "persist"
        # redis-py can swallow a cancellation inside a command; look before each round.
        while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
            try:
                await self._persist_agent_batch(stream, group, batch)
            except ResponseError as e:
                if "NOGROUP" not in str(e):
                    raise
                # First run, or Redis came back empty: (re)create the group.
                with contextlib.suppress(ResponseError):
                    await self.store.redis.xgroup_create(stream, group, id="0", mkstream=True)
                continue
            except Exception as e:
                log.warning("agent state log not persisted yet: %s", e)
            await asyncio.sleep(interval)

    async def _persist_agent_batch(self, stream: str, group: str, batch: int) -> None:
        redis = self.store.redis
        # Entries a node took and never stored (it died): Redis 6 answers two fields, 7 three.
        claimed = (await redis.xautoclaim(stream, group, self.node_id, 30_000, "0-0",
                                          count=batch))[1]
        fresh = await redis.xreadgroup(group, self.node_id, {stream: ">"}, count=batch)
        entries = list(claimed) + [e for _, items in fresh for e in items]
        if not entries:
            return
        await self.writer.write(writer.Insert("agent_state_changes", {
            "agent_id": int(f["agent_id"]), "state": f["state"], "reason": f["reason"] or None,
            "at": records.at(float(f["at"]))}) for _, f in entries)
        ids = [entry_id for entry_id, _ in entries]
        await redis.xack(stream, group, *ids)
        await redis.xdel(stream, *ids)

    async def _notify(self, name: str, data: dict[str, Any]) -> None:
        for observer in self.observers:
            try:
                await observer(name, data)
            except Exception:
                log.exception("observer failed on %s", name)


def _ack(frame: Frame, duplicate: bool = False) -> dict[str, Any]:
    return {"type": "ack", "event_id": frame.event_id, "duplicate": duplicate}


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def _routing_record(call: dict[str, str]) -> dict[str, Any]:
    """What the interaction keeps of routing: why the last agent was chosen, and who rang."""
    agents = [int(a) for a in (call.get("agents") or "").split(",") if a]
    values: dict[str, Any] = {"agent_ids": agents}
    if call.get("reason"):
        values["routing_reason"] = orjson.loads(call["reason"])
    if agents:
        values["agent_id"] = agents[-1]
    return values


def _screen_pop(call: dict[str, str], reason: dict[str, Any]) -> dict[str, Any]:
    pop = orjson.loads(call["pop"])
    return {"type": "screen_pop", **pop, "routing_reason": reason,
            "new_caller": pop.get("customer") is None}


def _agent_state_message(agent_id: int, agent: dict[str, str]) -> dict[str, Any]:
    return {"type": "agent.state", "agent_id": agent_id,
            "state": agent.get("state", AgentState.logged_out.value),
            "reason": agent.get("reason") or None, "since": float(agent.get("since") or 0),
            "call_id": agent.get("call_id") or None}


__all__ = ["CallService", "Outcome", "FINAL"]
