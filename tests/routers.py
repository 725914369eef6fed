"""The few steps routing tests take with a Router (the `routers` fixture: tests/conftest.py)."""

from __future__ import annotations

from routing.engine import AgentProfile, CallProfile
from routing.service import Router
from routing.states import AgentState

ROUTING_QUEUES = {"default": (), "billing": ("billing",)}


async def sign_in(router: Router, agent_id: int, skills: set[str], now: float,
                  available: bool = True) -> None:
    await router.register_agent(AgentProfile(agent_id, frozenset(skills)))
    state = AgentState.available if available else AgentState.not_ready
    await router.set_state(agent_id, state, "", now)


async def offer(router: Router, call_id: str, at: float, *, tier: str = "standard",
                intent: str | None = None, now: float | None = None) -> str | None:
    profile = CallProfile(call_id, "default", tier, intent_skill=intent)
    _, assignment, _ = await router.offer(profile, at, at if now is None else now)
    return assignment and str(assignment.agent_id)
