"""The router: engine decisions carried out on the shared Redis state."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from routing import engine
from routing.engine import AgentProfile, CallProfile, RoutingPolicy
from routing.queue_index import Taken
from routing.states import SELECTABLE, WORKING, AgentState
from routing.store import QueuedAt, RoutingStore

log = logging.getLogger(__name__)

_WORKING = frozenset(s.value for s in WORKING)


class RoutingError(Exception):
    code = "routing_error"


class AgentBusy(RoutingError):
    code = "agent_busy"

    def __init__(self, agent_id: int, state: str) -> None:
        super().__init__(f"agent {agent_id} is {state} and cannot change state now")


class UnknownAgent(RoutingError):
    code = "unknown_agent"

    def __init__(self, agent_id: int) -> None:
        super().__init__(f"agent {agent_id} is not logged in to routing")


class CallLive(RoutingError):
    code = "call_exists"

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id} is already in progress")


@dataclass(frozen=True)
class Assignment:
    call_id: str
    agent_id: int
    rule: str
    pool: str
    waited_s: float
    tier: str
    score: float
    # the agent and the call after the reservation
    agent: dict[str, str] = field(default_factory=dict, compare=False)
    call: dict[str, str] = field(default_factory=dict, compare=False)
    # What made the decision: the call's arrival, an agent freeing up, or a waiting call
    # looked at again (a ring opened, ring-no-answer, a transfer).
    on: str = "waiting"
    # When (Redis's clock) the agent's look at the waiting calls was taken: a call that
    # joined its queue after it was not a candidate (agent_free decisions only).
    scanned_at: float | None = None

    def reason(self) -> dict[str, Any]:
        """Why this agent: stored on the interaction and shown to the agent."""
        reason = {"rule": self.rule, "pool": self.pool, "waited_s": round(self.waited_s, 3),
                  "tier": self.tier, "agent_id": self.agent_id, "on": self.on}
        if self.call.get("queued_at"):  # when the call joined the queue it was taken from
            reason["queued_at"] = float(self.call["queued_at"])
        if self.scanned_at is not None:
            reason["scanned_at"] = self.scanned_at
        return reason


class Offered(NamedTuple):
    """A new call's arrival: its rings, and the agent it took or (asked for) where it
    waits."""

    rings: list[engine.Ring]
    assignment: Assignment | None
    queued: QueuedAt | None = None


@dataclass
class Router:
    store: RoutingStore
    policy: RoutingPolicy = field(default_factory=RoutingPolicy)
    queues: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"default": ()})
    # Tier boosts of the queues that set their own (admin/), over the policy's.
    queue_boosts: dict[str, dict[str, float]] = field(default_factory=dict)

    def set_queues(self, queues: Mapping[str, Sequence[str]]) -> None:
        self.queues = {name: tuple(skills) for name, skills in queues.items()}
        self.queues.setdefault("default", ())

    def policy_for(self, queue: str) -> RoutingPolicy:
        """The policy with the queue's own tier boosts, where it has them."""
        boosts = self.queue_boosts.get(queue)
        if not boosts:
            return self.policy
        return replace(self.policy, tier_boost_s={**self.policy.tier_boost_s, **boosts})

    async def register_agent(self, agent: AgentProfile, **fields: str | int | float) -> None:
        pools = engine.pools_of(agent, self.queues, self.policy)
        await self.store.register_agent(agent.agent_id, pools, {
            "skills": ",".join(sorted(agent.skills)), "level": agent.level, **fields})

    async def set_state(self, agent_id: int, state: AgentState, reason: str, now: float,
                        ) -> Assignment | None:
        """An agent's own state change; going available may hand it a waiting call."""
        if state not in SELECTABLE:
            raise ValueError(f"{state.value} is not a state an agent can choose")
        done, previous, _, took = await self.store.set_state(agent_id, state, reason, now)
        if done == -1:
            raise UnknownAgent(agent_id)
        if done == 0:
            raise AgentBusy(agent_id, previous)
        # going available took the best waiting call in the same step; a state chosen in
        # wrap-up applies after it
        return None if took is None else self.assignment_for(agent_id, took, now)

    async def sticky_working(self, agent_id: int | None) -> bool:
        if agent_id is None:
            return False
        row = await self.store.agent(agent_id)
        return row.get("state") in {s.value for s in WORKING}

    async def rings_for(self, call: CallProfile) -> list[engine.Ring]:
        """The call's rings as the bullseye says, empty ones skipped if the policy says so."""
        rings = engine.rings_for(call, self.policy)
        if not self.policy.skip_empty_rings or len(rings) < 2:
            return rings
        empty = await self.store.staffing.empty([r.pool for r in rings[:-1]])
        return engine.skip_empty(rings, empty)

    async def arrival_rings(self, call: CallProfile) -> list[engine.Ring]:
        """The rings of an arriving call, its sticky agent's state read in the same round
        trip as the staffing of the pools (rings_for with `sticky_agent_working` read)."""
        sticky = call.sticky_agent_id
        if call.sticky_agent_working != (sticky is not None):  # (a copy costs microseconds)
            call = replace(call, sticky_agent_working=sticky is not None)
        rings = engine.rings_for(call, self.policy)
        skip = self.policy.skip_empty_rings and len(rings) >= 2
        pools = list(dict.fromkeys(r.pool for r in rings[:-1])) if skip else []
        state, empty = await self.store.ring_facts(sticky, pools)
        if sticky is not None and state not in _WORKING:
            rings = engine.rings_for(replace(call, sticky_agent_working=False), self.policy)
        return engine.skip_empty(rings, empty) if skip and len(rings) >= 2 else rings

    async def offer(self, call: CallProfile, offered_at: float, now: float, *,
                    event: tuple[str, bytes] | None = None, read_sticky: bool = False,
                    notice: bool = False, **fields: str | int | float) -> Offered:
        """Queue a new call and give it an agent if one is free, in one step; `event` is
        stored in the same step (see RoutingStore.offer), and with `notice` where a call
        left waiting stands. `read_sticky`: whether its sticky agent works is read here,
        not taken from `call`."""
        rings = await (self.arrival_rings(call) if read_sticky else self.rings_for(call))
        score = engine.call_priority(call, offered_at, self.policy_for(call.queue))
        waited = now - offered_at
        opened = engine.open_rings(rings, waited)
        queued, reservation, queued_at = await self.store.offer(
            call.call_id, call.queue, score, rings,
            {"offered_at": offered_at, "tier": call.tier, **fields}, now=now, event=event,
            pools=[r.pool for r in opened], notice=notice)
        if not queued:
            raise CallLive(call.call_id)
        if reservation is None:
            return Offered(rings, None, queued_at)
        ring = next(r for r in opened if r.pool == reservation.pool)
        return Offered(rings, Assignment(call.call_id, reservation.agent_id, ring.rule,
                                         ring.pool, waited, call.tier, score,
                                         reservation.agent, reservation.call, on="arrival"))

    async def route_call(self, call_id: str, now: float,
                         call: dict[str, Any] | None = None) -> Assignment | None:
        """Give a waiting call to the best available agent of its open rings."""
        if call is None:
            call = await self.store.call(call_id)
        if call.get("state") != "queued":
            return None
        rings = engine.decode_rings(call["rings"])
        waited = now - float(call["offered_at"])
        opened = engine.open_rings(rings, waited)
        reservation = await self.store.reserve(call_id, call["queue"], now,
                                               pools=[r.pool for r in opened])
        if reservation is None:
            return None
        ring = next(r for r in opened if r.pool == reservation.pool)
        return Assignment(call_id, reservation.agent_id, ring.rule, ring.pool, waited,
                          call.get("tier", engine.DEFAULT_TIER), float(call["score"]),
                          reservation.agent, reservation.call)

    async def route_agent(self, agent_id: int, now: float,
                          agent: dict[str, str] | None = None) -> Assignment | None:
        """Give a newly available agent the best waiting call it may take, in one step
        (routing/queue_index.py); `agent` is its live record when the caller has just read
        it."""
        if agent is not None and agent.get("state") != AgentState.available.value:
            return None
        taken = await self.store.index.take_for(agent_id, now)
        return None if taken is None else self.assignment_for(agent_id, taken, now)

    def assignment_for(self, agent_id: int, taken: Taken, now: float) -> Assignment:
        """A waiting call a freed agent took: the innermost of its open rings the agent is in."""
        call = taken.call
        rings = engine.decode_rings(call.get("rings", ""))
        pools = taken.agent.get("pools", "").split(";")
        waited = now - float(call.get("offered_at") or now)
        ring = engine.matching_ring(pools, rings, waited) or next(
            (r for r in rings if r.pool == taken.pool), engine.Ring(taken.pool, 0.0, "queue"))
        return Assignment(taken.call_id, agent_id, ring.rule, ring.pool, waited,
                          call.get("tier") or engine.DEFAULT_TIER, float(call["score"]),
                          taken.agent, call, on="agent_free", scanned_at=taken.seen_at)

    async def route_waiting(self, queue: str, now: float) -> list[Assignment]:
        """Try every call of a queue again (live state restored after an outage)."""
        assignments = []
        for call in await self.store.waiting_heads([queue], 0):
            assignment = await self.route_call(call.call_id, now)
            if assignment is not None:
                assignments.append(assignment)
        return assignments

