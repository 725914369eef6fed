"""Routing decisions: pure functions, no I/O, so they can be unit-tested and simulated.

Priority. Each waiting call has a score, and the lowest score is served first::

    score = offered_at - boost[tier] - (complaint_boost if open complaint)

i.e. a call of a higher tier is treated as if it had arrived ``boost`` seconds
earlier. A caller with an open complaint is served sooner, never later (service
recovery: losing a customer who complained costs the most); the tier itself never
drops for a complaint (crm/value_churn.py), so the complaint only ever adds.
Waiting ages every call at the same rate, so a call can be overtaken only by
calls offered less than ``boost[top] - boost[its tier]`` seconds after it: no
tier starves, and the extra wait a lower tier can suffer is bounded.
Scores never change while a call waits, so a Redis sorted set keeps the order.

Agent choice (bullseye). A call gets rings of agent pools, innermost first,
each opening after the previous ones have been tried for their hold time:

1. sticky: the agent who last served this customer well, when that agent is
   working (ringing, on a call, in wrap-up or available) — hold ``sticky_wait_s``;
2. complaints: complaint-skilled or senior agents, for a caller with an open
   complaint — hold ``complaint_wait_s``;
3. intent: agents with the skill named by the IVR intent — hold ``intent_wait_s``;
4. queue: every agent who serves the queue: its members, or, for an agent that is a
   member of no queue, every queue whose skills it all has.

Open rings stay open (the bullseye widens, it does not move), and the innermost
open ring with an available agent wins; within a pool the longest-idle agent wins.

Empty rings (``skip_empty_rings``, on by default). A ring whose pool has nobody signed in
when the call is offered (every agent of it logged out, or not-ready because its console
went away: routing/staffing.py) holds the call for nothing: no agent of it can free up in
time. It is skipped at once: the rings after it open as if its hold were zero (TaskRouter's
``skip_if``, Genesys widening the bullseye when a ring has nobody to offer to). It stays
open, so an agent of that pool who signs in and becomes available still takes the call
(the waiting calls are indexed by open ring, routing/queue_index.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

DEFAULT_TIER = "standard"
TIERS = ("vip", "gold", "standard", "low")


@dataclass(frozen=True)
class RoutingPolicy:
    tier_boost_s: Mapping[str, float] = field(
        default_factory=lambda: {"vip": 120.0, "gold": 60.0, "standard": 0.0, "low": -30.0}
    )
    # Measured with `callcenter simulate --compare` at 90% occupancy: a 20 s VIP hold
    # (the whole service-level threshold) cost returning VIPs their 95/20; 10 s keeps it.
    sticky_wait_s: Mapping[str, float] = field(
        default_factory=lambda: {"vip": 10.0, "gold": 6.0, "standard": 3.0, "low": 0.0}
    )
    complaint_wait_s: float = 45.0
    # Extra head start of a caller with an open complaint, on top of their tier's.
    complaint_boost_s: float = 60.0
    intent_wait_s: float = 15.0
    # Skip at once a ring whose pool has nobody signed in (see the module's docstring).
    skip_empty_rings: bool = True
    senior_level: int = 3
    complaint_skill: str = "complaints"

    def boost(self, tier: str, open_complaint: bool = False) -> float:
        extra = max(self.complaint_boost_s, 0.0) if open_complaint else 0.0
        return self.tier_boost_s.get(tier, 0.0) + extra


@dataclass(frozen=True)
class Ring:
    pool: str
    opens_after_s: float
    rule: str


@dataclass(frozen=True)
class CallProfile:
    """What routing knows about a call when it is offered."""

    call_id: str
    queue: str
    tier: str = DEFAULT_TIER
    queue_skills: tuple[str, ...] = ()
    sticky_agent_id: int | None = None
    sticky_agent_working: bool = False
    open_complaint: bool = False
    intent_skill: str | None = None


@dataclass(frozen=True)
class AgentProfile:
    agent_id: int
    skills: frozenset[str] = frozenset()
    level: int = 1
    # Queues it is a member of (admin/); empty: every queue whose skills it has.
    queues: frozenset[str] = frozenset()


def priority_score(offered_at: float, tier: str, policy: RoutingPolicy, *,
                   open_complaint: bool = False) -> float:
    """Lower is served first; an open complaint only ever lowers (brings forward) it."""
    return offered_at - policy.boost(tier, open_complaint)


def call_priority(call: CallProfile, offered_at: float, policy: RoutingPolicy) -> float:
    """The priority of an offered call, from everything routing knows about it."""
    return priority_score(offered_at, call.tier, policy, open_complaint=call.open_complaint)


def agent_pool(agent_id: int) -> str:
    return f"agent:{agent_id}"


def queue_pool(queue: str) -> str:
    return f"queue:{queue}"


def serves(agent: AgentProfile, queue_skills: Iterable[str]) -> bool:
    return set(queue_skills) <= agent.skills


def serves_queue(agent: AgentProfile, queue: str, queue_skills: Iterable[str]) -> bool:
    """A member serves its queues; an agent that is a member of none, every queue whose
    skills it has."""
    return queue in agent.queues if agent.queues else serves(agent, queue_skills)


def pools_of(agent: AgentProfile, queues: Mapping[str, Sequence[str]],
             policy: RoutingPolicy) -> list[str]:
    """Every pool an available agent belongs to."""
    pools = [agent_pool(agent.agent_id)]
    pools += [f"skill:{skill}" for skill in sorted(agent.skills)]
    if policy.complaint_skill in agent.skills or agent.level >= policy.senior_level:
        pools.append("complaints")
    pools += [queue_pool(q) for q, skills in sorted(queues.items())
              if serves_queue(agent, q, skills)]
    return pools


def rings_for(call: CallProfile, policy: RoutingPolicy) -> list[Ring]:
    rings: list[Ring] = []
    opens = 0.0
    if call.sticky_agent_id is not None and call.sticky_agent_working:
        rings.append(Ring(agent_pool(call.sticky_agent_id), opens, "sticky_agent"))
        opens += policy.sticky_wait_s.get(call.tier, 0.0)
    if call.open_complaint:
        rings.append(Ring("complaints", opens, "open_complaint"))
        opens += policy.complaint_wait_s
    if call.intent_skill:
        rings.append(Ring(f"skill:{call.intent_skill}", opens, "ivr_intent"))
        opens += policy.intent_wait_s
    rings.append(Ring(queue_pool(call.queue), opens, "queue"))
    return rings


def skip_empty(rings: Sequence[Ring], empty: Iterable[str]) -> list[Ring]:
    """The rings with no hold for those whose pool is in `empty`: the rings after an empty
    one open that much sooner."""
    empty = set(empty)
    out: list[Ring] = []
    shift = 0.0
    for ring, after in zip(rings, [*rings[1:], None], strict=True):
        out.append(replace(ring, opens_after_s=ring.opens_after_s - shift))
        if ring.pool in empty and after is not None:
            shift += after.opens_after_s - ring.opens_after_s
    return out


# A ring opens at `offered_at + opens_after_s`; a timer firing at exactly that moment must
# see it open even when the subtraction `now - offered_at` rounds a hair below.
_EPSILON_S = 1e-6


def open_rings(rings: Sequence[Ring], waited_s: float) -> list[Ring]:
    return [ring for ring in rings if ring.opens_after_s <= waited_s + _EPSILON_S]


def next_widening_s(rings: Sequence[Ring], waited_s: float) -> float | None:
    """Seconds after the offer when the next ring opens, or None if all are open."""
    later = [ring.opens_after_s for ring in rings if ring.opens_after_s > waited_s + _EPSILON_S]
    return min(later) if later else None


def matching_ring(agent_pools: Iterable[str], rings: Sequence[Ring],
                  waited_s: float) -> Ring | None:
    """The innermost open ring of a call that this agent is in, if any."""
    pools = set(agent_pools)
    return next((r for r in open_rings(rings, waited_s) if r.pool in pools), None)


@dataclass(frozen=True)
class WaitingCall:
    call_id: str
    score: float
    offered_at: float
    rings: tuple[Ring, ...]
    queue: str = "default"


def best_call_for(agent_pools: Iterable[str], waiting: Iterable[WaitingCall],
                  now: float) -> tuple[WaitingCall, Ring] | None:
    """The first call, in priority order, whose open rings include this agent."""
    pools = set(agent_pools)
    for call in sorted(waiting, key=lambda c: (c.score, c.call_id)):
        ring = matching_ring(pools, call.rings, now - call.offered_at)
        if ring is not None:
            return call, ring
    return None


def encode_rings(rings: Sequence[Ring]) -> str:
    return ";".join(f"{r.pool}|{r.opens_after_s:g}|{r.rule}" for r in rings)


def decode_rings(text: str) -> tuple[Ring, ...]:
    rings = []
    for part in filter(None, text.split(";")):
        pool, opens, rule = part.split("|")
        rings.append(Ring(pool, float(opens), rule))
    return tuple(rings)
