"""The Asterisk ARI adapter: the telephony gateway's edge for a PBX that speaks ARI.

Like `cti/gateway.py` it turns what the PBX says into protocol frames for
`CallService.handle`; but here we connect to Asterisk's event websocket as the
Stasis application, and carry out routing decisions (`route.connect`,
`route.queued`) over ARI's REST API (`cti/ari_calls.py`). See docs/asterisk.md.

Events and routing decisions are handled one at a time per call, in arrival
order, and concurrently across calls. Asterisk does not queue events for a
disconnected application, so after every (re)connect the adapter re-reads
channels and bridges and reconciles them with the calls the gateway holds for
this integration.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from pydantic import BaseModel, ValidationError

from core import appkeys
from core.bus import Bus
from core.keys import Keys
from core.redisconn import log_failure
from cti.ari_callbacks import AriCallbacks, CallbackMessage, callback_leg, is_callback
from cti.ari_calls import AriConfig, CallControl
from cti.ari_client import AriClient, AriError
from cti.ari_control import AriCommands, ControlMessage
from cti.ari_events import (
    ApplicationReplaced,
    BadEvent,
    Bridge,
    Channel,
    ChannelDtmfReceived,
    ChannelEvent,
    RecordingFailed,
    RecordingFinished,
    StasisStart,
    parse_event,
)
from cti.ari_legs import (
    Legs,
    RouteMessage,
    agent_leg,
    consult_leg,
    is_agent_start,
    is_consult_start,
    is_monitor_start,
    monitor_leg,
    recording_call,
)
from cti.ari_monitor import AriMonitor, MonitorMessage
from cti.control import ControlService
from cti.monitor import MonitorService
from cti.service import CallService

log = logging.getLogger(__name__)

# Gateway states in which the call still has a caller on the line.
PHONE_STATES = ("offered", "queued", "ringing", "connected", "on_hold", "consult_ringing",
                "consulting", "conference")

__all__ = ["AriAdapter", "AriConfig", "ari_ctx"]


class AriAdapter:
    def __init__(self, client: AriClient, calls: CallService, bus: Bus, keys: Keys,
                 config: AriConfig, commands: ControlService,
                 monitors: MonitorService | None = None) -> None:
        self.client, self.calls, self.bus, self.config = client, calls, bus, config
        self.control = CallControl(client, calls, config)
        self.commands = AriCommands(self.control, commands)
        self.monitor = AriMonitor(self.control, self.commands, monitors)
        self.callbacks = AriCallbacks(self.control, config.callback_endpoint_template)
        self.control.on_callback_route = self._on_route
        self._bus_channel = keys.telephony_channel(self.control.integration)
        self._locks: dict[str, asyncio.Lock] = {}
        self._pending: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()  # connected and reconciled

    # Connection ---------------------------------------------------------

    async def run(self) -> None:
        """Hold the event socket until cancelled or replaced, reconnecting with backoff."""
        await self.bus.subscribe(self._bus_channel, self._on_route)
        try:
            delay = self.config.backoff_initial_s
            while True:
                try:
                    ws = await self.client.connect_events()
                except (aiohttp.ClientError, OSError, TimeoutError) as e:
                    log.warning("ARI %s: cannot connect (%s)", self.config.app, e)
                else:
                    served = await self._session(ws)
                    if served == "replaced":
                        return
                    if served == "served":
                        delay = self.config.backoff_initial_s
                log.info("ARI %s: reconnecting in %.1f s", self.config.app, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.backoff_max_s)
        finally:
            await self.bus.unsubscribe(self._bus_channel, self._on_route)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _session(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Serve one event socket: "served", "failed" (before serving) or "replaced"."""
        log.info("ARI %s: event socket connected", self.config.app)
        try:
            await self._reconcile()
            self.ready.set()
            async for msg in ws:
                if msg.type is WSMsgType.TEXT and not self._on_message(msg.data):
                    return "replaced"
                if msg.type is WSMsgType.ERROR:
                    log.warning("ARI %s: event socket error: %s", self.config.app, ws.exception())
        except AriError as e:
            log.warning("ARI %s: reconciliation failed (%s)", self.config.app, e)
            return "failed"
        finally:
            self.ready.clear()
            await ws.close()
        log.warning("ARI %s: event socket closed", self.config.app)
        return "served"

    def _on_message(self, data: str) -> bool:
        try:
            event = parse_event(data)
        except BadEvent as e:
            log.warning("ARI %s: malformed event ignored: %s", self.config.app, e)
            return True
        if isinstance(event, ApplicationReplaced):
            # Reconnecting would take the app back and the two would flap; one owner only.
            log.error("ARI application %s was taken over by another websocket; this adapter "
                      "stops. Run one adapter per Stasis application.", self.config.app)
            return False
        if isinstance(event, RecordingFinished | RecordingFailed):
            call_id = recording_call(event.recording.name)
            if call_id is not None:
                self._submit(call_id, self.control.recording, call_id, event)
        elif event is not None:
            self._dispatch(event)
        return True

    def _dispatch(self, event: ChannelEvent) -> None:
        """Hand a channel event to its call: as the caller's, or as an agent leg's."""
        channel, legs_by_call = event.channel, self.control.legs
        if channel is None:
            return
        placed = callback_leg(channel.id)
        if placed is not None:
            self._submit(placed[0], self.callbacks.event, *placed, event)
            return
        call_id = monitor_leg(channel.id)
        if call_id is not None or isinstance(event, StasisStart) and is_monitor_start(
                event.args):
            self._monitor_event(call_id, event)
            return
        consulted = consult_leg(channel.id)
        if consulted is not None or isinstance(event, StasisStart) and is_consult_start(
                event.args):
            self._consult_event(consulted, event)
            return
        if isinstance(event, StasisStart) and not is_agent_start(event.args):
            if channel.id not in legs_by_call:
                new = legs_by_call[channel.id] = Legs(channel.id, ani=channel.caller.number)
                self._submit(channel.id, self.control.offer, new, event)
            return
        legs = legs_by_call.get(channel.id)
        if legs is not None:
            if isinstance(event, ChannelDtmfReceived):
                legs.digits += event.digit  # seen now, so an offer still being made carries it
            self._submit(legs.call_id, self.control.caller_event, legs, event)
            return
        leg = agent_leg(channel.id)
        if leg is not None and leg[0] in legs_by_call:
            self._submit(leg[0], self.control.agent_event, legs_by_call[leg[0]], event)

    def _consult_event(self, call_id: str | None, event: ChannelEvent) -> None:
        """A consulted agent's leg: to its call's consult; one of no call is hung up."""
        legs = self.control.legs.get(call_id) if call_id is not None else None
        if legs is not None:
            self._submit(legs.call_id, self.commands.consult.event, legs, event)
        elif isinstance(event, StasisStart) and event.channel is not None:
            self._submit(event.channel.id, self.control.quietly,
                         self.client.hangup(event.channel.id))

    def _monitor_event(self, call_id: str | None, event: ChannelEvent) -> None:
        """A supervisor's leg or a snoop channel: to its call's monitoring; one the
        adapter does not know (another's, or a stray) is hung up when it starts."""
        legs = self.control.legs.get(call_id) if call_id is not None else None
        if legs is not None:
            self._submit(legs.call_id, self.monitor.event, legs, event)
        elif isinstance(event, StasisStart) and event.channel is not None:
            self._submit(event.channel.id, self.control.quietly,
                         self.client.hangup(event.channel.id))

    async def _on_route(self, message: dict[str, Any]) -> None:
        """A routing decision published later (an agent freed up, a ring timed out), a
        desktop's call-control command (`route.control`), or a callback to place
        (`route.callback`)."""
        commands: dict[str, tuple[type[BaseModel], str, Callable[..., Awaitable[None]]]] = {
            "route.monitor": (MonitorMessage, "call_id", self.monitor.carry_out),
            "route.callback": (CallbackMessage, "callback_id", self.callbacks.place),
            "route.control": (ControlMessage, "call_id", self.commands.carry_out),
        }
        kind = message.get("type")
        if isinstance(kind, str) and kind in commands:
            model, key, carry_out = commands[kind]
            try:
                command = model.model_validate(message)
            except ValidationError as e:
                log.warning("ARI %s: malformed %s ignored: %s", self.config.app, kind, e)
                return
            self._submit(getattr(command, key), carry_out, command)
            return
        try:
            route = RouteMessage.model_validate(message)
        except ValidationError:
            return  # not a routing instruction
        self._submit(route.call_id, self._route_later, route)

    async def _route_later(self, route: RouteMessage) -> None:
        legs = self.control.legs.get(route.call_id)
        if legs is not None and not legs.ended:
            await self.control.route(legs, route)

    # Ordering: one task per event, serialized per call by that call's lock ------

    def _submit(self, key: str, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        self._pending[key] += 1
        task = asyncio.create_task(self._serial(key, fn, *args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serial_now(self, key: str, fn: Callable[..., Awaitable[None]],
                          *args: Any) -> None:
        self._pending[key] += 1
        await self._serial(key, fn, *args)

    async def _serial(self, key: str, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                await fn(*args)
        except Exception:
            log_failure(log, "ARI %s: handling for call %s failed", self.config.app, key)
        finally:
            self._pending[key] -= 1
            if self._pending[key] <= 0:
                del self._pending[key]
                self._locks.pop(key, None)

    # Reconciliation after (re)connecting -------------------------------------

    async def _reconcile(self) -> None:
        channels = {c.id: c for c in await self.client.channels()}
        bridges = {b.id: b for b in await self.client.bridges()}
        snapshot = await self.calls.state_snapshot(self.control.integration)
        calls = [c for c in snapshot["calls"] if c["state"] in PHONE_STATES]
        for call in calls:
            if is_callback(call["call_id"], channels, self.callbacks.placing):
                await self._serial_now(call["call_id"], self.callbacks.reconcile, call, channels)
                continue
            await self._serial_now(call["call_id"], self._reconcile_call, call, channels,
                                   bridges)
        # Callbacks being placed keep their legs and bridge too.
        await self.control.sweep({c["call_id"] for c in calls} | set(self.callbacks.placing),
                                 channels, bridges)
        log.info("ARI %s: reconciled %d live calls with %d channels", self.config.app,
                 len(calls), len(channels))


    async def _reconcile_call(self, call: dict[str, Any], channels: dict[str, Channel],
                              bridges: dict[str, Bridge]) -> None:
        await self.control.reconcile(call, channels, bridges)
        legs = self.control.legs.get(call["call_id"])
        if legs is not None and not legs.ended:
            await self.commands.consult.reconcile(legs, call["state"], channels)


async def ari_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the adapter when ARI is configured (CALLCENTER_ARI_URL, _USER, _PASSWORD, _APP)."""
    s = app[appkeys.SETTINGS]
    wanted = (s.ari_url, s.ari_user, s.ari_password, s.ari_app)
    if not all(wanted):
        if any(wanted):
            log.warning("ARI adapter not started: set CALLCENTER_ARI_URL, CALLCENTER_ARI_USER, "
                        "CALLCENTER_ARI_PASSWORD and CALLCENTER_ARI_APP together")
        yield
        return
    client = AriClient(s.ari_url or "", s.ari_user or "", s.ari_password or "", s.ari_app or "")
    adapter = AriAdapter(client, app[appkeys.CALLS], app[appkeys.BUS], app[appkeys.KEYS],
                         AriConfig.from_settings(s), app[appkeys.CONTROL],
                         app[appkeys.MONITOR])
    app[appkeys.ARI] = adapter
    supervisor = app[appkeys.SUPERVISOR]
    task = supervisor.start("ari", adapter.run)
    yield
    await supervisor.stop(task)
    await client.close()
