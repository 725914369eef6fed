"""The agent directory: agents and queues loaded from the system of record into routing's
live state."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import Agent, Queue
from routing.engine import AgentProfile
from routing.service import Router, UnknownAgent


@dataclass
class AgentDirectory:
    maker: async_sessionmaker[AsyncSession]
    router: Router

    async def load_queues(self) -> None:
        async with self.maker() as session:
            queues = (await session.scalars(select(Queue))).all()
        self.router.set_queues({q.name: tuple(q.skills or ()) for q in queues})

    async def ensure_registered(self, agent_id: int) -> None:
        """Refresh an agent's live record from the store (skills may have changed)."""
        async with self.maker() as session:
            agent = await session.get(Agent, agent_id)
        if agent is None or not agent.active:
            raise UnknownAgent(agent_id)
        profile = AgentProfile(agent.id, frozenset(agent.skills or ()), agent.level)
        await self.router.register_agent(
            profile, name=agent.display_name or agent.username, username=agent.username,
            extension=agent.extension or "", role=agent.role)
