"""Telephony events from the PBX (call.offered, call.answered, call.ended,
call.transferred, recording.ready, survey.result) applied to the live state, stored, and
answered. Dispatch is by frame type (`_apply`)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import orjson
from sqlalchemy.exc import IntegrityError

from core import writer
from core.models import Call
from core.timers import Timer
from crm import store as crm
from cti import legs, messages, records
from cti.callbacks import CallbackEvents
from cti.calls import (
    CallError,
    CallExists,
    CallState,
    IllegalTransition,
    StorageUnavailable,
    WrongAgent,
    WrongIntegration,
    after_hangup,
    check,
)
from cti.consult import ConsultEvents, conference_figures
from cti.context import FOLLOWED, PREFETCHED, STEP_ROUNDS
from cti.holds import HoldEvents, hold_figures
from cti.recording_pauses import RecordingPauseEvents, closing
from cti.schemas import (
    CallAnswered,
    CallbackRequested,
    CallbackResult,
    CallEnded,
    CallHeld,
    CallOffered,
    CallResumed,
    CallTransferred,
    ConferenceStarted,
    ConsultAnswered,
    ConsultCompleted,
    ConsultEnded,
    Frame,
    RecordingPaused,
    RecordingReady,
    RecordingResumed,
    SurveyResult,
)
from routing import engine
from routing.engine import CallProfile, Ring
from routing.service import CallLive, RoutingError
from routing.store import EVENT_TTL_S, STALE, CustomerErasing, EventSeen, Step

log = logging.getLogger(__name__)

# The value of an event key once the event's writes are stored.
STORED = "1"

# Events whose step in Redis looks for their event key itself, atomically with the change
# (routing/store.py EventSeen): no separate look first. The others look first.
_SEEN_IN_STEP = frozenset({"call.offered", "call.answered", "call.ended", "call.transferred",
                           "call.held", "call.resumed", "consult.answered", "consult.ended",
                           "consult.completed", "conference.started", "recording.paused",
                           "recording.resumed", "callback.requested",
                           "callback.result"})


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


def scoped_event_id(integration: str, event_id: str) -> str:
    """An event id as the service keeps it: each integration has its own ids, so one PBX's
    id never makes another's event a duplicate. Stored as `<integration>/<event id>`
    (hashed when that would not fit the 200 characters the record keeps)."""
    scoped = f"{integration}/{event_id}"
    if len(scoped) <= 200:
        return scoped
    return f"{integration[:120]}/#{hashlib.sha256(event_id.encode()).hexdigest()}"


class TelephonyEvents(HoldEvents, ConsultEvents, RecordingPauseEvents, CallbackEvents):
    async def handle(self, frame: Frame, integration: str) -> Outcome:
        """Apply one event of `integration` and answer the PBX (acks carry its own id)."""
        scoped = frame.model_copy(update={"event_id": scoped_event_id(integration,
                                                                       frame.event_id)})
        outcome = await self._handle(scoped, integration)
        return Outcome({**outcome.ack, "event_id": frame.event_id}, outcome.replies)

    async def _handle(self, frame: Frame, integration: str) -> Outcome:
        """Apply one event to the live state, store it, and answer the PBX.

        Each handler changes Redis first and, in the same atomic step, keeps the writes
        the event owes the database under its event key; the ack waits until the group
        writer has stored them, and the key then says "stored". A resend finds the key:
        stored means a duplicate, anything else are writes still owed, stored now. So an
        event is applied once whichever node dies or whichever store is away, and the
        database never lags Redis for an acknowledged event.
        """
        if frame.type not in _SEEN_IN_STEP:
            seen = await self._event_key(frame)
            if seen is not None:
                return await self._seen(frame, integration, seen)
        try:
            applied = await self._apply(frame, integration)
        except EventSeen as e:
            return await self._seen(frame, integration, e.value)
        except StorageUnavailable:
            raise
        except (CallError, RoutingError):
            # Refused on what the call is now: perhaps because this event moved it there.
            seen = await self._event_key(frame)
            if seen is not None:
                return await self._seen(frame, integration, seen)
            # Redis may have lost the event key (restarted empty, state rebuilt from the
            # database): the record of stored events still knows a duplicate.
            if await self._stored(frame.event_id):
                return Outcome(messages.ack(frame, duplicate=True))
            raise
        finally:
            PREFETCHED.set(None)  # a read for this event only
        if applied.ops:
            await self._write(frame, applied.ops)
        return Outcome(messages.ack(frame), [r for r in applied.replies if r])

    async def _event_key(self, frame: Frame) -> str | None:
        return cast(str | None, await self.store.redis.get(self.keys.event(frame.event_id)))

    async def _check_owner(self, frame: Frame, integration: str) -> None:
        """Only the integration that offered a call sends its events (unless the site lets
        its PBXs hand calls over: CALLCENTER_INTEGRATION_HANDOVER)."""
        if self.integration_handover or isinstance(frame, CallOffered):
            return
        call = await self.store.call(frame.call_id)
        PREFETCHED.set((frame.call_id, call))  # the handler's first read of the call
        owner = call.get("integration")
        if owner is None:
            owner = await self._recorded_owner(frame.call_id)
        if owner is not None and owner != integration:
            raise WrongIntegration(frame.call_id)

    async def _recorded_owner(self, call_id: str) -> str | None:
        async with self._reader() as session:
            row = await session.get(Call, call_id)
        return None if row is None else (row.ivr or {}).get("_integration")

    async def _apply(self, frame: Frame, integration: str) -> Applied:
        await self._check_owner(frame, integration)
        match frame:
            case CallOffered():
                return await self._call_offered(frame, integration)
            case CallAnswered():
                return await self._call_answered(frame, integration)
            case CallEnded():
                return await self._call_ended(frame, integration)
            case CallTransferred():
                return await self._call_transferred(frame, integration)
            case CallHeld():
                return Applied([], await self._call_held(frame, integration))
            case CallResumed():
                return Applied([], await self._call_resumed(frame, integration))
            case ConsultAnswered():
                return Applied([], await self._consult_answered(frame, integration))
            case ConsultEnded():
                return Applied([], await self._consult_ended(frame, integration))
            case ConsultCompleted():
                return Applied([], await self._consult_completed(frame, integration))
            case ConferenceStarted():
                return Applied([], await self._conference_started(frame, integration))
            case RecordingPaused():
                return Applied([], await self._recording_paused(frame, integration))
            case RecordingResumed():
                return Applied([], await self._recording_resumed(frame, integration))
            case RecordingReady():
                return await self._recording_ready(frame, integration)
            case SurveyResult():
                return await self._survey_result(frame, integration)
            case CallbackRequested():
                return Applied(*await self._callback_requested(frame, integration))
            case CallbackResult():
                return Applied([], await self._callback_result(frame, integration))
        raise TypeError(f"no handler for {type(frame).__name__}")

    async def _seen(self, frame: Frame, integration: str, value: str) -> Outcome:
        """An event whose key is there: stored means a duplicate, anything else are the
        writes it still owes, stored now."""
        if value == STORED:
            return Outcome(messages.ack(frame, duplicate=True))
        return await self._store_owed(frame, integration, records.owed(value))

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
        await self.store.marks.set(self.keys.event(frame.event_id), STORED, ex=EVENT_TTL_S)

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
        return Outcome(messages.ack(frame), [r for r in replies if r])

    async def _withdraw(self, call_id: str) -> None:
        """Take a call that cannot be stored back out of routing, freeing its agent."""
        call, now = await self.store.call(call_id), self.clock()
        if not call:
            return
        agent_id = messages.int_or_none(call.get("agent_id"))
        step = await self.store.hang_up(
            call_id, call["state"], agent_id, now, timers=self.timers.key, wrap_until=now,
            wrap_timer=_wrap_timer(agent_id, call_id),
            rona=Timer("rona", call_id, str(agent_id)).member)
        if agent_id is not None and step.agent:
            final = after_hangup(CallState(step.state))
            await self._agent_left_call(agent_id, step.agent, call_id, final, now, now)

    async def _stored(self, event_id: str) -> bool:
        async with self._reader() as session:
            return await records.event_seen(session, event_id)

    async def _call_offered(self, frame: CallOffered, integration: str) -> Applied:
        """Route first and pop the agent's screen, then store the call, then ack.

        The screen-pop does not wait for the write; the ack does.
        """
        profile = await self.lookups(("profile", frame.ani),
                                     partial(crm.profile_of_number, ani=frame.ani))
        try:
            return await self._offer(frame, integration, profile)
        except CustomerErasing:
            # Found before their erasure was committed: the caller is a new one now.
            log.debug("call %s: its customer is being erased; a new caller", frame.call_id)
            return await self._offer(frame, integration, None)

    async def _offer(self, frame: CallOffered, integration: str,
                     profile: dict[str, Any] | None) -> Applied:
        now = self.clock()
        ivr = frame.ivr.model_dump(exclude_none=True)
        customer_id = profile["id"] if profile else None
        tier = profile["tier"] if profile else engine.DEFAULT_TIER
        call = CallProfile(
            call_id=frame.call_id, queue=frame.queue, tier=tier,
            queue_skills=self.router.queues.get(frame.queue, ()),
            sticky_agent_id=profile["last_agent_id"] if profile else None,
            open_complaint=bool(profile and profile["open_complaints"]),
            intent_skill=ivr.get("intent"))
        pop = {"call_id": frame.call_id, "ani": frame.ani, "customer": profile, "ivr": ivr,
               "tier": tier, "queue": frame.queue}
        ops = records.offer_ops(
            event_id=frame.event_id, call_id=frame.call_id, queue=frame.queue, ani=frame.ani,
            dnis=frame.dnis, customer_id=customer_id, tier=tier, ivr=ivr, offered_at=now,
            node_id=self.node_id, integration=integration)
        try:
            rings, assignment, queued = await self.router.offer(
                call, now, now, event=self._mark(frame, ops), read_sticky=True, notice=True,
                integration=integration,
                ani=frame.ani, dnis=frame.dnis, customer_id=customer_id or "",
                pop=orjson.dumps(pop).decode())
        except CallLive as e:
            raise CallExists(frame.call_id) from e
        await self._notify("call.offered", {"call_id": frame.call_id, "queue": frame.queue,
                                            "tier": tier, "offered_at": now})
        if assignment is not None:
            return Applied([await self._dispatch(assignment, integration, reply=True)], ops)
        await self._schedule_widening(frame.call_id, rings, now, now)
        # Where it waits was noted in the offer's own step (route.queued).
        notice = {} if queued is None else messages.route_queued(
            frame.call_id, queued.queue, queued.position, queued.wait_s)
        return Applied([notice], ops)

    async def _route_notice(self, call_id: str) -> dict[str, Any]:
        """Where a live call stands, as the PBX hears it: queued, or ringing an agent.
        A call already answered (or past it) owes the PBX nothing."""
        live = await self.store.call(call_id)
        if live.get("state") == CallState.queued.value:
            return await self._queued_notice(call_id)
        if live.get("state") == CallState.ringing.value and live.get("agent_id"):
            agent = await self.store.agent(int(live["agent_id"]))
            return messages.route_connect(call_id, int(live["agent_id"]),
                                          agent.get("extension", ""))
        return {}

    async def _call_answered(self, frame: CallAnswered, integration: str) -> Applied:
        now = self.clock()
        call = await self._live(frame.call_id)
        check(frame.call_id, call["state"], frame.type)
        if call.get("agent_id") != str(frame.agent_id):
            raise WrongAgent(frame.call_id, messages.int_or_none(call.get("agent_id")),
                             frame.agent_id)
        ops = [records.event_op(frame.event_id, frame.call_id, frame.type),
               records.call_op(frame.call_id, state=CallState.connected.value,
                               queue=call.get("queue", ""), agent_id=frame.agent_id),
               records.interaction_op(frame.call_id, answered_at=records.at(now),
                                      wait_s=now - float(call["offered_at"]),
                                      **messages.routing_record(call))]
        step = await self.store.answer(
            frame.call_id, frame.agent_id, now, timers=self.timers.key,
            rona=Timer("rona", frame.call_id, str(frame.agent_id)).member,
            event=self._mark(frame, ops), answered_at=now)
        if not step.won:
            if step.state.startswith("wrong_agent:"):
                raise WrongAgent(frame.call_id, messages.int_or_none(
                    step.state.removeprefix("wrong_agent:")), frame.agent_id)
            await self._refuse(frame, step.state)
        if step.agent:
            await self._agent_changed(frame.agent_id, step.agent,
                                      {"type": "call.connected", "call_id": frame.call_id})
        await self._notify("call.answered", {**call, "answered_at": now})
        return Applied([], writer.numbered(ops, step.seq))

    async def _call_ended(self, frame: CallEnded | CallTransferred,
                          integration: str) -> Applied:
        """The caller left: hung up, or (call.transferred to a number) went elsewhere."""
        now = self.clock()
        cause = frame.cause if isinstance(frame, CallEnded) else "transferred"
        for _ in range(5):
            call = await self._live(frame.call_id)
            if call["state"] == CallState.callback.value:
                # The caller left after asking for a callback: nothing more to do.
                return Applied([], [records.event_op(frame.event_id, frame.call_id,
                                                     frame.type)])
            state = check(frame.call_id, call["state"], frame.type)
            final = after_hangup(state)
            ops, outcome, kept = _hang_up_ops(frame, cause, call, final, now)
            agent_id = messages.int_or_none(call.get("agent_id"))
            consulted = messages.int_or_none(call.get("consult_agent"))
            until = now + self._wrap_up_s(call.get("queue", ""))
            step = await self.store.hang_up(
                frame.call_id, state.value, agent_id, now, timers=self.timers.key,
                wrap_until=until, wrap_timer=_wrap_timer(agent_id, frame.call_id),
                rona=Timer("rona", frame.call_id, str(agent_id)).member,
                event=self._mark(frame, ops), consulted=consulted, ended_at=now,
                end_cause=cause, watched=self._followers(frame.call_id), **kept)
            if step.won:
                break
            if step.state == "unknown":
                await self._refuse(frame, step.state)
            # The call moved on while this was decided (an agent was reserved for it, or
            # it was answered): decide again on what it is now.
            log.debug("call %s went from %s to %s under call.ended", frame.call_id,
                      state.value, step.state)
        else:
            raise IllegalTransition(frame.call_id, step.state, frame.type)
        self.timers.expect(until)
        if agent_id is not None and step.agent:
            await self._agent_left_call(agent_id, step.agent, frame.call_id, final, until, now)
        if consulted is not None and step.other:  # a consulted agent freed with the call
            await self._agent_left_call(consulted, step.other, frame.call_id,
                                        CallState.abandoned, until, now)
        await self._notify("call.ended", {**call, "ended_at": now, "outcome": outcome,
                                          "final": final.value, FOLLOWED: step.watched})
        return Applied([], writer.numbered(ops, step.seq))

    def _followers(self, call_id: str) -> list[str]:
        """What may follow a call and must end with it: its monitor, its PBX commands
        (cti/monitor.py, cti/commands.py clear them when told the call ended)."""
        return [self.keys.monitor(call_id), self.keys.calls_commands(call_id)]

    async def _agent_left_call(self, agent_id: int, agent: dict[str, str], call_id: str,
                               final: CallState, wrap_until: float, now: float) -> None:
        """Tell the agent its call ended: into wrap-up, or (the caller hung up while it
        rang) free for the next call."""
        if final is CallState.wrap_up:
            await self._agent_changed(agent_id, agent, {
                "type": "call.ended", "call_id": call_id, "wrap_up_until": wrap_until})
            return
        await self._agent_changed(agent_id, agent, {
            "type": "call.ended", "call_id": call_id, "reason": "caller_hangup"})
        await self._offer_next_call(agent_id, agent, now)

    async def _call_transferred(self, frame: CallTransferred, integration: str) -> Applied:
        if frame.to_number is not None:
            return await self._call_ended(frame, integration)
        for _ in range(STEP_ROUNDS):
            now = self.clock()
            call = await self._live(frame.call_id)
            check(frame.call_id, call["state"], frame.type)
            moved = await self._transfer_step(frame, call, now)
            if moved is not None:
                return await self._transferred(frame, integration, call, now, *moved)
            log.debug("call %s moved on under %s; deciding again", frame.call_id, frame.type)
        raise IllegalTransition(frame.call_id, call["state"], frame.type)

    async def _transfer_step(self, frame: CallTransferred, call: dict[str, str], now: float
                             ) -> tuple[Step, list[writer.Op], list[Ring], float] | None:
        """The transfer decided on the call as read, as one step at the version read (so a
        pause that landed since is closed, not left open); None when the call moved on."""
        queue = frame.to_queue or call["queue"]
        leg = legs.ended_leg(call, now, "transferred", kind="blind",
                             to=legs.target(frame.to_queue, frame.to_agent_id, None))
        all_legs = legs.with_leg(call, leg)
        rings = await self.router.rings_for(CallProfile(
            call_id=frame.call_id, queue=queue, tier=call.get("tier", "standard"),
            sticky_agent_id=frame.to_agent_id, sticky_agent_working=frame.to_agent_id is not None,
        ))
        previous_agent = messages.int_or_none(call.get("agent_id"))
        # A paused recording resumes on a transfer (the PBX resumes it).
        unpaused, pause_values, pause_ops = closing(call, now, "transfer")
        ops = [records.event_op(frame.event_id, frame.call_id, frame.type),
               records.call_op(frame.call_id, state="queued", queue=queue, agent_id=None),
               records.interaction_op(frame.call_id, legs=all_legs, **pause_values), *pause_ops]
        score = engine.priority_score(now, call.get("tier", "standard"),
                                      self.router.policy_for(queue))
        # A transferred call keeps its place in time: it was offered long ago.
        score = min(score, float(call["score"]))
        until = now + self._wrap_up_s(call["queue"])
        step = await self.store.transfer(
            frame.call_id, previous_agent, queue, score, now, timers=self.timers.key,
            wrap_until=until, wrap_timer=_wrap_timer(previous_agent, frame.call_id),
            event=self._mark(frame, ops), version=call.get("v", "0"),
            rings=engine.encode_rings(rings), offered_at=now,
            transferred_from=previous_agent or "", held_at="",
            hold_s=hold_figures(call, now)["hold_s"], legs=orjson.dumps(all_legs).decode(),
            **unpaused)
        if step.state == STALE:
            return None
        if not step.won:
            await self._refuse(frame, step.state)
        self.timers.expect(until)
        return step, ops, rings, until

    async def _transferred(self, frame: CallTransferred, integration: str,
                           call: dict[str, str], now: float, step: Step,
                           ops: list[writer.Op], rings: list[Ring], until: float) -> Applied:
        """What the transfer's winner does: tell the agent, route the call again."""
        previous_agent = messages.int_or_none(call.get("agent_id"))
        queue = frame.to_queue or call["queue"]
        if previous_agent is not None and step.agent:
            await self._agent_changed(previous_agent, step.agent, {
                "type": "call.ended", "call_id": frame.call_id, "wrap_up_until": until})
        numbered = writer.numbered(ops, step.seq)
        # The call left its agent: what was tied to the agent's leg (a monitor) ends.
        await self._notify("call.transferred", {
            "call_id": frame.call_id, "queue": queue, "agent_id": previous_agent,
            "from_queue": call["queue"], "tier": call.get("tier"),
            "answered_at": call.get("answered_at"), "at": now})
        assignment = await self.router.route_call(frame.call_id, now)
        if assignment is not None:
            return Applied([await self._dispatch(assignment, integration, reply=True)],
                           numbered)
        await self._schedule_widening(frame.call_id, rings, now, now)
        return Applied([await self._queued_notice(frame.call_id)], numbered)

    async def _recording_ready(self, frame: RecordingReady, integration: str) -> Applied:
        """Keep the recording, queue its transcription, and only then mark the event
        stored: if queueing fails, the PBX's resend queues it (the event is not a
        duplicate yet)."""
        state, customer_id = await self._any_state(frame.call_id)
        check(frame.call_id, state, frame.type)
        async with self._reader() as session:
            record = await records.interaction(session, frame.call_id)
            # The same recording announced before by another, stored event: its transcript
            # stands.
            again = record is not None and record.recording_path == frame.path \
                and record.transcript_status in ("pending", "done") \
                and await records.recording_announced(session, frame.call_id, frame.event_id)
        if not again:
            await self.writer.write([records.interaction_op(
                frame.call_id, recording_path=frame.path, transcript_status="pending")])
            if self.on_recording is not None:
                await self.on_recording(frame.call_id, frame.path, None)
        await self._write(frame, [records.event_op(frame.event_id, frame.call_id, frame.type)])
        return Applied([], [])

    async def _survey_result(self, frame: SurveyResult, integration: str) -> Applied:
        state, _ = await self._any_state(frame.call_id)
        check(frame.call_id, state, frame.type)
        await self._write(frame, [records.event_op(frame.event_id, frame.call_id, frame.type),
                                  records.interaction_op(frame.call_id,
                                                         survey_score=frame.score,
                                                         survey_expectation=frame.expectation,
                                                         survey_perception=frame.perception)])
        await self._notify("survey.result", {"call_id": frame.call_id, "score": frame.score})
        return Applied([], [])

    async def state_snapshot(self, integration: str) -> dict[str, Any]:
        """This integration's live calls, and the callbacks it is asked to dial now (their
        route.callback again: one sent while the PBX was away was not heard)."""
        calls = [c for c in await self.store.live_calls() if c.get("integration") == integration]
        dialling = [c for c in await self.callbacks.pending()
                    if c.get("integration") == integration and c.get("state") == "ringing"]
        agents = {c["agent_id"]: await self.store.agent(int(c["agent_id"])) for c in dialling}
        return {"type": "state.snapshot", "calls": [
            {"call_id": c["id"], "state": c["state"], "queue": c.get("queue"),
             "agent_id": messages.int_or_none(c.get("agent_id"))} for c in calls],
            "callbacks": [messages.route_callback(c, int(c["agent_id"]), agents[c["agent_id"]]
                                                  .get("extension", "")) for c in dialling]}


def _wrap_timer(agent_id: int | None, call_id: str) -> str:
    return Timer("wrapup", str(agent_id), call_id).member


def _hang_up_ops(frame: CallEnded | CallTransferred, cause: str, call: dict[str, str],
                 final: CallState, now: float
                 ) -> tuple[list[writer.Op], str, dict[str, str]]:
    """What call.ended (or a transfer out of the center) writes, the outcome, and what
    the call keeps for its wrap-up (its legs)."""
    outcome = "failed" if cause == "failed" else (
        "answered" if final is CallState.wrap_up else "abandoned")
    values: dict[str, Any] = {"ended_at": records.at(now), "end_cause": cause,
                              "outcome": outcome}
    kept: dict[str, str] = {}
    pause_ops: list[writer.Op] = []
    if final is CallState.wrap_up:
        values["talk_s"] = now - float(call.get("answered_at") or now)
        values.update(hold_figures(call, now))
        if call.get("conference_at") or call.get("conference_s"):
            values.update(conference_figures(call, now))
        extra = {"kind": "blind", "to": legs.target(None, None, frame.to_number)} \
            if isinstance(frame, CallTransferred) else {}
        values["legs"] = legs.with_leg(call, legs.ended_leg(
            call, now, "transferred" if extra else cause, **extra))
        kept = {"legs": orjson.dumps(values["legs"]).decode()}
        # A paused recording resumes by itself at hang-up: its interval ends here.
        unpaused, pause_values, pause_ops = closing(call, now, "hangup")
        kept.update(unpaused)
        values.update(pause_values)
    else:
        values["wait_s"] = now - float(call.get("offered_at") or now)
        values.update(messages.routing_record(call))
    return [records.event_op(frame.event_id, frame.call_id, frame.type),
            records.call_op(frame.call_id, state=final.value, queue=call.get("queue", ""),
                            agent_id=messages.int_or_none(call.get("agent_id"))
                            if final is CallState.wrap_up else None),
            records.interaction_op(frame.call_id, **values), *pause_ops], outcome, kept
