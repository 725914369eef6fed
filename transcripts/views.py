"""REST API v1 for complaints and satisfaction statistics.

Agents create complaints from the console, about their own calls, and read those they
own and those of the customers of their current and last call; supervisors and admins
read every complaint and move them through the lifecycle, assign and escalate them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select

from core import access, appkeys
from core.audit_views import viewed
from core.auth import Forbidden, Principal
from core.models import Agent, Complaint, ComplaintEvent, Interaction, Role
from core.web import Invalid, NotFound, authenticate
from crm.open_complaints import is_open_complaint
from cti.schemas import describe
from transcripts import complaint_events, complaints, stats
from transcripts.complaint_events import complaint_dict
from transcripts.complaint_events import iso as _iso
from transcripts.complaints import CATEGORIES, Actor, ComplaintState, Escalation

STAFF = (Role.agent, Role.supervisor, Role.admin)
RowId = Annotated[int, Field(ge=1, le=2**31 - 1)]  # an id the database can hold
MANAGERS = (Role.supervisor, Role.admin)
LIST_LIMIT = 200


class CreateBody(BaseModel):
    customer_id: Annotated[str, Field(min_length=1, max_length=64)]
    category: Literal[CATEGORIES] = "other"  # type: ignore[valid-type]
    summary: Annotated[str, Field(max_length=4000)] = ""
    interaction_id: RowId | None = None
    call_id: Annotated[str | None, Field(max_length=128)] = None


class TransitionBody(BaseModel):
    to: ComplaintState
    note: Annotated[str, Field(max_length=4000)] = ""
    cause_side: Literal["company", "customer"] | None = None
    resolution: Annotated[str | None, Field(max_length=4000)] = None
    reason: Annotated[str | None, Field(max_length=4000)] = None


class AssignBody(BaseModel):
    agent_id: RowId
    note: Annotated[str, Field(max_length=4000)] = ""


class EscalateBody(BaseModel):
    note: Annotated[str, Field(max_length=4000)] = ""


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate_json(await request.read() or b"{}")
    except ValidationError as e:
        raise Invalid(describe(e.errors())) from e


def _actor(principal: Principal) -> Actor:
    return Actor(principal.name, principal.role, principal.agent_id)


def _id(request: web.Request) -> int:
    raw = request.match_info["complaint_id"]
    try:
        complaint_id = int(raw)
    except ValueError as e:
        raise NotFound(f"no complaint {raw!r}") from e
    if not 1 <= complaint_id < 2**31:
        raise NotFound(f"no complaint {raw!r}")
    return complaint_id


def event_dict(e: ComplaintEvent) -> dict[str, Any]:
    return {"from": e.from_state, "to": e.to_state, "actor": e.actor, "note": e.note,
            "at": _iso(e.at)}


async def _interaction_id(request: web.Request, session: Any, principal: Principal,
                          body: CreateBody) -> int | None:
    """The call the complaint is about: one that exists, is with this customer, and for
    an agent, one it took part in (a flag on a call steers routing away from its agent)."""
    if body.call_id is None and body.interaction_id is None:
        return None
    where = (Interaction.call_id == body.call_id if body.call_id is not None
             else Interaction.id == body.interaction_id)
    interaction = await session.scalar(select(Interaction).where(where))
    if interaction is None:
        raise NotFound(f"no call {body.call_id or body.interaction_id!r}")
    if principal.role is Role.agent and principal.agent_id is not None:
        app = request.app
        current = await access.current_call_id(app[appkeys.REDIS], app[appkeys.KEYS],
                                               principal.agent_id)
        if not access.took_part(interaction, principal.agent_id, current):
            raise Forbidden("agents open complaints only about calls they took")
    if interaction.customer_id not in (None, body.customer_id):
        raise Invalid("that call is with another customer")
    return int(interaction.id)


async def _visible(request: web.Request, session: Any, principal: Principal) -> Any:
    """For an agent, the complaints it may read: those it owns, and those of the customers
    of its current and last call; None (no limit) for supervisors and admins."""
    if principal.role is not Role.agent:
        return None
    app = request.app
    calls = await access.calls_of(app[appkeys.REDIS], app[appkeys.KEYS], session, principal)
    customers = [c for c in (calls.current, calls.last) if c]
    owner = -1 if principal.agent_id is None else principal.agent_id  # never NULL: unassigned
    return (Complaint.assigned_agent_id == owner) | Complaint.customer_id.in_(customers)


async def _announce(request: web.Request, kind: str, complaint: Complaint) -> None:
    """Tell the webhooks (`complaint.<state>`, `complaint.assigned`, `complaint.escalated`)."""
    await complaint_events.announce(request.app[appkeys.REDIS],
                                    request.app[appkeys.KEYS].webhook_events, kind, complaint)


async def create_complaint(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    body: CreateBody = await _body(request, CreateBody)
    service = request.app[appkeys.COMPLAINTS]
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        complaint = await complaints.create(
            session, customer_id=body.customer_id, actor=_actor(principal),
            now=service.clock(), policy=service.policy, category=body.category,
            summary=body.summary,
            interaction_id=await _interaction_id(request, session, principal, body),
            # An agent who takes a complaint owns it until a supervisor assigns it.
            assigned_agent_id=principal.agent_id if principal.role is Role.agent else None)
    await _announce(request, complaint.state, complaint)
    return web.json_response(complaint_dict(complaint), status=201)


async def list_complaints(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    query = select(Complaint).order_by(Complaint.created_at.desc(), Complaint.id.desc())
    if state := request.query.get("state"):
        if state not in ComplaintState.__members__:
            raise Invalid(f"state must be one of {', '.join(ComplaintState.__members__)}")
        query = query.where(Complaint.state == state)
    if customer_id := request.query.get("customer_id"):
        query = query.where(Complaint.customer_id == customer_id)
    if request.query.get("escalated") in ("1", "true"):
        query = query.where(Complaint.escalation_level > 0, is_open_complaint())
    async with request.app[appkeys.SESSIONS]() as session:
        if (visible := await _visible(request, session, principal)) is not None:
            query = query.where(visible)
        rows = list(await session.scalars(query.limit(LIST_LIMIT)))
    await viewed(request, [("complaint", str(c.id)) for c in rows], "list")
    return web.json_response({"complaints": [complaint_dict(c) for c in rows]})


async def get_complaint(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    complaint_id = _id(request)
    async with request.app[appkeys.SESSIONS]() as session:
        visible = await _visible(request, session, principal)
        if visible is not None and await session.scalar(select(Complaint.id).where(
                Complaint.id == complaint_id, visible)) is None:
            raise NotFound(f"no complaint {complaint_id}")  # as if it did not exist
        complaint = await complaints.get(session, complaint_id)
        trail = await complaints.events(session, complaint_id)
    await viewed(request, [("complaint", str(complaint_id))])
    return web.json_response({**complaint_dict(complaint),
                              "events": [event_dict(e) for e in trail]})


async def transition(request: web.Request) -> web.Response:
    principal = await authenticate(request, *MANAGERS)
    body: TransitionBody = await _body(request, TransitionBody)
    service = request.app[appkeys.COMPLAINTS]
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        complaint = await complaints.transition(
            session, _id(request), body.to, _actor(principal), service.clock(),
            note=body.note, cause_side=body.cause_side, resolution=body.resolution,
            reason=body.reason)
    await _announce(request, complaint.state, complaint)
    return web.json_response(complaint_dict(complaint))


async def assign(request: web.Request) -> web.Response:
    principal = await authenticate(request, *MANAGERS)
    body: AssignBody = await _body(request, AssignBody)
    service = request.app[appkeys.COMPLAINTS]
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        if await session.get(Agent, body.agent_id) is None:
            raise NotFound(f"no agent {body.agent_id}")
        complaint = await complaints.assign(session, _id(request), body.agent_id,
                                            _actor(principal), service.clock(), body.note)
    await _announce(request, "assigned", complaint)
    return web.json_response(complaint_dict(complaint))


async def escalate(request: web.Request) -> web.Response:
    principal = await authenticate(request, *MANAGERS)
    body: EscalateBody = await _body(request, EscalateBody)
    service = request.app[appkeys.COMPLAINTS]
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        complaint = await complaints.escalate(session, _id(request), _actor(principal),
                                              service.clock(), body.note)
    assert complaint is not None  # a one-level escalation raises rather than return None
    await service.announce(Escalation.of(complaint))
    await _announce(request, "escalated", complaint)
    return web.json_response(complaint_dict(complaint))


async def get_stats(request: web.Request) -> web.Response:
    await authenticate(request, *MANAGERS)
    since = None
    if raw := request.query.get("since"):
        try:
            since = dt.datetime.fromisoformat(raw)
            since = since.astimezone(dt.UTC) if since.tzinfo else since.replace(tzinfo=dt.UTC)
        except (ValueError, OverflowError) as e:  # year 1 at +14:00 is before year 1 UTC
            raise Invalid("since must be an ISO 8601 date or time") from e
    service = request.app[appkeys.COMPLAINTS]
    async with request.app[appkeys.SESSIONS]() as session:
        return web.json_response({
            "csat": await stats.csat(session, since),
            "complaints": await stats.complaint_counts(session, service.clock())})


def setup(app: web.Application) -> None:
    app.router.add_post("/api/v1/complaints", create_complaint)
    app.router.add_get("/api/v1/complaints", list_complaints)
    app.router.add_get("/api/v1/complaints/{complaint_id}", get_complaint)
    app.router.add_post("/api/v1/complaints/{complaint_id}/transition", transition)
    app.router.add_post("/api/v1/complaints/{complaint_id}/assign", assign)
    app.router.add_post("/api/v1/complaints/{complaint_id}/escalate", escalate)
    app.router.add_get("/api/v1/stats", get_stats)
