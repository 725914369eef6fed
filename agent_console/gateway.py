"""`GET /ws/agent`: the agent console's live connection.

Non-browser clients send `Authorization: Bearer <token>`; browsers pass a
one-time `?ticket=` from `POST /api/v1/ws-ticket`, since a browser cannot set
headers on a websocket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Annotated, Any, Literal

import orjson
from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from core import appkeys, ws_auth
from core.audit_views import ScreenPopAudit
from core.auth import Principal
from core.models import Role
from core.web import watch_token
from core.ws import Connection, error_frame
from cti.calls import CallError
from cti.control import ControlFailed, Request, requester
from cti.schemas import ControlFields, describe
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


class CallControl(_Message, ControlFields):
    """Act on a call through the PBX (docs/protocol.md, protocol v2). Answered once the PBX
    confirmed (ack) or could not (error)."""

    type: Literal["call.control"]
    event_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    call_id: Annotated[str, Field(min_length=1, max_length=128)]


AgentMessage = TypeAdapter(Annotated[SetState | WrapupDone | Ping | CallControl,
                                     Field(discriminator="type")])

# Call-control requests of one console awaiting the PBX at once; more are refused.
MAX_PENDING = 16


class Pending:
    """Requests that wait for the PBX run beside the connection's reading, so a console
    keeps being served meanwhile; they end with it."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None]) -> bool:
        if len(self.tasks) >= MAX_PENDING:
            work.close()
            return False
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


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
    deliver = ScreenPopAudit(request, principal, conn)
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
    pending = Pending()
    try:
        await app[appkeys.DIRECTORY].ensure_registered(agent_id)
        await app[appkeys.PRESENCE].renew([agent_id])
        await calls.console_back(agent_id)
        for message in await calls.agent_snapshot(agent_id):
            deliver(message)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await _serve(app, conn, principal, msg.data, pending)
            elif msg.type is WSMsgType.BINARY:
                conn.send(error_frame("invalid_message", "send JSON text frames, not binary"))
    finally:
        watch.cancel()
        await pending.cancel()
        connected[agent_id] -= 1
        app[appkeys.METRICS].websockets.labels("agent").dec()
        bus.forget(resync)
        await bus.unsubscribe(channel, deliver)
        await deliver.close()
        await conn.close()
    return ws


async def _serve(app: web.Application, conn: Connection, principal: Principal, data: str,
                 pending: Pending) -> None:
    try:
        message = AgentMessage.validate_json(data)
    except ValidationError as e:
        conn.send({**error_frame("invalid_message", describe(e.errors())), **_raw_ids(data)})
        return
    if isinstance(message, CallControl):
        if not pending.start(_answer(app, conn, principal, message)):
            conn.send({**error_frame("too_many_pending", "wait for your earlier requests"),
                       **_ids(message)})
        return
    await _answer(app, conn, principal, message)


def _raw_ids(data: str) -> dict[str, str]:
    """The ids of a request refused as invalid, when they can be read, so the console can
    tell which request it was."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k in ("id", "event_id")
            if isinstance(v := value.get(k), str) and len(v) <= 200}


def _ids(message: Any) -> dict[str, Any]:
    """The request's own ids, echoed in its answer."""
    ids = {"id": message.id}
    if getattr(message, "event_id", None) is not None:
        ids["event_id"] = message.event_id
    return ids


async def _answer(app: web.Application, conn: Connection, principal: Principal,
                  message: Any) -> None:
    assert principal.agent_id is not None
    if isinstance(message, CallControl) and message.event_id is not None:
        # A resent call.control (same event_id) gets the first one's answer, acting once.
        answer = await app[appkeys.CONTROL_ONCE].run(
            str(principal.agent_id), message.event_id, lambda: _reply(app, principal, message))
        conn.send({**answer, **_ids(message)})
        return
    conn.send(await _reply(app, principal, message))


async def _reply(app: web.Application, principal: Principal, message: Any) -> dict[str, Any]:
    """The ack or error answering one request."""
    reply: dict[str, Any] = {"type": "ack", **_ids(message)}
    if message.id is None:
        del reply["id"]
    try:
        reply.update(await _apply(app, principal, message))
    except ControlFailed as e:
        return {**error_frame(e.code, str(e)), **_ids(message), "reason": e.reason,
                "command_id": e.command_id}
    except (CallError, RoutingError, ValueError) as e:
        code = getattr(e, "code", "invalid")
        return {**error_frame(code, str(e)), **_ids(message)}
    return reply


async def _apply(app: web.Application, principal: Principal, message: Any) -> dict[str, Any]:
    """Carry out one request; what its ack adds."""
    calls = app[appkeys.CALLS]
    codes = app[appkeys.CODES]  # as an admin set them last (admin/)
    agent_id = principal.agent_id
    assert agent_id is not None
    if isinstance(message, CallControl):
        # Supervisors and admins may control any call; an agent its own.
        mine = None if principal.has(Role.supervisor, Role.admin) else agent_id
        outcome = await app[appkeys.CONTROL].control(
            Request(message.call_id, message.action, mine, by=requester(principal)),
            **message.fields())
        return {"command_id": outcome.command_id}
    if isinstance(message, SetState):
        if message.state == "not_ready" and message.reason not in codes.not_ready_reasons:
            choices = ", ".join(codes.not_ready_reasons)
            raise ValueError(f"pick a not-ready reason from {choices}")
        await calls.set_agent_state(agent_id, AgentState(message.state), message.reason)
    elif isinstance(message, WrapupDone):
        if message.disposition not in codes.dispositions:
            raise ValueError(f"pick a disposition from {', '.join(codes.dispositions)}")
        await calls.wrapup_done(agent_id, message.call_id, message.disposition, message.notes)
    return {}


def setup(app: web.Application) -> None:
    app.router.add_get("/ws/agent", agent_ws)
