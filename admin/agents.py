"""People in the system of record: create and change agents, supervisors and admins;
who may change whom. The caller commits (admin/changes.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from admin.center import check_queues, check_skills
from admin.exceptions import LastAdmin, NoSuchAgent, NotYourTeam, UsernameTaken
from admin.schemas import AgentChange, NewAgent
from core.auth import Principal
from core.models import Agent, ApiToken, Role, utcnow

# What an admin may change; a supervisor only the queues of the agents of its team.
FIELDS = ("display_name", "role", "extension", "skills", "level", "team", "queues", "active")
SUPERVISOR_FIELDS = frozenset({"queues"})
# Changes after which the agent signs in again: its tokens name its role.
REVOKING = frozenset({"role", "active"})


def agent_dict(agent: Agent) -> dict[str, Any]:
    return {"id": agent.id, "username": agent.username, "display_name": agent.display_name,
            "role": agent.role, "extension": agent.extension,
            "skills": list(agent.skills or ()), "level": agent.level, "team": agent.team,
            "queues": list(agent.queues or ()), "active": agent.active}


async def get(session: AsyncSession, agent_id: int) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise NoSuchAgent(agent_id)
    return agent


async def in_scope(session: AsyncSession, principal: Principal, agent: Agent) -> None:
    """Admins manage everyone; a supervisor the agents (not supervisors or admins) of its
    own team, where no team is a team too."""
    if principal.role is Role.admin:
        return
    me = await session.get(Agent, principal.agent_id) if principal.agent_id else None
    if me is None or agent.role != Role.agent.value or agent.team != me.team:
        raise NotYourTeam(agent.id)


async def visible(session: AsyncSession, principal: Principal) -> list[Agent]:
    query = select(Agent).order_by(Agent.id)
    if principal.role is not Role.admin:
        me = await session.get(Agent, principal.agent_id) if principal.agent_id else None
        team = me.team if me else None
        query = query.where(Agent.role == Role.agent.value,
                            Agent.team.is_(None) if team is None else Agent.team == team)
    return list((await session.scalars(query)).all())


async def create(session: AsyncSession, body: NewAgent, password_hash: str) -> Agent:
    if await session.scalar(select(Agent.id).where(Agent.username == body.username)):
        raise UsernameTaken(body.username)
    await check_skills(session, body.skills)
    await check_queues(session, body.queues)
    agent = Agent(username=body.username, display_name=body.display_name or body.username,
                  password_hash=password_hash, role=body.role, extension=body.extension,
                  skills=sorted(set(body.skills)), level=body.level, team=body.team,
                  queues=sorted(set(body.queues)), active=True)
    session.add(agent)
    await session.flush()
    return agent


async def change(session: AsyncSession, agent: Agent, body: AgentChange,
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply the fields given; refuse what would leave the center without an admin."""
    before = agent_dict(agent)
    given = {name: getattr(body, name) for name in FIELDS if name in body.model_fields_set}
    for name in ("display_name", "role", "level", "active", "skills", "queues"):
        if given.get(name, 0) is None:  # only these may not be null
            del given[name]
    if "skills" in given:
        await check_skills(session, given["skills"])
        given["skills"] = sorted(set(given["skills"]))
    if "queues" in given:
        await check_queues(session, given["queues"])
        given["queues"] = sorted(set(given["queues"]))
    losing_admin = agent.role == Role.admin.value and agent.active and (
        given.get("role", Role.admin.value) != Role.admin.value or given.get("active") is False)
    if losing_admin and await _other_admins(session, agent.id) == 0:
        raise LastAdmin()
    for name, value in given.items():
        setattr(agent, name, value)
    return before, agent_dict(agent)


async def _other_admins(session: AsyncSession, agent_id: int) -> int:
    return int(await session.scalar(select(func.count()).select_from(Agent).where(
        Agent.role == Role.admin.value, Agent.active, Agent.id != agent_id)) or 0)


async def revoke_tokens(session: AsyncSession, agent_id: int) -> int:
    """Sign the agent out everywhere: its tokens stop working, its sockets close."""
    result = await session.execute(update(ApiToken).where(
        ApiToken.agent_id == agent_id, ApiToken.revoked_at.is_(None)).values(
        revoked_at=utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)
