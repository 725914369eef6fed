"""REST API v1: sign-in, websocket tickets, customers and interaction records."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select

from core import access, appkeys, auth
from core.access import Grant
from core.audit_views import viewed
from core.auth import AuthError, Busy, Forbidden, Principal
from core.codes import KINDS
from core.models import Interaction, Role
from core.signin import RateLimited, signin_ctx
from core.web import Invalid, NotFound, authenticate, client_address, json_error
from crm import store as crm
from cti.schemas import describe

STAFF = (Role.agent, Role.supervisor, Role.admin)


class LoginBody(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as e:
        raise Invalid(describe(e.errors())) from e


async def login(request: web.Request) -> web.Response:
    body: LoginBody = await _body(request, LoginBody)
    try:
        signed = await request.app[appkeys.SIGN_IN](body.username, body.password,
                                                    client_address(request))
    except (RateLimited, Busy) as e:
        status = 429 if isinstance(e, RateLimited) else 503
        response = json_error(status, e.code, str(e))
        response.headers["Retry-After"] = str(e.retry_after_s)
        return response
    except AuthError:
        return json_error(401, "unauthorized", "wrong username or password")
    return web.json_response({"token": signed.token, "role": signed.role,
                              "agent_id": signed.agent_id, "name": signed.name})


async def logout(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        await auth.revoke(session, token_id=principal.token_id)
    return web.json_response({"ok": True})


async def ws_ticket(request: web.Request) -> web.Response:
    """A short-lived, one-time ticket for the browser's websocket."""
    await authenticate(request, *STAFF)
    settings = request.app[appkeys.SETTINGS]
    ticket = secrets.token_urlsafe(24)
    token = request.headers["Authorization"].partition(" ")[2].strip()
    await request.app[appkeys.REDIS].set(request.app[appkeys.KEYS].ws_ticket(ticket), token,
                                         ex=settings.ws_ticket_ttl_s)
    return web.json_response({"ticket": ticket, "expires_in": settings.ws_ticket_ttl_s})


async def me(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    codes = request.app[appkeys.CODES]
    return web.json_response({
        "agent_id": principal.agent_id, "name": principal.name, "role": principal.role.value,
        "not_ready_reasons": list(codes.not_ready_reasons),
        "dispositions": list(codes.dispositions),
        "labels": {kind: {c["code"]: c["label"] for c in codes.listed(kind) if c["label"]}
                   for kind in KINDS}})


async def get_customer(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    customer_id = request.match_info["customer_id"]
    async with request.app[appkeys.SESSIONS]() as session:
        if await crm.get_customer(session, customer_id) is None:
            raise NotFound(f"no customer {customer_id!r}")
        level = access.grant(principal.role, await _calls(request, session, principal),
                             customer_id)
        profile = await crm.customer_profile(session, customer_id)
        history = [] if level is Grant.summary else await _interactions(
            session, customer_id, limit=100)
    await viewed(request, [("customer", customer_id), *_transcripts(history)])
    return web.json_response(access.shape(
        {**profile, "interactions": history, "access": level.value}, level))


# One counter per user and minute, set to expire with its first search: atomic, so a
# burst of concurrent searches cannot all read the count before any is counted.
_COUNT_SEARCH = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


async def search_customers(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    query = request.query.get("q", "").strip()[:100]
    if not query:
        return json_error(400, "invalid", "give a name or a whole phone number in ?q=")
    app = request.app
    count = await app[appkeys.REDIS].eval(_COUNT_SEARCH, 1,
                                          app[appkeys.KEYS].searches(principal.name), 60)
    if int(count) > app[appkeys.SETTINGS].search_per_minute:
        return json_error(429, "rate_limited", "too many searches; try again in a minute")
    async with app[appkeys.SESSIONS]() as session:
        found = await crm.search_customers(session, query, limit=20)
        calls = await _calls(request, session, principal)
    # A search that finds nobody is recorded too: guessing shows in the log.
    await viewed(request, [("customer", c.id) for c in found] or [("search", "-")], "search",
                 q=query)
    return web.json_response({"customers": [access.shape(
        {"id": c.id, "name": c.name, "tier": c.tier, "phones": [p.phone for p in c.phones]},
        access.grant(principal.role, calls, c.id)) for c in found]})


async def list_interactions(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    customer_id = request.query.get("customer_id")
    if not customer_id:
        return json_error(400, "invalid", "give ?customer_id=")
    async with request.app[appkeys.SESSIONS]() as session:
        level = access.grant(principal.role, await _calls(request, session, principal),
                             customer_id)
        if level is Grant.summary:
            raise Forbidden("agents see the history of their current or last caller only")
        rows = await _interactions(session, customer_id, limit=200)
    await viewed(request, [("customer", customer_id), *_transcripts(rows)], "history")
    return web.json_response(access.shape({"interactions": rows}, level))


async def _calls(request: web.Request, session: Any, principal: Principal) -> access.AgentCalls:
    app = request.app
    return await access.calls_of(app[appkeys.REDIS], app[appkeys.KEYS], session, principal)


def _transcripts(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [("transcript", str(row["id"])) for row in rows if row["transcript"]]


async def _interactions(session: Any, customer_id: str, limit: int) -> list[dict[str, Any]]:
    rows = await session.scalars(
        select(Interaction).where(Interaction.customer_id == customer_id)
        .order_by(Interaction.offered_at.desc()).limit(limit))
    return [interaction_dict(row) for row in rows]


def interaction_dict(row: Interaction) -> dict[str, Any]:
    def iso(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": row.id, "call_id": row.call_id, "customer_id": row.customer_id,
        "agent_id": row.agent_id, "agent_ids": row.agent_ids, "queue": row.queue,
        "tier": row.tier, "ani": row.ani, "ivr": row.ivr, "offered_at": iso(row.offered_at),
        "answered_at": iso(row.answered_at), "ended_at": iso(row.ended_at),
        "end_cause": row.end_cause, "outcome": row.outcome, "wait_s": row.wait_s,
        "talk_s": row.talk_s, "routing_reason": row.routing_reason,
        "disposition": row.disposition, "notes": row.notes, "survey_score": row.survey_score,
        "transcript_status": row.transcript_status, "transcript_error": row.transcript_error,
        "transcript": row.transcript, "complaint_flag": row.complaint_flag,
        "hold_count": row.hold_count, "hold_s": row.hold_s, "legs": row.legs,
    }


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(signin_ctx)  # after the app's Redis, keys and database
    app.router.add_post("/api/v1/login", login)
    app.router.add_post("/api/v1/logout", logout)
    app.router.add_post("/api/v1/ws-ticket", ws_ticket)
    app.router.add_get("/api/v1/me", me)
    app.router.add_get("/api/v1/customers", search_customers)
    app.router.add_get("/api/v1/customers/{customer_id}", get_customer)
    app.router.add_get("/api/v1/interactions", list_interactions)
