"""`GET /ws/telephony`: the websocket edge for IVR/PBX integrations (protocol v1).

Translates frames into CallService calls and domain errors into `error` frames.
A bad frame never closes the connection; an oversized one does, as the
websocket protocol requires (close code 1009).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from core import appkeys, ws_auth
from core.auth import Principal
from core.bus import Relay
from core.models import Role
from core.web import watch_token
from core.ws import Connection, error_frame
from cti.calls import CallError
from cti.schemas import ControlResult, StateSync, describe, inbound
from routing.service import RoutingError

log = logging.getLogger(__name__)


GATE = ws_auth.Gate(lambda p: p.role is Role.telephony, "this endpoint takes telephony tokens",
                    browser=False)


async def telephony_ws(request: web.Request) -> web.StreamResponse:
    return await ws_auth.serve(request, GATE, _connected)


async def _connected(request: web.Request, principal: Principal) -> web.WebSocketResponse:
    app = request.app
    settings = app[appkeys.SETTINGS]
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=settings.max_frame_bytes)
    await ws.prepare(request)
    conn = Connection(ws, f"telephony {principal.name}")
    conn.start()
    channel = app[appkeys.KEYS].telephony_channel(principal.name)
    bus = app[appkeys.BUS]
    lanes = CallLanes()
    relay = LaneRelay(conn, lanes)
    await bus.subscribe(channel, relay)
    log.info("telephony integration %s connected", principal.name)
    app[appkeys.METRICS].websockets.labels("telephony").inc()
    watch = watch_token(app, principal, ws)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await lanes.submit(_call_id(msg.data),
                                   _serve(app, conn, msg.data, principal.name))
            elif msg.type is WSMsgType.BINARY:
                conn.send(error_frame("bad_frame", "send JSON text frames, not binary"))
            elif msg.type is WSMsgType.ERROR:
                log.info("telephony %s: %s", principal.name, ws.exception())
    finally:
        watch.cancel()
        app[appkeys.METRICS].websockets.labels("telephony").dec()
        await lanes.drain()
        await bus.unsubscribe(channel, relay)
        await conn.close()
        log.info("telephony integration %s disconnected", principal.name)
    return ws


class CallLanes:
    """Frames of different calls are served concurrently, frames of one call in order.

    One PBX connection carries every call, so serving frames one at a time would make
    its throughput the inverse of one event's latency. At most `limit` frames are in
    flight; past that the connection stops reading, which pushes back on the PBX.
    """

    def __init__(self, limit: int = 256) -> None:
        # Made on the loop: each frame's future and task come from it without asking
        # asyncio for the running loop (a getpid system call each on Python 3.11).
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(limit)
        self._tails: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, call_id: str, work: Coroutine[Any, Any, None]) -> None:
        try:
            await self._slots.acquire()
        except asyncio.CancelledError:
            work.close()  # the connection is closing: the frame was never started
            raise
        previous = self._tails.get(call_id)
        done: asyncio.Future[None] = self._loop.create_future()
        self._tails[call_id] = done
        task = self._loop.create_task(self._run(call_id, previous, done, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, call_id: str, previous: asyncio.Future[None] | None,
                   done: asyncio.Future[None], work: Coroutine[Any, Any, None]) -> None:
        try:
            if previous is not None:
                # Awaited as it is, not shielded (a shield is a future and two callbacks
                # more per chained frame): only this frame waits on it, so a cancellation
                # of this frame that cancels it cancels nobody else's wait.
                await previous
            await work
        except Exception:
            log.exception("serving a frame of call %s failed", call_id)
        finally:
            work.close()  # cancelled before it started (shutdown): dropped, never acked
            if not done.done():  # cancelled by the next frame's cancellation
                done.set_result(None)
            if self._tails.get(call_id) is done:
                del self._tails[call_id]
            self._slots.release()

    def busy(self, call_id: str) -> asyncio.Future[None] | None:
        """Done when the frames of `call_id` read so far are served; None if they are."""
        return self._tails.get(call_id)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class LaneRelay(Relay):
    """What the bus publishes for an integration, in order with the replies to its frames.

    A message about a call that this connection is still serving a frame of is sent
    after that frame's replies. Without it, another node could route a call this node
    was queueing and its `route.connect` reach the PBX before this node's `ack` and
    `route.queued` for the offer (which wait for the database write): the PBX would
    hear "queued" last and stop ringing the agent.
    """

    def __init__(self, conn: Connection, lanes: CallLanes) -> None:
        self._conn = conn
        self._lanes = lanes

    def relay(self, message: dict[str, Any], text: str) -> None:
        call_id = message.get("call_id")
        busy = self._lanes.busy(call_id) if isinstance(call_id, str) else None
        if busy is None:
            self._conn.relay(message, text)
        else:
            busy.add_done_callback(lambda _: self._conn.relay(message, text))


def _call_id(data: str) -> str:
    """The lane of a frame: its call, read cheaply; frames without one share a lane."""
    start = data.find('"call_id"')
    if start < 0:
        return ""
    quote = data.find('"', data.find(":", start) + 1)
    end = data.find('"', quote + 1)
    return data[quote + 1:end] if 0 <= quote < end else ""


async def _serve(app: web.Application, conn: Connection, data: str, integration: str) -> None:
    try:
        frame = inbound.validate_json(data)
    except ValidationError as e:
        conn.send(error_frame(_validation_code(e), describe(e.errors()), _event_id(data)))
        return
    try:
        if isinstance(frame, StateSync):
            conn.send(await app[appkeys.CALLS].state_snapshot(integration))
            return
        if isinstance(frame, ControlResult):
            first = await app[appkeys.CONTROL].result(frame, integration)
            conn.send({"type": "ack", "event_id": frame.event_id, "duplicate": not first})
            return
        outcome = await app[appkeys.CALLS].handle(frame, integration)
    except (CallError, RoutingError) as e:
        log.debug("rejected %s for %s: %s", frame.type, getattr(frame, "call_id", None), e)
        conn.send(error_frame(e.code, str(e), frame.event_id))
        return
    except (RedisError, SQLAlchemyError, OSError) as e:
        # Redis or the database is away: nothing was acknowledged, so the PBX resends.
        log.warning("cannot serve %s now: %s", frame.type, e)
        conn.send(error_frame("unavailable", "storage is unavailable; resend the event",
                              getattr(frame, "event_id", None)))
        return
    except Exception:
        # A fault of ours: the PBX still gets an answer (it may resend), the connection
        # and the other calls go on.
        log.exception("serving %s %s failed", frame.type, getattr(frame, "event_id", None))
        conn.send(error_frame("internal_error", "the event could not be served; resend it",
                              getattr(frame, "event_id", None)))
        return
    conn.send(outcome.ack)
    for reply in outcome.replies:
        conn.send(reply)


def _validation_code(error: ValidationError) -> str:
    kinds = {e["type"] for e in error.errors()}
    if "json_invalid" in kinds or "json_type" in kinds:
        return "bad_json"
    if kinds & {"union_tag_invalid", "union_tag_not_found"}:
        return "unknown_type"
    if "dict_type" in kinds or "model_type" in kinds:
        return "bad_frame"  # valid JSON, but not an object
    return "invalid_field"


def _event_id(data: str) -> str | None:
    """The event id of a rejected frame, when it can be read, so the PBX can match it."""
    import orjson

    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) and len(event_id) <= 200 else None


def setup(app: web.Application) -> None:
    app.router.add_get("/ws/telephony", telephony_ws)
