"""The agent directory: agents, queues and the routing policy loaded from the system of
record into routing's live state.

Admins change them at run time (admin/); every node loads them again when told, and an
agent's pools are written only by a node whose configuration is the latest
(routing/admin_steps.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import Agent, CenterSetting, Queue
from routing import engine
from routing.admin_steps import AdminSteps, StaleConfig
from routing.engine import AgentProfile, RoutingPolicy
from routing.service import Router, UnknownAgent

log = logging.getLogger(__name__)

# The center setting holding the admin's routing policy (keys of RoutingPolicy).
POLICY = "routing_policy"
# Tries of a write refused for a stale configuration before giving up.
_TRIES = 5


def policy_from(values: Mapping[str, Any], base: RoutingPolicy | None = None) -> RoutingPolicy:
    """`base` (the defaults) with the stored values over it; unknown keys are ignored."""
    base = base or RoutingPolicy()
    known = {f.name for f in fields(RoutingPolicy)}
    changes = {k: v for k, v in values.items() if k in known}
    for name in ("tier_boost_s", "sticky_wait_s"):
        if name in changes:  # a stored map may name only some tiers
            changes[name] = {**getattr(base, name), **changes[name]}
    return RoutingPolicy(**{**{f.name: getattr(base, f.name) for f in fields(base)},
                            **changes})


def profile(agent: Agent) -> AgentProfile:
    return AgentProfile(agent.id, frozenset(agent.skills or ()), agent.level,
                        frozenset(agent.queues or ()))


def live_fields(agent: Agent) -> dict[str, str | int | float]:
    return {"skills": ",".join(sorted(agent.skills or ())), "level": agent.level,
            "name": agent.display_name or agent.username, "username": agent.username,
            "extension": agent.extension or "", "role": agent.role,
            "queues": ",".join(sorted(agent.queues or ()))}


@dataclass
class AgentDirectory:
    maker: async_sessionmaker[AsyncSession]
    router: Router
    admin_steps: AdminSteps | None = None
    # The configuration version this node loaded (routing/admin_steps.py).
    version: str = "0"
    queue_rows: list[Queue] = field(default_factory=list)

    async def load_queues(self) -> None:
        """Queues, their tier boosts and the routing policy, as stored now."""
        if self.admin_steps is not None:
            self.version = await self.admin_steps.version()  # before the reads: see admin_steps
        async with self.maker() as session:
            queues = (await session.scalars(select(Queue))).all()
            stored = await session.get(CenterSetting, POLICY)
        self.queue_rows = list(queues)
        self.router.set_queues({q.name: tuple(q.skills or ()) for q in queues})
        self.router.queue_boosts = {q.name: {k: float(v) for k, v in q.tier_boost_s.items()}
                                    for q in queues if q.tier_boost_s}
        self.router.policy = policy_from(stored.value if stored else {})

    async def ensure_registered(self, agent_id: int) -> None:
        """Refresh an agent's live record from the store (skills may have changed)."""
        async with self.maker() as session:
            agent = await session.get(Agent, agent_id)
        if agent is None or not agent.active:
            raise UnknownAgent(agent_id)
        await self.register(agent)

    async def register(self, agent: Agent) -> dict[str, str]:
        """Write an agent's pools and fields into the live state; the agent after."""
        if self.admin_steps is None:
            await self.router.register_agent(profile(agent), **live_fields(agent))
            return {}
        for _ in range(_TRIES):
            pools = engine.pools_of(profile(agent), self.router.queues, self.router.policy)
            try:
                return await self.admin_steps.repool(agent.id, pools, self.version,
                                                  live_fields(agent))
            except StaleConfig as e:
                log.debug("configuration moved to %s; loading it again", e.version)
                await self.load_queues()
        raise StaleConfig(self.version)

    async def register_all(self) -> dict[int, dict[str, str]]:
        """Every live agent's pools again (after a queue changed); the agents after."""
        async with self.maker() as session:
            agents = (await session.scalars(select(Agent).where(Agent.active))).all()
        store = self.router.store
        known = {int(a) for a in await store.redis.smembers(store.keys.agents)}
        return {agent.id: await self.register(agent) for agent in agents if agent.id in known}
