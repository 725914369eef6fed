"""`GET /ws/agent`: the agent console's live connection.

Non-browser clients send `Authorization: Bearer <token>`; browsers pass a
one-time `?ticket=` from `POST /api/v1/ws-ticket`, since a browser cannot set
headers on a websocket.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from core import appkeys, ws_auth
from core.audit_views import ScreenPopAudit
from core.auth import Principal
from core.models import Role
from core.web import watch_token
from core.ws import Connection, error_frame
from cti.calls import CallError
from cti.schemas import describe
from routing.service import RoutingError
from routing.states import AgentState

log = logging.getLogger(__name__)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    id: Annotated[str, Field(max_length=200)] | None = None


class SetState(_Message):
    type: Literal["agent.state.set"]
    state: Literal["available", "not_ready", "logged_out"]
    reason: Annotated[str, Field(max_length=32)] = ""


class WrapupDone(_Message):
    type: Literal["wrapup.done"]
    call_id: Annotated[str, Field(min_length=1, max_length=128)]
    disposition: Annotated[str, Field(min_length=1, max_length=64)]
    notes: Annotated[str, Field(max_length=4000)] = ""


class Ping(_Message):
    type: Literal["ping"]


AgentMessage = TypeAdapter(Annotated[SetState | WrapupDone | Ping, Field(discriminator="type")])


GATE = ws_auth.Gate(
    lambda p: p.agent_id is not None and p.role is not Role.telephony,
    "only agent, supervisor and admin users")


async def agent_ws(request: web.Request) -> web.StreamResponse:
    return await ws_auth.serve(request, GATE, _connected)


async def _connected(request: web.Request, principal: Principal) -> web.WebSocketResponse:
    app = request.app
    assert principal.agent_id is not None  # the gate lets only agents' tokens in
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=16 * 1024)
    await ws.prepare(request)
    agent_id = principal.agent_id
    conn = Connection(ws, f"agent {agent_id}")
    conn.start()
    deliver = ScreenPopAudit(request, principal, conn.send)
    calls, bus = app[appkeys.CALLS], app[appkeys.BUS]
    channel = app[appkeys.KEYS].agent_channel(agent_id)
    await bus.subscribe(channel, deliver)

    async def resync() -> None:  # what the console may have missed during an outage
        for message in await calls.agent_snapshot(agent_id):
            deliver(message)

    bus.on_resubscribed(resync)
    app[appkeys.METRICS].websockets.labels("agent").inc()
    connected = app[appkeys.RECOVERY].connected
    connected[agent_id] += 1
    watch = watch_token(app, principal, ws)
    try:
        await app[appkeys.DIRECTORY].ensure_registered(agent_id)
        await app[appkeys.PRESENCE].renew([agent_id])
        await calls.console_back(agent_id)
        for message in await calls.agent_snapshot(agent_id):
            deliver(message)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await _serve(app, conn, agent_id, msg.data)
            elif msg.type is WSMsgType.BINARY:
                conn.send(error_frame("invalid_message", "send JSON text frames, not binary"))
    finally:
        watch.cancel()
        connected[agent_id] -= 1
        app[appkeys.METRICS].websockets.labels("agent").dec()
        bus.forget(resync)
        await bus.unsubscribe(channel, deliver)
        await deliver.close()
        await conn.close()
    return ws


async def _serve(app: web.Application, conn: Connection, agent_id: int, data: str) -> None:
    try:
        message = AgentMessage.validate_json(data)
    except ValidationError as e:
        conn.send(error_frame("invalid_message", describe(e.errors())))
        return
    reply: dict[str, Any] = {"type": "ack"}
    if message.id is not None:
        reply["id"] = message.id
    try:
        await _apply(app, agent_id, message)
    except (CallError, RoutingError, ValueError) as e:
        code = getattr(e, "code", "invalid")
        conn.send({**error_frame(code, str(e)), "id": message.id})
        return
    conn.send(reply)


async def _apply(app: web.Application, agent_id: int, message: Any) -> None:
    calls = app[appkeys.CALLS]
    codes = app[appkeys.CODES]  # as an admin set them last (admin/)
    if isinstance(message, SetState):
        if message.state == "not_ready" and message.reason not in codes.not_ready_reasons:
            choices = ", ".join(codes.not_ready_reasons)
            raise ValueError(f"pick a not-ready reason from {choices}")
        await calls.set_agent_state(agent_id, AgentState(message.state), message.reason)
    elif isinstance(message, WrapupDone):
        if message.disposition not in codes.dispositions:
            raise ValueError(f"pick a disposition from {', '.join(codes.dispositions)}")
        await calls.wrapup_done(agent_id, message.call_id, message.disposition, message.notes)


def setup(app: web.Application) -> None:
    app.router.add_get("/ws/agent", agent_ws)
