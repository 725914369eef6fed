"""`POST /api/v1/calls/{call_id}/monitor`: a supervisor listens to, whispers to or barges
into a live call of an agent of its team (admins: any call), switches mode, or stops. It
returns once the PBX did it (cti/monitor.py); each change is audited."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from admin import agents
from admin.exceptions import NoExtension
from admin.http import body
from admin.schemas import MonitorRequest
from core import appkeys
from core.audit_views import viewer
from core.auth import Forbidden, Principal
from core.models import Agent, Role
from core.web import Invalid, authenticate
from cti.monitor import Supervisor

MONITORS = (Role.supervisor, Role.admin)


async def monitor_call(request: web.Request) -> web.Response:
    principal = await authenticate(request, *MONITORS)
    given = await body(request, MonitorRequest)
    call_id = request.match_info["call_id"]
    if not 0 < len(call_id) <= 128:
        raise Invalid("call id must be 1 to 128 characters")
    async with request.app[appkeys.SESSIONS]() as session:
        me = await session.get(Agent, principal.agent_id) if principal.agent_id else None
        if me is None:
            raise Forbidden("monitoring needs a supervisor's or admin's own account")
        await _in_scope(request, session, principal, call_id)
    if not me.extension and given.mode != "stop":
        raise NoExtension()
    who = Supervisor(me.id, me.display_name or me.username, me.extension or "",
                     override=principal.role is Role.admin)
    change = await request.app[appkeys.MONITOR].monitor(call_id, who, given.mode,
                                                        viewer(request))
    return web.json_response({"ok": True, "call_id": call_id, "mode": change.mode,
                              "previous": change.previous or None,
                              "command_id": change.command_id or None})


async def _in_scope(request: web.Request, session: AsyncSession, principal: Principal,
                    call_id: str) -> None:
    """A supervisor monitors the calls of its team's agents (admin/agents.py)."""
    keys = request.app[appkeys.KEYS]
    agent_id = await request.app[appkeys.REDIS].hget(keys.call(call_id), "agent_id")
    if agent_id:  # a call with no agent (ended, waiting) is refused by the service
        await agents.in_scope(session, principal, await agents.get(session, int(agent_id)))


def setup(app: web.Application) -> None:
    app.router.add_post("/api/v1/calls/{call_id}/monitor", monitor_call)
