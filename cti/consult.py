"""Consult transfers and conferences (docs/protocol.md, "Consult transfer").

Agent A asks to consult agent B (or a queue, which gives its longest-idle available
agent): B is reserved and rung, its screen pops marked as a consult from A with A's notes,
and the caller is held (`consult_ringing`). The PBX then reports the consulted leg:
`consult.answered` (A and B talk: `consulting`), `conference.started` (all three:
`conference`), `consult.completed` (the caller with B, A into wrap-up) and `consult.ended`
(the caller back with A, B freed). B not answering in time is B's ring-no-answer: B goes
not-ready `missed` and A has the caller back on hold.

Every transition is one Lua step (routing/consult.py) guarded by the call's state, its
version and who B is; a loser reads the call again and decides again, or is refused on
what the call is now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from core import writer
from core.timers import Timer
from cti import legs, messages, records
from cti.agents import AgentLifecycle
from cti.calls import CONSULT, TALKING, CallError, CallState, IllegalTransition, WrongAgent, check
from cti.commands import NotYourCall
from cti.holds import hold_figures
from cti.recording_pauses import PAUSED_AT, PAUSES, audit_op, closing
from cti.schemas import ConferenceStarted, ConsultAnswered, ConsultCompleted, ConsultEnded
from routing import engine
from routing.consult import ConsultStep, Move

log = logging.getLogger(__name__)

CONSULT_RING = "crona"
_ROUNDS = 5
# What a consult leaves on the call, cleared when it ends.
_CLEARED = {"consult_from": "", "consult_at": "", "consult_to": "", "consult_notes": "",
            "consult_by": "", "conference_at": ""}


def consult_timer(call_id: str, agent_id: int) -> Timer:
    return Timer(CONSULT_RING, call_id, str(agent_id))


class ConsultRefused(CallError):
    """No agent could be reserved for the consult (busy, not ready, none free)."""

    code = "agent_unavailable"

    def __init__(self, target: str, why: str) -> None:
        super().__init__(f"{target} cannot take a consult now: {why}")
        self.why = why


@dataclass(frozen=True)
class Reserved:
    """The consulted agent reserved for a call, with what the PBX needs to reach it."""

    agent_id: int
    extension: str


def conference_figures(call: dict[str, str], now: float) -> dict[str, float]:
    """Seconds the call spent in conference so far (one in progress counted)."""
    total = float(call.get("conference_s") or 0)
    if call.get("conference_at"):
        total += max(0.0, now - float(call["conference_at"]))
    return {"conference_s": round(total, 3)}


def _hold_ends(call: dict[str, str], now: float) -> dict[str, Any]:
    """The caller is taken off hold now: the hold so far added up."""
    return {"held_at": "", "hold_count": call.get("hold_count") or 0,
            "hold_s": hold_figures(call, now)["hold_s"]}


class ConsultEvents(AgentLifecycle):
    # The server's own steps: reserve B, undo when the PBX did not act, ring-no-answer --

    async def consult_start(self, call_id: str, agent_id: int | None, *,
                            to_agent_id: int | None, to_queue: str | None,
                            notes: str) -> Reserved:
        """Reserve B for a consult of the call (with `agent_id`, None: whoever has it) and
        pop B's screen; the caller is held. Raises when the call or B cannot."""
        target = legs.target(to_queue, to_agent_id, None)
        pool = "" if to_queue is None else engine.queue_pool(to_queue)
        for _ in range(_ROUNDS):
            now = self.clock()
            call = await self._live(call_id)
            a = self._consult_owner(call_id, call, agent_id, "transfer")
            fields = {**_consult_fields(call, now), "consult_to": target,
                      "consult_notes": notes, "consult_by": a}
            step = await self.consults.step(
                call_id, a, Move(tuple(s.value for s in TALKING), call.get("v", "0"), "",
                                 CallState.consult_ringing.value, "reserve"), now, fields,
                reserve=(to_agent_id, pool),
                timer=(f"{CONSULT_RING}|{call_id}|", now + self.ring_timeout_s))
            if step.refused:
                raise ConsultRefused(target, step.refused)
            if step.won:
                break
            if not step.stale:
                raise IllegalTransition(call_id, step.state, "transfer")
        else:
            raise IllegalTransition(call_id, call["state"], "transfer")
        assert step.b is not None
        await self._consult_popped(call, step, a, target, notes, now)
        return Reserved(step.b, step.b_after.get("extension", ""))

    def _consult_owner(self, call_id: str, call: dict[str, str], agent_id: int | None,
                       action: str) -> int:
        """The call's agent (A), which must be the asker when an agent asks."""
        a = messages.int_or_none(call.get("agent_id"))
        if call["state"] not in {s.value for s in TALKING} or a is None:
            raise IllegalTransition(call_id, call["state"], action)
        if agent_id is not None and a != agent_id:
            raise NotYourCall(call_id)
        return a

    async def _consult_popped(self, call: dict[str, str], step: ConsultStep, a: int,
                              target: str, notes: str, now: float) -> None:
        assert step.b is not None
        reason = orjson.loads(call.get("reason") or "{}")
        pop = messages.consult_pop({**call, "consult_by": str(a), "consult_to": target,
                                    "consult_notes": notes}, reason)
        await self._agent_changed(step.b, step.b_after, pop)
        await self._to_agent(a, messages.consult_notice(call["id"], "ringing", a, step.b))
        await self._notify("consult.started", {**call, "consult_agent": step.b, "at": now})

    async def consult_undo(self, call_id: str, b: int, why: str) -> None:
        """The PBX did not carry the consult out: B freed, the call as it was before."""
        def move(call: dict[str, str], now: float) -> tuple[Move, dict[str, Any]]:
            before = call.get("consult_from") or CallState.connected.value
            fields: dict[str, Any] = dict(_CLEARED)
            if before == CallState.connected.value:  # the hold the consult began is undone
                fields.update(held_at="", hold_count=max(0, int(call.get("hold_count") or 1) - 1))
            return Move((CallState.consult_ringing.value,), call.get("v", "0"), str(b),
                        before, "free"), fields

        done = await self._server_step(call_id, move, cancel=consult_timer(call_id, b).member)
        if done is None:
            log.debug("consult of %s by %s ended before it was undone", call_id, b)
            return
        call, step = done
        await self._consult_left(call, step, "consult_failed", why)

    async def consult_no_answer(self, call_id: str, b: int) -> None:
        """B did not answer: B not-ready `missed`, the caller on hold with A again."""
        def move(call: dict[str, str], now: float) -> tuple[Move, dict[str, Any]]:
            return Move((CallState.consult_ringing.value,), call.get("v", "0"), str(b),
                        CallState.on_hold.value, "missed"), dict(_CLEARED)

        done = await self._server_step(call_id, move)
        if done is None:
            log.debug("consult ring timeout for %s after it moved on", call_id)
            return
        call, step = done
        await self._consult_left(call, step, "ring_no_answer", "no_answer")
        await self._to_agent(int(call["agent_id"]), {"type": "call.held", "call_id": call_id})
        await self._notify("consult.no_answer", {**call, "consult_agent": b})

    async def _server_step(self, call_id: str,
                           move: Callable[[dict[str, str], float], tuple[Move, dict[str, Any]]],
                           cancel: str = "") -> tuple[dict[str, str], ConsultStep] | None:
        for _ in range(_ROUNDS):
            now = self.clock()
            call = await self.store.call(call_id)
            if not call or not call.get("agent_id"):
                return None
            chosen, fields = move(call, now)
            step = await self.consults.step(call_id, int(call["agent_id"]), chosen, now, fields,
                                            cancel=cancel)
            if step.won:
                return call, step
            if not step.stale:
                return None
        return None

    async def _consult_left(self, call: dict[str, str], step: ConsultStep, b_reason: str,
                            cause: str) -> None:
        """B left the consult: tell B (and offer it the next call) and A."""
        if step.b is not None and step.b_after:
            await self._agent_changed(step.b, step.b_after, {
                "type": "call.ended", "call_id": call["id"], "reason": b_reason})
            await self._offer_next_call(step.b, step.b_after, self.clock())
        a = int(call["agent_id"])
        await self._to_agent(a, messages.consult_notice(call["id"], "ended", a, step.b,
                                                        cause=cause))

    # The PBX's events --------------------------------------------------------

    async def _consult_answered(self, frame: ConsultAnswered, integration: str
                                ) -> list[writer.Op]:
        def move(call: dict[str, str], now: float) -> tuple[Move, dict[str, Any]]:
            if call.get("consult_agent") != str(frame.agent_id):
                raise WrongAgent(frame.call_id, messages.int_or_none(call.get("consult_agent")),
                                 frame.agent_id)
            return Move((CallState.consult_ringing.value,), call.get("v", "0"),
                        str(frame.agent_id), CallState.consulting.value, "answer"), {}

        call, step, ops = await self._pbx_step(frame, move)
        a = int(call["agent_id"])
        if step.b_after:
            await self._agent_changed(frame.agent_id, step.b_after)
        for who in (a, frame.agent_id):
            await self._to_agent(who, messages.consult_notice(frame.call_id, "talking", a, step.b))
        return ops

    async def _conference_started(self, frame: ConferenceStarted, integration: str
                                  ) -> list[writer.Op]:
        def move(call: dict[str, str], now: float) -> tuple[Move, dict[str, Any]]:
            return Move((CallState.consulting.value,), call.get("v", "0"), "*",
                        CallState.conference.value), {**_hold_ends(call, now),
                                                      "conference_at": now}

        call, step, ops = await self._pbx_step(frame, move)
        a = int(call["agent_id"])
        notice = messages.consult_notice(frame.call_id, "conference", a, step.b)
        for who in (a, step.b):
            if who is not None:
                await self._to_agent(who, notice)
        return ops

    async def _consult_ended(self, frame: ConsultEnded, integration: str) -> list[writer.Op]:
        def move(call: dict[str, str], now: float) -> tuple[Move, dict[str, Any]]:
            b = call.get("consult_agent") or ""
            if frame.agent_id is not None and b != str(frame.agent_id):
                raise WrongAgent(frame.call_id, messages.int_or_none(b), frame.agent_id)
            return Move(tuple(s.value for s in CONSULT), call.get("v", "0"), b,
                        CallState.connected.value, "free"), {
                **_hold_ends(call, now), **conference_figures(call, now), **_CLEARED}

        call, step, ops = await self._pbx_step(frame, move)
        await self._consult_left(call, step, "consult_ended", frame.cause)
        return ops

    async def _consult_completed(self, frame: ConsultCompleted, integration: str
                                 ) -> list[writer.Op]:
        until = 0.0

        def move(call: dict[str, str], now: float) -> tuple[Move, dict[str, Any]]:
            nonlocal until
            b = call.get("consult_agent") or ""
            if frame.agent_id is not None and b != str(frame.agent_id):
                raise WrongAgent(frame.call_id, messages.int_or_none(b), frame.agent_id)
            until = now + self._wrap_up_s(call.get("queue", ""))
            return Move((CallState.consulting.value, CallState.conference.value),
                        call.get("v", "0"), b, CallState.connected.value, "take", "wrap"), \
                _completed_fields(call, b, now)

        call, step, ops = await self._pbx_step(
            frame, move, wrap=lambda call: (Timer("wrapup", call["agent_id"], frame.call_id)
                                            .member, until))
        self.timers.expect(until)
        a = int(call["agent_id"])
        if step.a_after:
            await self._agent_changed(a, step.a_after, {
                "type": "call.ended", "call_id": frame.call_id, "wrap_up_until": until})
        if step.b is not None:
            await self._to_agent(step.b, messages.consult_notice(frame.call_id, "completed", a,
                                                                 step.b))
            await self._to_agent(step.b, {"type": "call.connected", "call_id": frame.call_id})
        await self._notify("consult.completed", {**call, "consult_agent": step.b})
        return ops

    async def _pbx_step(self, frame: ConsultAnswered | ConsultEnded | ConsultCompleted
                        | ConferenceStarted,
                        move: Callable[[dict[str, str], float], tuple[Move, dict[str, Any]]], *,
                        wrap: Callable[[dict[str, str]], tuple[str, float]] | None = None
                        ) -> tuple[dict[str, str], ConsultStep, list[writer.Op]]:
        """Apply one PBX event as one consult step (decided again on a stale read)."""
        for _ in range(_ROUNDS):
            now = self.clock()
            call = await self._live(frame.call_id)
            check(frame.call_id, call["state"], frame.type)
            chosen, fields = move(call, now)
            ops = _event_ops(frame, call, chosen, fields)
            b = messages.int_or_none(call.get("consult_agent"))
            cancel = "" if b is None else consult_timer(frame.call_id, b).member
            step = await self.consults.step(
                frame.call_id, int(call["agent_id"]), chosen, now, fields, cancel=cancel,
                wrap=wrap(call) if wrap else ("", 0.0),
                event=(self.keys.event(frame.event_id), writer.dumps(ops)))
            if step.won:
                return call, step, writer.numbered(ops, step.seq)
            if not step.stale:
                await self._refuse(frame, step.state)
            log.debug("call %s moved on under %s; deciding again", frame.call_id, frame.type)
        raise IllegalTransition(frame.call_id, call["state"], frame.type)


def _consult_fields(call: dict[str, str], now: float) -> dict[str, Any]:
    """A consult begins: the caller is held (unless held already)."""
    fields: dict[str, Any] = {"consult_from": call["state"], "consult_at": now,
                              "conference_at": ""}
    if call["state"] == CallState.connected.value:
        fields.update(held_at=now, hold_count=int(call.get("hold_count") or 0) + 1,
                      hold_s=call.get("hold_s") or 0)
    return fields


def _completed_fields(call: dict[str, str], b: str, now: float) -> dict[str, Any]:
    """The caller is B's now: A's leg ends as a consult transfer, B's leg begins; a paused
    recording resumes, as on any transfer (cti/recording_pauses.py)."""
    leg = legs.ended_leg(call, now, "transferred", kind="consult",
                         to=call.get("consult_to") or f"agent:{b}")
    agents = ",".join(filter(None, [call.get("agents", ""), b]))
    unpaused, _, _ = closing(call, now, "transfer")
    return {**_hold_ends(call, now), **conference_figures(call, now), **_CLEARED, **unpaused,
            "answered_at": now, "transferred_from": call["agent_id"], "agents": agents,
            "legs": orjson.dumps(legs.with_leg(call, leg)).decode()}


def _event_ops(frame: Any, call: dict[str, str], move: Move, fields: dict[str, Any]
               ) -> list[writer.Op]:
    """What a consult event writes: the event, the call's state, and the record's figures."""
    ops = [records.event_op(frame.event_id, frame.call_id, frame.type)]
    call_values: dict[str, Any] = {"state": move.state, "queue": call.get("queue", ""),
                                   "agent_id": messages.int_or_none(call.get("agent_id"))}
    record: dict[str, Any] = {k: kind(fields[k]) for k, kind in (
        ("hold_count", int), ("hold_s", float), ("conference_s", float)) if k in fields}
    # The consult's hold began with the server's reservation, which writes nothing.
    record.setdefault("hold_count", int(call.get("hold_count") or 0))
    if move.b == "take":
        b = int(call["consult_agent"])
        call_values["agent_id"] = b
        record.update(agent_id=b, agent_ids=[int(x) for x in fields["agents"].split(",") if x],
                      legs=orjson.loads(fields["legs"]))
    ops.append(records.call_op(frame.call_id, **call_values))
    if move.b == "take" and call.get(PAUSED_AT):  # the pause the transfer ended
        intervals = orjson.loads(fields[PAUSES])
        record["recording_pauses"] = intervals
        ops.append(audit_op(frame.call_id, "recording.resumed", "transfer", intervals[-1]))
    if record:
        ops.append(records.interaction_op(frame.call_id, **record))
    return ops
