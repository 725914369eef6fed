"""What happens when a call's clock runs out: ring-no-answer, and a wider ring opening
for a waiting call."""

from __future__ import annotations

import logging

from core.timers import Timer
from cti.agents import AWAY
from cti.callbacks import CallbackEvents
from cti.consult import CONSULT_RING, ConsultEvents
from routing import engine

log = logging.getLogger(__name__)


class CallTimeouts(ConsultEvents, CallbackEvents):
    # Timers -------------------------------------------------------------

    async def on_timer(self, timer: Timer) -> None:
        now = self.clock()
        if timer.kind == "rona":
            await self._ring_no_answer(timer.ident, int(timer.token), now)
        elif timer.kind == "wrapup":
            call_id = timer.token
            await self._finish_wrap_up(int(timer.ident), call_id, now)
        elif timer.kind in ("cbdue", "cbtry"):
            await self._callback_timer(timer, now)
        elif timer.kind == CONSULT_RING:
            await self.consult_no_answer(timer.ident, int(timer.token))
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

    async def _ring_no_answer(self, call_id: str, agent_id: int, now: float) -> None:
        """The agent did not answer in time: the call goes back to its queue and the agent
        not-ready, in one step (unless it was answered or hung up meanwhile)."""
        moved = await self.store.ring_no_answer(call_id, agent_id, now)
        if moved is None:
            log.debug("ring timeout for %s after it moved on", call_id)
            return
        call, agent = moved
        if agent:
            await self._agent_changed(agent_id, agent, {
                "type": "call.ended", "call_id": call_id, "reason": "ring_no_answer"})
        await self._notify("call.rona", {"call_id": call_id, "agent_id": agent_id})
        assignment = await self.router.route_call(call_id, now)
        if assignment is not None:
            await self._dispatch(assignment, None)
            return
        # a widening that fired while the call rang found it not waiting: look again later
        await self._schedule_widening(call_id, list(engine.decode_rings(call["rings"])),
                                      float(call["offered_at"]), now)
        notice = await self._queued_notice(call_id)
        if notice:
            await self.bus.publish(self.keys.telephony_channel(call["integration"]), notice)
