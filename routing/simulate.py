"""A discrete-event call-center simulation that drives the real router.

Every routing decision is made by ``routing.service.Router`` on a
``RoutingStore`` in a real Redis, exactly as in production; only the clock is
virtual (time is passed in as ``now``). What the live call path in
``cti/service.py`` does around routing — ringing, answer, ring-no-answer,
wrap-up, callers hanging up, ring widening timers — is played here by an event
queue, without the database or the websockets.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from redis.asyncio import Redis

from core.keys import Keys
from routing import engine
from routing.engine import AgentProfile, CallProfile
from routing.scenario import PlannedCall, Scenario, fifo_policy, plan_calls
from routing.service import Assignment, Router
from routing.simreport import Outcomes, Report, summarize
from routing.states import AgentState
from routing.store import RoutingStore


@dataclass
class SimCall:
    plan: PlannedCall
    call_id: str
    state: str = "new"  # queued, ringing, talking, done, abandoned
    agent_id: int | None = None
    score: float = 0.0
    rings: tuple[engine.Ring, ...] = ()
    sticky_agent: int | None = None
    queued: bool = False  # no agent was free when it was offered
    ring_pool: str = ""  # the pool of the agent it rings or was answered by
    estimate_s: float = math.nan  # the wait route.queued told it, when it had to wait
    answered_by: int | None = None
    wait_s: float = math.nan


class Simulation:
    def __init__(self, router: Router, scenario: Scenario,
                 plan: list[PlannedCall] | None = None) -> None:
        self.router = router
        self.scenario = scenario
        self.plan = plan if plan is not None else plan_calls(scenario)
        self.fifo = scenario.routing == "fifo"
        self.rng = np.random.default_rng([scenario.seed, 1])  # ring-no-answer draws
        self._events: list[tuple[float, int, Callable[..., Coroutine[Any, Any, None]],
                                 tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.calls: dict[str, SimCall] = {}
        self.last_agent: dict[int, int] = {}  # customer -> agent who last answered them
        self.busy_since: dict[int, float] = {}
        self.away_since: dict[int, float] = {}  # not ready after a missed call
        self.busy_s = 0.0
        self.away_s = 0.0
        self.window = (0.0, 0.0)  # measurement window for occupancy
        self._open = 0  # measured calls not yet answered or abandoned

    @property
    def measured(self) -> range:
        start = self.scenario.warmup_calls
        return range(start, start + self.scenario.calls)

    async def run(self) -> Outcomes:
        await self._staff()
        first, last = self.measured[0], self.measured[-1]
        self.window = (self.plan[first].at, self.plan[last].at)
        self._open = len(self.measured)
        for call in self.plan:
            self._at(call.at, self._arrive, call)
        now = 0.0
        while self._events and self._open:
            now, _, handler, args = heapq.heappop(self._events)
            await handler(now, *args)
        for agent_id in list(self.busy_since):
            self._busy_until(agent_id, now)
        self.away_s += sum(_overlap(t, now, self.window) for t in self.away_since.values())
        return self._outcomes()

    def _at(self, when: float, handler: Callable[..., Coroutine[Any, Any, None]],
            *args: Any) -> None:
        heapq.heappush(self._events, (when, next(self._seq), handler, args))

    async def _staff(self) -> None:
        agent_id = 0
        for group in self.scenario.agents:
            for _ in range(group.count):
                agent_id += 1
                await self.router.register_agent(
                    AgentProfile(agent_id, frozenset(group.skills), group.level))
                await self.router.set_state(agent_id, AgentState.available, "", 0.0)

    # Calls ----------------------------------------------------------------

    async def _arrive(self, now: float, plan: PlannedCall) -> None:
        call = SimCall(plan, f"c{plan.index}")
        self.calls[call.call_id] = call
        sticky = None if self.fifo else self.last_agent.get(plan.customer)
        working = await self.router.sticky_working(sticky)
        call.sticky_agent = sticky if working else None  # the agent worth holding for
        profile = CallProfile(
            call_id=call.call_id, queue=plan.queue, tier=plan.tier,
            queue_skills=self.router.queues.get(plan.queue, ()),
            sticky_agent_id=sticky, sticky_agent_working=working, intent_skill=plan.intent)
        rings, assignment, _ = await self.router.offer(profile, now, now)
        call.rings = tuple(rings)
        call.score = engine.priority_score(now, plan.tier, self.router.policy)
        call.state = "queued"
        if math.isfinite(plan.patience_s):
            self._at(now + plan.patience_s, self._hang_up_waiting, call)
        if assignment is not None:
            await self._ring(now, assignment)
        else:
            call.queued = True
            notice = await self.router.store.queued_notice(call.call_id)
            call.estimate_s = math.nan if notice is None else notice.wait_s
            self._widen_later(call, now)

    def _widen_later(self, call: SimCall, now: float) -> None:
        opens = engine.next_widening_s(call.rings, now - call.plan.at)
        if opens is not None:
            # A microsecond late, as real timers are: at exactly offered_at + opens the
            # subtraction in the router can round below ``opens`` and the ring stay shut.
            self._at(call.plan.at + opens + 1e-6, self._widen, call)

    async def _widen(self, now: float, call: SimCall) -> None:
        if call.state != "queued":
            return
        assignment = await self.router.route_call(call.call_id, now)
        if assignment is not None:
            await self._ring(now, assignment)
        else:
            self._widen_later(call, now)

    async def _ring(self, now: float, a: Assignment) -> None:
        call = self.calls[a.call_id]
        call.state, call.agent_id, call.ring_pool = "ringing", a.agent_id, a.pool
        self.busy_since[a.agent_id] = now
        ringing = self.scenario.ringing
        if ringing.no_answer_prob and self.rng.random() < ringing.no_answer_prob:
            self._at(now + ringing.timeout_s, self._ring_no_answer, call, a)
        elif ringing.answer_s > 0:
            self._at(now + ringing.answer_s, self._answer, call, a.agent_id)
        else:
            await self._answer(now, call, a.agent_id)

    async def _answer(self, now: float, call: SimCall, agent_id: int) -> None:
        if call.state != "ringing" or call.agent_id != agent_id:
            return  # the caller hung up while it rang
        call.state, call.answered_by, call.wait_s = "talking", agent_id, now - call.plan.at
        self._resolved(call)
        self.last_agent[call.plan.customer] = agent_id
        await self.router.store.make_unavailable(agent_id, AgentState.on_call, "", now,
                                                 force=True)
        self._at(now + call.plan.handle_s, self._hang_up_talking, call)

    async def _hang_up_talking(self, now: float, call: SimCall) -> None:
        assert call.agent_id is not None
        await self.router.store.make_unavailable(call.agent_id, AgentState.wrap_up, "", now,
                                                 force=True)
        if self.scenario.wrap_up_s > 0:
            self._at(now + self.scenario.wrap_up_s, self._wrapped, call)
        else:
            await self._wrapped(now, call)

    async def _wrapped(self, now: float, call: SimCall) -> None:
        assert call.agent_id is not None
        call.state = "done"
        # talk and wrap-up: the handle time the queue's wait estimates average
        await self.router.store.drop_call(call.call_id, call.plan.queue,
                                          handle_s=now - call.plan.at - call.wait_s)
        await self._free(now, call.agent_id)

    async def _hang_up_waiting(self, now: float, call: SimCall) -> None:
        if call.state not in ("queued", "ringing"):
            return
        agent_id = call.agent_id if call.state == "ringing" else None
        call.state, call.wait_s = "abandoned", now - call.plan.at
        self._resolved(call)
        await self.router.store.drop_call(call.call_id, call.plan.queue)
        if agent_id is not None:
            await self.router.store.make_unavailable(agent_id, AgentState.wrap_up, "", now,
                                                     force=True)
            await self._free(now, agent_id)

    async def _ring_no_answer(self, now: float, call: SimCall, a: Assignment) -> None:
        if call.state != "ringing" or call.agent_id != a.agent_id:
            return
        store = self.router.store
        if not await store.requeue(call.call_id, call.plan.queue, a.score, None, ["ringing"],
                                   now):
            return
        call.state, call.agent_id = "queued", None
        await store.make_unavailable(a.agent_id, AgentState.not_ready, "missed", now, force=True)
        self._busy_until(a.agent_id, now)
        self.away_since[a.agent_id] = now
        self._at(now + self.scenario.ringing.recovery_s, self._back, a.agent_id)
        assignment = await self.router.route_call(call.call_id, now)
        if assignment is not None:
            await self._ring(now, assignment)
        else:
            self._widen_later(call, now)

    async def _back(self, now: float, agent_id: int) -> None:
        self.away_s += _overlap(self.away_since.pop(agent_id), now, self.window)
        assignment = await self.router.set_state(agent_id, AgentState.available, "", now)
        if assignment is not None:
            await self._ring(now, assignment)

    async def _free(self, now: float, agent_id: int) -> None:
        self._busy_until(agent_id, now)
        await self.router.store.make_available(agent_id, now)
        assignment = await self.router.route_agent(agent_id, now)
        if assignment is not None:
            await self._ring(now, assignment)

    def _busy_until(self, agent_id: int, now: float) -> None:
        self.busy_s += _overlap(self.busy_since.pop(agent_id), now, self.window)

    def _resolved(self, call: SimCall) -> None:
        if call.plan.index in self.measured:
            self._open -= 1

    # Results --------------------------------------------------------------

    def _outcomes(self) -> Outcomes:
        out = Outcomes()
        for index in self.measured:
            call = self.calls[f"c{index}"]
            out.tier.append(call.plan.tier)
            out.answered.append(call.answered_by is not None)
            out.wait_s.append(call.wait_s)
            out.queued.append(call.queued)
            out.sticky.append(call.sticky_agent is not None)
            out.sticky_hit.append(call.sticky_agent is not None
                                  and call.answered_by == call.sticky_agent)
            out.estimate_s.append(call.estimate_s)
            out.preferred.append(len(call.rings) > 1)
            out.best_match.append(len(call.rings) > 1 and call.answered_by is not None
                                  and call.ring_pool == call.rings[0].pool)
        return out

    def occupancy(self) -> float:
        start, end = self.window
        staffed = self.scenario.agent_count * (end - start) - self.away_s
        return self.busy_s / staffed if staffed > 0 else math.nan


def _overlap(start: float, end: float, window: tuple[float, float]) -> float:
    return max(0.0, min(end, window[1]) - max(start, window[0]))


def router_for(scenario: Scenario, store: RoutingStore) -> Router:
    policy = fifo_policy() if scenario.routing == "fifo" else scenario.policy
    router = Router(store, policy)
    router.set_queues(scenario.queues)
    return router


async def simulate(scenario: Scenario, redis: Redis, prefix: str,
                   plan: list[PlannedCall] | None = None) -> Report:
    """Run one scenario on fresh routing state under ``prefix``, then remove that state."""
    started = time.perf_counter()
    store = RoutingStore(redis, Keys(prefix))
    sim = Simulation(router_for(scenario, store), scenario, plan)
    try:
        outcomes = await sim.run()
    finally:
        await _delete_prefix(redis, prefix)
    return summarize(outcomes, scenario.routing, scenario.threshold_s, scenario.tiers,
                     sim.occupancy(), time.perf_counter() - started)


async def compare(scenario: Scenario, redis: Redis, prefix: str) -> tuple[Report, Report]:
    """The project's routing and FIFO + longest idle, on the same calls."""
    plan = plan_calls(scenario)
    value = await simulate(replace(scenario, routing="value"), redis, f"{prefix}:value", plan)
    fifo = await simulate(replace(scenario, routing="fifo"), redis, f"{prefix}:fifo", plan)
    return value, fifo


async def _delete_prefix(redis: Redis, prefix: str) -> None:
    batch = []
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await redis.delete(*batch)
            batch.clear()
    if batch:
        await redis.delete(*batch)


async def run_and_report(scenario: Scenario, redis_url: str | None, prefix: str,
                         embedded_path: Path, *, both: bool = False,
                         plot: Path | None = None, empty_rings: str | None = None) -> str:
    """What ``callcenter simulate`` prints: one run, value routing against FIFO, or empty
    rings skipped against held."""
    from core.redisconn import open_redis
    from routing.sim_empty_rings import compare_empty_rings, format_empty_rings
    from routing.simreport import format_comparison, format_report, plot_waits

    async with open_redis(redis_url, embedded_path) as redis:
        if empty_rings == "compare":
            reports = list(await compare_empty_rings(scenario, redis, prefix))
            text = "\n\n".join([*map(format_report, reports), format_empty_rings(*reports)])
        elif both:
            reports = list(await compare(scenario, redis, prefix))
            text = "\n\n".join([*map(format_report, reports), format_comparison(*reports)])
        else:
            reports = [await simulate(scenario, redis, prefix)]
            text = format_report(reports[0])
    if plot is not None:
        plot_waits(reports, plot)
        text += f"\n\nwaiting-time plot: {plot}"
    calls = sum(r.overall.offered for r in reports)
    return text + f"\n({calls} measured calls in {sum(r.wall_s for r in reports):.1f} s)"
