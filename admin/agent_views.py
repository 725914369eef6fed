"""`/api/v1/admin/agents`: people, their states and sign-outs (admins; supervisors for the
agents of their team)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from admin import agents
from admin.exceptions import UnknownReason
from admin.http import PARTS, agent_id, body
from admin.schemas import AgentChange, NewAgent, NewPassword, SignOut, StateChange
from core import appkeys, audit
from core.audit_views import viewer
from core.auth import Forbidden, hash_password
from core.models import Agent, Role
from core.web import authenticate
from cti import messages
from routing.service import UnknownAgent
from routing.states import AgentState

STAFF = (Role.supervisor, Role.admin)


def _live(agent: dict[str, str]) -> dict[str, Any]:
    if not agent:
        return {"state": AgentState.logged_out.value, "reason": None, "changed_by": None,
                "pending": None}
    frame = messages.agent_state(0, agent)
    return {k: frame[k] for k in ("state", "reason", "changed_by", "pending")}


async def _with_live(request: web.Request, rows: list[Agent]) -> list[dict[str, Any]]:
    store = request.app[appkeys.ROUTER].store
    live = await asyncio.gather(*(store.agent(a.id) for a in rows))
    return [{**agents.agent_dict(a), **_live(h)} for a, h in zip(rows, live, strict=True)]


async def list_agents(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    async with request.app[appkeys.SESSIONS]() as session:
        rows = await agents.visible(session, principal)
    return web.json_response({"agents": await _with_live(request, rows)})


async def get_agent(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    async with request.app[appkeys.SESSIONS]() as session:
        agent = await agents.get(session, agent_id(request))
        await agents.in_scope(session, principal, agent)
    return web.json_response((await _with_live(request, [agent]))[0])


async def create_agent(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    new = await body(request, NewAgent)
    password_hash = await asyncio.to_thread(hash_password, new.password)
    parts = request.app[PARTS]

    async def change(session: Any) -> tuple[Agent, dict[str, Any]]:
        agent = await agents.create(session, new, password_hash)
        return agent, {"before": None, "after": agents.agent_dict(agent)}

    agent = await parts.changes.make(viewer(request), "agent.create", ("agent", new.username),
                                     change, config=False)
    await parts.directory.register(agent)
    return web.json_response((await _with_live(request, [agent]))[0], status=201)


async def change_agent(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    ident, given = agent_id(request), await body(request, AgentChange)
    if principal.role is not Role.admin and given.model_fields_set - agents.SUPERVISOR_FIELDS:
        raise Forbidden("supervisors change only the queues of the agents of their team")
    parts = request.app[PARTS]

    async def change(session: Any) -> tuple[Agent, dict[str, Any]]:
        agent = await agents.get(session, ident)
        await agents.in_scope(session, principal, agent)
        before, after = await agents.change(session, agent, given)
        if agents.REVOKING & {k for k in given.model_fields_set if before[k] != after[k]}:
            await agents.revoke_tokens(session, agent.id)
        return agent, {"before": before, "after": after}

    agent = await parts.changes.make(viewer(request), "agent.change", ("agent", str(ident)),
                                     change, config=False)
    if agent.active:
        await parts.calls.offer_waiting(agent.id, await parts.directory.register(agent))
    else:  # gone home for good: out of routing now, or after its call
        await _leave_routing(request, agent.id)
    return web.json_response((await _with_live(request, [agent]))[0])


async def _leave_routing(request: web.Request, ident: int) -> None:
    try:
        await request.app[PARTS].calls.supervise_state(ident, AgentState.logged_out, "",
                                                       viewer(request).actor)
    except UnknownAgent:  # never signed in since the live state began: not in routing
        pass


async def reset_password(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    ident, given = agent_id(request), await body(request, NewPassword)
    password_hash = await asyncio.to_thread(hash_password, given.password)

    async def change(session: Any) -> tuple[int, dict[str, Any]]:
        agent = await agents.get(session, ident)
        agent.password_hash = password_hash
        revoked = await agents.revoke_tokens(session, ident)
        return revoked, {"tokens_revoked": revoked}  # never the password or its hash

    revoked = await request.app[PARTS].changes.make(
        viewer(request), "agent.password", ("agent", str(ident)), change, config=False)
    return web.json_response({"ok": True, "tokens_revoked": revoked})


async def sign_out(request: web.Request) -> web.Response:
    """Force a sign-out: the agent's tokens stop working and it leaves routing (after its
    call, if it has one)."""
    principal = await authenticate(request, *STAFF)
    ident, given = agent_id(request), await body(request, SignOut)

    async def change(session: Any) -> tuple[int, dict[str, Any]]:
        agent = await agents.get(session, ident)
        await agents.in_scope(session, principal, agent)
        revoked = await agents.revoke_tokens(session, ident)
        return revoked, {"tokens_revoked": revoked, "reason": given.reason}

    parts = request.app[PARTS]
    revoked = await parts.changes.make(viewer(request), "agent.sign_out", ("agent", str(ident)),
                                       change, config=False)
    outcome = await _supervise(request, ident, AgentState.logged_out, given.reason)
    return web.json_response({**outcome, "tokens_revoked": revoked})


async def set_state(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    ident, given = agent_id(request), await body(request, StateChange)
    reasons = request.app[appkeys.CODES].not_ready_reasons
    if given.state == AgentState.not_ready.value and given.reason not in reasons:
        raise UnknownReason(given.reason, reasons)
    async with request.app[appkeys.SESSIONS]() as session:
        await agents.in_scope(session, principal, await agents.get(session, ident))
    reason = given.reason if given.state == AgentState.not_ready.value else ""
    outcome = await _supervise(request, ident, AgentState(given.state), reason)
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        audit.record(session, viewer(request), "agent.state", [("agent", str(ident))], {
            "before": outcome["before"], "after": {"state": given.state, "reason": reason},
            "applied": outcome["applied"]})
    return web.json_response(outcome)


async def _supervise(request: web.Request, ident: int, state: AgentState,
                     reason: str) -> dict[str, Any]:
    parts = request.app[PARTS]
    try:
        done = await parts.calls.supervise_state(ident, state, reason, viewer(request).actor)
    except UnknownAgent:  # never signed in since the live state began: it is now known
        async with request.app[appkeys.SESSIONS]() as session:
            await parts.directory.register(await agents.get(session, ident))
        done = await parts.calls.supervise_state(ident, state, reason, viewer(request).actor)
    return {"applied": "now" if done.outcome == 1 else "after_call", "before": done.previous,
            "agent": messages.agent_state(ident, done.agent)}


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/admin/agents", list_agents)
    app.router.add_post("/api/v1/admin/agents", create_agent)
    app.router.add_get("/api/v1/admin/agents/{agent_id}", get_agent)
    app.router.add_patch("/api/v1/admin/agents/{agent_id}", change_agent)
    app.router.add_post("/api/v1/admin/agents/{agent_id}/password", reset_password)
    app.router.add_post("/api/v1/admin/agents/{agent_id}/sign-out", sign_out)
    app.router.add_post("/api/v1/admin/agents/{agent_id}/state", set_state)
