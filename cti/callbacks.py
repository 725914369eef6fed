"""Queue callbacks on the call path: `callback.requested`, `callback.result` and the
callback timers (due, an attempt's timeout). The live steps are in routing/callbacks.py;
a callback that reaches an agent is dispatched like a call (cti/context.py), with
`route.callback` for the PBX instead of `route.connect`.

A call converted to a callback is not an abandon: its record ends with state and outcome
`callback`. A connected callback is a call of its own, under the callback's id: the PBX
reports `call.ended` for it and the agent wraps it up as any call.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

import orjson

from core import writer
from core.models import Callback
from core.timers import Timer
from cti import callback_records, messages
from cti.agents import AgentLifecycle
from cti.calls import CallError, CallState, NoSuchCall
from cti.schemas import CallbackRequested, CallbackResult
from routing import engine
from routing.callbacks import Result
from routing.store import EVENT_TTL_S

log = logging.getLogger(__name__)

NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
# A not_before this far in the past is taken as a clock skew, and means now.
PAST_SLACK_S = 60.0
_ROUNDS = 5


class CallNotWaiting(CallError):
    code = "call_not_waiting"

    def __init__(self, call_id: str, state: str) -> None:
        super().__init__(f"call {call_id!r} is {state}: a callback replaces only a "
                         "waiting call")


class CallbackExists(CallError):
    code = "callback_exists"

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id!r} was converted to a callback already")


class InvalidNumber(CallError):
    code = "invalid_number"

    def __init__(self, number: str) -> None:
        super().__init__(f"{number!r} is not a number to call back (digits, optional +)")


class InvalidTime(CallError):
    code = "invalid_not_before"

    def __init__(self, why: str) -> None:
        super().__init__(f"not_before {why}")


class UnknownCallback(CallError):
    code = "unknown_callback"

    def __init__(self, callback_id: str) -> None:
        super().__init__(f"no callback {callback_id!r}")


class CallbackFinished(CallError):
    code = "callback_finished"

    def __init__(self, callback_id: str, state: str) -> None:
        super().__init__(f"callback {callback_id!r} is {state} already")


class CallbackNotDialling(CallError):
    code = "callback_not_dialling"

    def __init__(self, callback_id: str, state: str) -> None:
        super().__init__(f"callback {callback_id!r} is {state}, not being dialled")


def new_id() -> str:
    return f"cb-{secrets.token_hex(10)}"


def due_timer(callback_id: str) -> Timer:
    return Timer("cbdue", callback_id)


def attempt_timer(callback_id: str, agent_id: int | str) -> Timer:
    return Timer("cbtry", callback_id, str(agent_id))


class CallbackEvents(AgentLifecycle):
    # callback.requested ---------------------------------------------------------

    async def _callback_requested(self, frame: CallbackRequested,
                                  integration: str) -> tuple[list[dict[str, Any]],
                                                             list[writer.Op]]:
        now = self.clock()
        due = self.callback_due(frame.not_before.timestamp() if frame.not_before else None,
                                now)
        call = await self._live(frame.call_id)
        if call["state"] != CallState.queued.value:
            raise self._not_waiting(frame.call_id, call["state"])
        number = frame.number or call.get("ani", "")
        if not NUMBER.match(number):
            raise InvalidNumber(number)
        callback_id = new_id()
        pop = {**orjson.loads(call["pop"]), "call_id": callback_id, "ani": number,
               "callback": {"callback_id": callback_id, "call_id": frame.call_id,
                            "number": number, "requested_at": now, "source": "caller"}}
        ops = callback_records.request_ops(frame, call, callback_id, number, integration,
                                           now, due)
        won, after, seq = await self.callbacks.request(
            frame.call_id, callback_id, number, now, due, orjson.dumps(pop).decode(),
            due_timer(callback_id).member, self._mark(frame, ops), EVENT_TTL_S,
            source="caller")
        if not won:
            raise self._not_waiting(frame.call_id, str(after))
        await self._notify("callback.requested", {
            "callback_id": callback_id, "call_id": frame.call_id, "number": number,
            "queue": call["queue"], "customer_id": call.get("customer_id"),
            "due_at": due or now, "source": "caller"})
        accepted = messages.callback_accepted(callback_id, frame.call_id, number, due or now)
        return ([accepted, await self._route_callback(callback_id, now, integration)],
                writer.numbered(ops, seq))

    def callback_due(self, at: float | None, now: float) -> float | None:
        """When a callback asked for `at` is due (None: now); refuses the past and the
        far future."""
        if at is None or at <= now:
            if at is not None and at < now - PAST_SLACK_S:
                raise InvalidTime("is in the past")
            return None
        if at > now + self.callback_max_ahead_s:
            raise InvalidTime(f"is more than {self.callback_max_ahead_s:.0f} s ahead")
        return at

    def _not_waiting(self, call_id: str, state: str) -> CallError:
        if state == "unknown":
            return NoSuchCall(call_id)
        if state in (CallState.callback.value, "callback_exists"):
            return CallbackExists(call_id)
        return CallNotWaiting(call_id, state)

    async def _route_callback(self, callback_id: str, now: float,
                              integration: str | None) -> dict[str, Any]:
        """Give a queued callback to an agent now if one may take it; route.callback for
        the PBX (a reply when `integration` is the PBX being answered) or nothing."""
        assignment = await self.router.route_call(callback_id, now)
        if assignment is None:
            live = await self.store.call(callback_id)
            if live.get("state") == CallState.queued.value:
                await self._schedule_widening(callback_id, list(engine.decode_rings(live["rings"])),
                                              float(live["offered_at"]), now)
            return {}
        return await self._dispatch(assignment, integration, reply=integration is not None)

    # callback.result -----------------------------------------------------------

    async def _callback_result(self, frame: CallbackResult,
                               integration: str) -> list[writer.Op]:
        now = self.clock()
        for _ in range(_ROUNDS):
            live = await self._dialling(frame.callback_id)
            agent_id = int(live["agent_id"])
            ops = callback_records.result_ops(frame, live, now, self.callback_attempts)
            result = await self._attempt_ends(live, frame.outcome, now, event=self._mark(
                frame, ops), agent_after="")
            if result.won:
                await self._after_attempt(frame.callback_id, agent_id, frame.outcome, result, now)
                return ops
        raise CallbackNotDialling(frame.callback_id, result.state)

    async def _dialling(self, callback_id: str) -> dict[str, str]:
        live = await self.callbacks.get(callback_id)
        if live.get("state") == "ringing" and live.get("agent_id"):
            return live
        if live:
            raise CallbackNotDialling(callback_id, live["state"])
        async with self._reader() as session:
            row = await session.get(Callback, callback_id)
        if row is None or row.state == "pending":
            raise UnknownCallback(callback_id)  # pending in the record: lost with Redis
        raise CallbackFinished(callback_id, row.state)

    async def _attempt_ends(self, live: dict[str, str], outcome: str, now: float, *,
                            event: tuple[str, bytes] | None,
                            agent_after: str) -> Result:
        callback_id, agent_id = live["id"], live["agent_id"]
        result = await self.callbacks.result(
            callback_id, int(agent_id), outcome, now,
            attempt_timer=attempt_timer(callback_id, agent_id).member,
            retry_timer=due_timer(callback_id).member, retry_due=now + self.callback_retry_s,
            max_attempts=self.callback_attempts, event=event, ttl=EVENT_TTL_S,
            agent_after=agent_after, expect_agent=agent_id,
            expect_attempts=live.get("attempts", "0"))
        self.timers.expect(now + self.callback_retry_s)
        return result

    async def _after_attempt(self, callback_id: str, agent_id: int, outcome: str,
                             result: Result, now: float) -> None:
        """Tell the agent and the observers what the attempt this caller decided did."""
        if result.state == "connected":
            # Not counted as an answered call: the call it replaced ended as `callback`.
            if result.agent:
                await self._agent_changed(agent_id, result.agent, {
                    "type": "call.connected", "call_id": callback_id})
        elif result.agent:
            await self._agent_changed(agent_id, result.agent, {
                "type": "call.ended", "call_id": callback_id, "reason": f"callback_{outcome}"})
            await self._offer_next_call(agent_id, result.agent, now)
        await self._notify(f"callback.{result.state}", {
            **callback_records.public(result.callback), "outcome": outcome, "agent_id": agent_id})

    # Scheduled and restored callbacks -------------------------------------------

    async def schedule_callback(self, row: Callback, customer: dict[str, Any] | None) -> bool:
        """Put a recorded callback in the live state, due at its time (or now): one
        scheduled by an agent, or one Redis lost. False when it is there already."""
        now = self.clock()
        pop = callback_records.callback_pop(row, customer)
        return await self.callbacks.schedule(
            row.id, max(row.due_at.timestamp(), now), now, due_timer(row.id).member,
            **callback_records.callback_fields(row, pop))

    async def callback_changed(self, name: str, data: dict[str, Any]) -> None:
        """Tell the observers (wallboard, webhooks) of a change made outside the call path."""
        await self._notify(name, data)

    # Timers --------------------------------------------------------------------

    async def _callback_timer(self, timer: Timer, now: float) -> None:
        if timer.kind == "cbdue":
            if await self.callbacks.due(timer.ident, now):
                await self._route_callback(timer.ident, now, None)
            return
        await self._attempt_timed_out(timer.ident, timer.token, now)

    async def _attempt_timed_out(self, callback_id: str, agent_id: str, now: float) -> None:
        """The PBX never said how the attempt went: it counts as not answered, and the
        agent (who may not have picked up) goes not-ready 'missed'."""
        live = await self.callbacks.get(callback_id)
        if live.get("state") != "ringing" or live.get("agent_id") != agent_id:
            return
        result = await self._attempt_ends(live, "no_answer", now, event=None,
                                          agent_after="missed")
        if not result.won:
            log.debug("callback %s attempt decided before its timeout", callback_id)
            return
        await self.writer.write(callback_records.outcome_ops(callback_id, result, "no_answer",
                                                             now))
        await self._after_attempt(callback_id, int(agent_id), "no_answer", result, now)
