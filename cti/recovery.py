"""Rebuild the live state in Redis from the system of record after Redis lost it.

A Redis that restarts without persistence comes back empty. Every call that was
acknowledged is in the database (events are stored before they are acked), so
the live state can be rebuilt: waiting and ringing calls go back into their
queues in their original order, answered calls keep their agent, wrap-ups get
their timer back, and each node re-registers the agents connected to it.

An epoch key marks a live state that is whole. When it is missing, one node
(holding a short lock) rebuilds the calls and sets a new epoch; every node that
sees a new epoch re-registers its connected agents.

The nodes serve meanwhile, so the rebuild races the PBX's events and agents signing
in: each call goes back in one step that refuses when its live state exists already,
an answered one together with its agent (routing/restore.py), so whatever reached the
live state first wins (docs/architecture.md, the transitions table).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import AgentStateChange, Call, Callback, Interaction
from core.redisconn import OUTAGES
from core.sequenced import PLACEHOLDER
from core.timers import Timer
from crm import store as crm
from cti.calls import CallState
from cti.service import CallService
from routing import engine
from routing.directory import AgentDirectory
from routing.engine import CallProfile
from routing.restore import LiveRestore
from routing.service import RoutingError, UnknownAgent
from routing.states import AgentState

log = logging.getLogger(__name__)

LIVE_IN_DB = (CallState.queued.value, CallState.ringing.value, CallState.connected.value,
              CallState.on_hold.value, CallState.consulting.value, CallState.conference.value,
              CallState.wrap_up.value)
# A consult does not survive the live state's loss (the consulted agent's reservation was
# only in Redis): the caller is restored to the first agent, held (a consult) or talking
# (a conference), and the PBX's later consult events are refused as illegal.
_RESTORED_AS = {CallState.consulting.value: CallState.on_hold.value,
                CallState.conference.value: CallState.connected.value}


@dataclass
class Recovery:
    calls: CallService
    console: AgentDirectory
    maker: async_sessionmaker[AsyncSession]
    connected: Counter[int] = field(default_factory=Counter)  # agents on this node
    epoch: str | None = None
    restore: LiveRestore = field(init=False)

    def __post_init__(self) -> None:
        self.restore = LiveRestore(self.calls.store.redis, self.calls.keys)

    @property
    def _redis(self):  # type: ignore[no-untyped-def]
        return self.calls.store.redis

    @property
    def _epoch_key(self) -> str:
        return f"{self.calls.keys.prefix}:epoch"

    async def watch(self, interval: float = 1.0) -> None:
        while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
            try:
                await self.check()
            except OUTAGES as e:  # Redis still away: look again shortly
                log.warning("live state check failed: %s", e)
            await asyncio.sleep(interval)

    async def check(self) -> None:
        epoch = await self._redis.get(self._epoch_key)
        if epoch is None:
            epoch = await self._rebuild()
        if epoch is not None and epoch != self.epoch:
            if self.epoch is not None:
                await self._reregister_agents()
            self.epoch = epoch

    async def _rebuild(self) -> str | None:
        lock = f"{self.calls.keys.prefix}:lock:rebuild"
        if not await self._redis.set(lock, self.calls.node_id, nx=True, ex=60):
            return None  # another node is rebuilding
        try:
            count = await self._restore_calls()
            count += await self._restore_callbacks()
            epoch = secrets.token_hex(8)
            await self._redis.set(self._epoch_key, epoch)
            if count:
                log.warning("rebuilt the live state of %d calls from the database", count)
            return epoch
        finally:
            await self._redis.delete(lock)

    async def _restore_calls(self) -> int:
        async with self.maker() as session:
            rows = (await session.execute(
                select(Call, Interaction).join(Interaction, Interaction.call_id == Call.id)
                .where(Call.state.in_(LIVE_IN_DB), Call.seq != PLACEHOLDER)  # an offer stored
                .order_by(Call.offered_at))).all()
            pops = {call.id: await _pop(session, call) for call, _ in rows}
        waiting = {CallState.queued.value, CallState.ringing.value}
        # Answered calls first, with their agents: an agent signing in meanwhile is not
        # given a waiting call while the call it is on is still to be written back.
        for call, record in rows:
            if call.state not in waiting:
                await self._restore_answered(call, record, pops[call.id])
        for call, _ in rows:
            if call.state in waiting:
                await self._requeue(call, pops[call.id])
        now = self.calls.clock()
        for queue in {call.queue for call, _ in rows}:
            for assignment in await self.calls.router.route_waiting(queue, now):
                await self.calls._dispatch(assignment, None)
        return len(rows)

    async def _restore_callbacks(self) -> int:
        """Pending callbacks go back, due at their time (one being dialled when Redis was
        lost is due now: the PBX's late result for that attempt is refused)."""
        async with self.maker() as session:
            rows = (await session.scalars(select(Callback).where(Callback.state == "pending")
                                          .order_by(Callback.requested_at))).all()
            customers = {row.id: await crm.customer_profile(session, row.customer_id)
                         if row.customer_id else None for row in rows}
        restored = [row for row in rows
                    if await self.calls.schedule_callback(row, customers[row.id])]
        return len(restored)

    async def _requeue(self, call: Call, pop: dict[str, Any]) -> None:
        offered = call.offered_at.timestamp()
        profile = CallProfile(call.id, call.queue, call.tier,
                              self.calls.router.queues.get(call.queue, ()))
        rings = engine.rings_for(profile, self.calls.router.policy)
        score = engine.priority_score(offered, call.tier, self.calls.router.policy)
        # The record first: until the call is live again every event of it is refused, so
        # no event's write can come before this one (and be undone by it).
        async with self.maker() as session, session.begin():
            await session.execute(update(Call).where(Call.id == call.id)
                                  .values(state=CallState.queued.value, agent_id=None))
        if not await self.calls.store.enqueue(call.id, call.queue, score, rings,
                                              _fields(call, pop), now=self.calls.clock()):
            log.debug("call %s was live again before its rebuild", call.id)

    async def _restore_answered(self, call: Call, record: Interaction, pop: dict[str, Any]) -> None:
        state = _RESTORED_AS.get(call.state, call.state)
        offered = call.offered_at.timestamp()
        score = engine.priority_score(offered, call.tier, self.calls.router.policy)
        answered = record.answered_at.timestamp() if record.answered_at else offered
        fields = {**_fields(call, pop), "score": score, "agent_id": call.agent_id or "",
                  "answered_at": answered, "rings": "",
                  "reason": orjson.dumps(record.routing_reason or {}).decode(),
                  "agents": ",".join(str(a) for a in record.agent_ids or []),
                  # call control: holds so far (a hold in progress restarts now), legs
                  "hold_count": record.hold_count or 0, "hold_s": record.hold_s or 0.0,
                  "held_at": self.calls.clock() if state == CallState.on_hold.value
                  else "", "legs": orjson.dumps(record.legs or []).decode()}
        if record.ended_at is not None:
            fields["ended_at"] = record.ended_at.timestamp()
        agent_state, wrap, now = None, None, self.calls.clock()
        if call.agent_id is not None:
            try:
                await self.console.ensure_registered(call.agent_id)
            except UnknownAgent:  # deactivated while on the call: nobody to give it back to
                log.warning("call %s not rebuilt: its agent %s is no longer active",
                            call.id, call.agent_id)
                return
            talking = state in (CallState.connected.value, CallState.on_hold.value)
            agent_state = AgentState.on_call if talking else AgentState.wrap_up
            if not talking:
                wrap = (now + self.calls.wrap_up_s,
                        Timer("wrapup", str(call.agent_id), call.id).member)
        outcome = await self.restore.answered(
            call.id, {"id": call.id, "queue": call.queue, "state": state, **fields},
            agent_id=call.agent_id, agent_state=agent_state, now=now,
            timers=self.calls.timers.key, wrap=wrap)
        if outcome == "restored" and wrap is not None:
            self.calls.timers.expect(wrap[0])
        elif outcome == "agent_busy":
            # The agent was given another call while this one waited for its rebuild: the
            # first there keeps the agent; this call's events are refused from now on.
            log.warning("call %s not rebuilt: its agent %s took another call meanwhile",
                        call.id, call.agent_id)
        elif outcome != "restored":
            log.debug("call %s not rebuilt: %s", call.id, outcome)

    async def _reregister_agents(self) -> None:
        """Agents connected here get their live record back, in their last logged state."""
        for agent_id in [a for a, n in self.connected.items() if n > 0]:
            await self.console.ensure_registered(agent_id)
            current = await self.calls.store.agent(agent_id)
            if current.get("call_id"):
                await self.calls._record_agent_state(agent_id)
                continue
            state, reason = await self._last_state(agent_id)
            if state in (AgentState.available, AgentState.not_ready):
                try:  # guarded: refused when a call reached the agent since the read
                    await self.calls.set_agent_state(
                        agent_id, state, reason if state is AgentState.not_ready else "")
                except RoutingError as e:
                    log.debug("agent %s not set %s after the rebuild: %s", agent_id,
                              state.value, e)
            else:
                await self.calls._record_agent_state(agent_id)
        log.info("re-registered %d agents after the live state was rebuilt", len(self.connected))

    async def _last_state(self, agent_id: int) -> tuple[AgentState, str]:
        async with self.maker() as session:
            row = await session.scalar(
                select(AgentStateChange).where(AgentStateChange.agent_id == agent_id)
                .order_by(AgentStateChange.at.desc(), AgentStateChange.id.desc()).limit(1))
        if row is None:
            return AgentState.logged_out, ""
        state = AgentState(row.state)
        if state in (AgentState.ringing, AgentState.on_call, AgentState.wrap_up):
            return AgentState.available, ""  # that call is over or restored with its agent
        return state, row.reason or ""


async def _pop(session: AsyncSession, call: Call) -> dict[str, Any]:
    profile = await crm.customer_profile(session, call.customer_id) if call.customer_id \
        else None
    ivr = {k: v for k, v in (call.ivr or {}).items() if not k.startswith("_")}
    return {"call_id": call.id, "ani": call.ani, "customer": profile, "ivr": ivr,
            "tier": call.tier, "queue": call.queue}


def _fields(call: Call, pop: dict[str, Any]) -> dict[str, str | float]:
    return {"offered_at": call.offered_at.timestamp(), "tier": call.tier,
            "integration": (call.ivr or {}).get("_integration", ""), "ani": call.ani,
            "dnis": call.dnis, "customer_id": call.customer_id or "",
            "pop": orjson.dumps(pop).decode(),
            # the call's writes go on numbering from the last one stored
            "seq": max(call.seq or 0, 1)}
