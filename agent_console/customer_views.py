"""REST for the console: create a customer for a new caller, and agents' names.

`POST /api/v1/customers {id?, name, phone, email?, call_id?}` creates the
customer with its phone; given the call it was created from, that call's
interaction record is attached to the new customer so its history starts there. An
agent may name only its own call (current, or one it took): 403 otherwise, 404 for a
call that does not exist.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agent_console.views import STAFF
from core import access, appkeys, outbox
from core.auth import Forbidden, Principal
from core.models import Agent, Call, Customer, CustomerPhone, Interaction, Role
from core.web import Invalid, NotFound, authenticate, json_error
from crm import store as crm
from cti.schemas import describe


class NewCustomer(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\w.-]+$")] | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)]
    phone: Annotated[str, Field(min_length=3, max_length=32)]
    email: Annotated[str, Field(max_length=254)] | None = None
    call_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


async def create_customer(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    try:
        body = NewCustomer.model_validate_json(await request.read())
    except ValidationError as e:
        raise Invalid(describe(e.errors())) from e
    phone = crm.normalise_phone(body.phone)
    if phone is None:
        raise Invalid(f"{body.phone!r} is not a valid phone number")
    if body.call_id:
        await _check_call(request, principal, body.call_id)
    customer_id = body.id or f"N{secrets.token_hex(5).upper()}"
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        if await session.get(CustomerPhone, phone) is not None:
            return json_error(409, "conflict", f"{phone} already belongs to a customer")
        if await session.get(Customer, customer_id) is not None:
            return json_error(409, "conflict", f"customer {customer_id!r} already exists")
        session.add(Customer(id=customer_id, name=body.name, email=body.email or None,
                             phones=[CustomerPhone(phone=phone, position=0)]))
        if body.call_id:
            await _attach_call(session, body.call_id, customer_id)
    async with request.app[appkeys.SESSIONS]() as session:
        profile = await crm.customer_profile(session, customer_id)
    await outbox.emit_quietly(
        request.app[appkeys.REDIS], request.app[appkeys.KEYS].webhook_events,
        "customer.created", {"customer_id": customer_id, "name": body.name, "phone": phone,
                             "email": body.email or None, "call_id": body.call_id},
        order_key=body.call_id or f"customer:{customer_id}")
    return web.json_response(profile, status=201)


async def _check_call(request: web.Request, principal: Principal, call_id: str) -> None:
    """The call a new customer is attached to exists and, for an agent, is its own: an
    agent must not take over another agent's caller by creating a customer for it."""
    app = request.app
    agent_id = principal.agent_id if principal.role is Role.agent else None
    if agent_id is not None and call_id == await access.current_call_id(
            app[appkeys.REDIS], app[appkeys.KEYS], agent_id):
        return
    async with app[appkeys.SESSIONS]() as session:
        interaction = await session.scalar(select(Interaction).where(
            Interaction.call_id == call_id))
        known = interaction is not None or await session.get(Call, call_id) is not None
    if agent_id is not None and (interaction is None
                                 or not access.took_part(interaction, agent_id, "")):
        raise Forbidden("agents attach a new customer only to their own call")
    if not known:
        raise NotFound(f"no call {call_id!r}")


async def _attach_call(session: AsyncSession, call_id: str, customer_id: str) -> None:
    """The call of an unknown caller now belongs to the customer created from it."""
    await session.execute(update(Interaction).where(
        Interaction.call_id == call_id, Interaction.customer_id.is_(None),
    ).values(customer_id=customer_id))
    await session.execute(update(Call).where(
        Call.id == call_id, Call.customer_id.is_(None)).values(customer_id=customer_id))


async def agent_names(request: web.Request) -> web.Response:
    """Who is who, so history can say which agent took a call."""
    await authenticate(request, *STAFF)
    async with request.app[appkeys.SESSIONS]() as session:
        rows = await session.execute(select(Agent.id, Agent.display_name, Agent.username))
    return web.json_response({"agents": [
        {"id": agent_id, "name": display or username} for agent_id, display, username in rows]})


def setup(app: web.Application) -> None:
    app.router.add_post("/api/v1/customers", create_customer)
    app.router.add_get("/api/v1/directory/agents", agent_names)
