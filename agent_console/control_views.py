"""`POST /api/v1/calls/{call_id}/control`: call control over REST, for supervisors and
integrations (agents may use it for their own call too). The same actions and answers as
the console's `call.control` frame (docs/protocol.md); it returns once the PBX confirmed."""

from __future__ import annotations

from aiohttp import web
from pydantic import ConfigDict, ValidationError

from core import appkeys
from core.models import Role
from core.web import Invalid, authenticate
from cti.control import Request, requester
from cti.schemas import ControlFields, describe

STAFF = (Role.agent, Role.supervisor, Role.admin)


class ControlBody(ControlFields):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


async def control_call(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    try:
        body = ControlBody.model_validate_json(await request.read())
    except ValidationError as e:
        raise Invalid(describe(e.errors())) from e
    call_id = request.match_info["call_id"]
    mine = None if principal.has(Role.supervisor, Role.admin) else principal.agent_id
    outcome = await request.app[appkeys.CONTROL].control(
        Request(call_id, body.action, mine, by=requester(principal)), **body.fields())
    return web.json_response({"ok": True, "call_id": call_id, "action": body.action,
                              "command_id": outcome.command_id})


def setup(app: web.Application) -> None:
    app.router.add_post("/api/v1/calls/{call_id}/control", control_call)
