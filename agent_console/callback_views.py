"""REST for scheduled callbacks (cti/callback_desk.py; docs/protocol.md, "Queue callbacks"):

- `GET  /api/v1/callbacks?agent_id=`: pending callbacks, soonest first. Agents see those
  promised to them; supervisors and admins all (or one agent's);
- `POST /api/v1/callbacks {customer_id?, number?, due_at, queue?, agent_id?, note?}`:
  promise a callback. An agent promises it for itself; a supervisor for anyone (or
  nobody: anyone of the queue);
- `POST /api/v1/callbacks/{callback_id}/reassign {agent_id, due_at?}` (supervisors);
- `POST /api/v1/callbacks/{callback_id}/cancel` (supervisors, or the agent it is
  promised to).

Each change is recorded in the audit log.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core import appkeys, audit
from core.audit_views import viewer
from core.auth import Forbidden, Principal
from core.models import Role
from core.web import Invalid, authenticate
from cti.callback_desk import Promise
from cti.schemas import PhoneNumber, QueueName, describe

SUPERVISORS = (Role.supervisor, Role.admin)
STAFF = (Role.agent, *SUPERVISORS)
AgentId = Annotated[int, Field(ge=1, le=2**31)]
M = TypeVar("M", bound=BaseModel)


class NewCallback(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    due_at: dt.datetime
    customer_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    number: PhoneNumber | None = None
    queue: QueueName = "default"
    agent_id: AgentId | None = None
    note: Annotated[str, Field(max_length=2000)] = ""


class Reassign(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: AgentId | None
    due_at: dt.datetime | None = None


def _parse(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as e:
        raise Invalid(describe(e.errors())) from e


def _epoch(value: dt.datetime) -> float:
    if value.tzinfo is None:
        raise Invalid("due_at needs a time zone offset (e.g. 2026-12-03T15:00:00+08:00)")
    return value.timestamp()


async def _audit(request: web.Request, action: str, view: dict[str, Any]) -> None:
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        audit.record(session, viewer(request), action, [("callback", view["callback_id"])], {
            "agent_id": view["agent_id"], "due_at": view["due_at"],
            "customer_id": view["customer_id"]})


async def listing(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    agent_id = principal.agent_id
    if principal.has(*SUPERVISORS):
        raw = request.query.get("agent_id")
        try:
            agent_id = int(raw) if raw else None
        except ValueError as e:
            raise Invalid("agent_id must be an integer") from e
        if agent_id is not None and not 1 <= agent_id <= 2**31:
            raise Invalid("agent_id must be within 1..2147483648")
    rows = await request.app[appkeys.CALLBACKS].pending(agent_id)
    waiting = await request.app[appkeys.CALLS].callbacks.waiting()
    return web.json_response({"callbacks": rows, "waiting": waiting[0]})


async def create(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    given = _parse(NewCallback, await request.read())
    if given.customer_id is None and given.number is None:
        raise Invalid("give customer_id or number")
    agent_id = given.agent_id
    if not principal.has(*SUPERVISORS):
        if agent_id not in (None, principal.agent_id):
            raise Forbidden("an agent promises callbacks for itself")
        agent_id = principal.agent_id
    view = await request.app[appkeys.CALLBACKS].schedule(Promise(
        due_at=_epoch(given.due_at), customer_id=given.customer_id, number=given.number,
        queue=given.queue, agent_id=agent_id, note=given.note, by=principal.agent_id))
    await _audit(request, "callback.create", view)
    return web.json_response(view, status=201)


async def reassign(request: web.Request) -> web.Response:
    principal = await authenticate(request, *SUPERVISORS)
    given = _parse(Reassign, await request.read())
    due = None if given.due_at is None else _epoch(given.due_at)
    view = await request.app[appkeys.CALLBACKS].reassign(
        request.match_info["callback_id"], given.agent_id, due, principal.agent_id)
    await _audit(request, "callback.reassign", view)
    return web.json_response(view)


async def cancel(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    desk = request.app[appkeys.CALLBACKS]
    callback_id = request.match_info["callback_id"]
    if not principal.has(*SUPERVISORS):
        await _own(desk, principal, callback_id)
    view = await desk.cancel(callback_id, principal.agent_id)
    await _audit(request, "callback.cancel", view)
    return web.json_response(view)


async def _own(desk: Any, principal: Principal, callback_id: str) -> None:
    mine = {row["callback_id"] for row in await desk.pending(principal.agent_id)}
    if callback_id not in mine:
        raise Forbidden("an agent cancels only the callbacks promised to it")


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/callbacks", listing)
    app.router.add_post("/api/v1/callbacks", create)
    app.router.add_post("/api/v1/callbacks/{callback_id}/reassign", reassign)
    app.router.add_post("/api/v1/callbacks/{callback_id}/cancel", cancel)
