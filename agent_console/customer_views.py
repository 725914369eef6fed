"""REST for the console: create a customer for a new caller, and agents' names.

`POST /api/v1/customers {id?, name, phone, email?, call_id?}` creates the
customer with its phone; given the call it was created from, that call's
interaction record is attached to the new customer so its history starts there.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agent_console.views import STAFF
from core import appkeys, outbox
from core.models import Agent, Call, Customer, CustomerPhone, Interaction
from core.web import Invalid, authenticate, json_error
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
    await authenticate(request, *STAFF)
    try:
        body = NewCustomer.model_validate_json(await request.read())
    except ValidationError as e:
        raise Invalid(describe(e.errors())) from e
    phone = crm.normalise_phone(body.phone)
    if phone is None:
        raise Invalid(f"{body.phone!r} is not a valid phone number")
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
