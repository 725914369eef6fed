"""The Asterisk ARI adapter: the telephony gateway's edge for a PBX that speaks ARI.

Like `cti/gateway.py` it turns what the PBX says into protocol frames for
`CallService.handle`; instead of a PBX connecting to us, we connect to Asterisk's
event websocket as the Stasis application and carry out routing decisions
(`route.connect`, `route.queued`) over ARI's REST API. See docs/asterisk.md.

Events are handled one at a time per call (in arrival order) and concurrently
across calls. Asterisk does not queue events for a disconnected application, so
after every (re)connect the adapter re-reads channels and bridges and reconciles
them with the calls the gateway holds for this integration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from pydantic import ValidationError

from callcenter import appkeys
from callcenter.bus import Bus
from callcenter.keys import Keys
from callcenter.settings import Settings
from cti import records
from cti.ari_client import AriClient, AriError
from cti.ari_events import (
    ApplicationReplaced,
    BadEvent,
    Bridge,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelEnteredBridge,
    ChannelEvent,
    ChannelHangupRequest,
    ChannelLeftBridge,
    ChannelStateChange,
    RecordingFailed,
    RecordingFinished,
    StasisStart,
    parse_event,
)
from cti.ari_legs import (
    Legs,
    RouteMessage,
    agent_leg,
    bridge_call,
    caller_cause,
    event_id,
    is_agent_start,
    offered_frame,
    parse_args,
    recording_call,
)
from cti.calls import CallError
from cti.schemas import CallAnswered, CallEnded, CallTransferred, Frame, RecordingReady
from cti.service import CallService, Outcome
from routing.service import RoutingError

log = logging.getLogger(__name__)

GONE = ("ChannelHangupRequest", "StasisEnd", "ChannelDestroyed")
# Gateway states in which the call still has a caller on the line.
PHONE_STATES = ("offered", "queued", "ringing", "connected")


@dataclass(frozen=True)
class AriConfig:
    app: str
    endpoint_template: str = "PJSIP/{extension}"
    recordings_dir: Path = Path("/var/spool/asterisk/recording")
    moh_class: str = ""
    record: bool = True
    ring_timeout_s: float = 15.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    @classmethod
    def from_settings(cls, s: Settings) -> AriConfig:
        return cls(app=s.ari_app or "", endpoint_template=s.ari_endpoint_template,
                   recordings_dir=s.ari_recordings_dir, moh_class=s.ari_moh_class,
                   record=s.ari_record_calls, ring_timeout_s=s.ring_timeout_s)


class AriAdapter:
    def __init__(self, client: AriClient, calls: CallService, bus: Bus, keys: Keys,
                 config: AriConfig) -> None:
        self.client, self.calls, self.bus, self.config = client, calls, bus, config
        self.integration = f"ari:{config.app}"
        self._bus_channel = keys.telephony_channel(self.integration)
        self._legs: dict[str, Legs] = {}
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
                self._submit(call_id, self._recording, call_id, event)
        elif event is not None:
            self._dispatch(event)
        return True

    # Ordering: one task per event, serialized per call by that call's lock ------

    def _submit(self, key: str, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        self._pending[key] += 1
        task = asyncio.create_task(self._serial(key, fn, *args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serial(self, key: str, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                await fn(*args)
        except Exception:
            log.exception("ARI %s: handling for call %s failed", self.config.app, key)
        finally:
            self._pending[key] -= 1
            if self._pending[key] <= 0:
                del self._pending[key]
                self._locks.pop(key, None)

    # Events -> frames -----------------------------------------------------

    def _dispatch(self, event: ChannelEvent) -> None:
        channel = event.channel
        if channel is None:
            return
        if isinstance(event, StasisStart) and not is_agent_start(event.args):
            if channel.id not in self._legs:
                legs = self._legs[channel.id] = Legs(channel.id, ani=channel.caller.number)
                self._submit(channel.id, self._offer, legs, event)
            return
        legs = self._legs.get(channel.id)
        if legs is not None:
            if isinstance(event, ChannelDtmfReceived):
                legs.digits += event.digit  # seen now, so an offer still being made carries it
            self._submit(legs.call_id, self._caller_event, legs, event)
            return
        leg = agent_leg(channel.id)
        if leg is not None and leg[0] in self._legs:
            self._submit(leg[0], self._agent_event, self._legs[leg[0]], event)

    async def _offer(self, legs: Legs, event: StasisStart) -> None:
        legs.queue, legs.ivr = parse_args(event.args)
        if event.channel.state != "Up":
            await self._quietly(self.client.answer(legs.call_id))
        frame = offered_frame(legs, event.channel, event_id(event, legs.call_id))
        legs.stored_digits = legs.all_digits()
        outcome = await self._send(frame)
        legs.offered = True
        await self._follow(legs, outcome)

    async def _caller_event(self, legs: Legs, event: ChannelEvent) -> None:
        if legs.ended:
            return
        if isinstance(event, ChannelDtmfReceived):
            await self._store_digits(legs)
        elif event.type in GONE:
            await self._end(legs, caller_cause(legs, event), event_id(event, legs.call_id))
        elif isinstance(event, ChannelEnteredBridge | ChannelLeftBridge):
            legs.caller_bridged = isinstance(event, ChannelEnteredBridge)

    async def _agent_event(self, legs: Legs, event: ChannelEvent) -> None:
        channel = event.channel
        assert channel is not None
        if channel.id != legs.agent_channel:
            if isinstance(event, StasisStart):
                # Answered after the call moved on to another agent or back to the queue.
                await self._quietly(self.client.hangup(channel.id))
            return
        if isinstance(event, ChannelStateChange) and channel.state == "Up":
            await self._answered(legs, event)
        elif isinstance(event, StasisStart):
            await self._bridge_agent(legs)
        elif isinstance(event, ChannelEnteredBridge) and not legs.answered:
            await self._answered(legs, event)  # the state change was missed
        elif isinstance(event, ChannelLeftBridge):
            await self._transferred(legs, event)
        elif event.type in GONE:
            await self._agent_gone(legs, event)

    async def _answered(self, legs: Legs, event: ChannelEvent) -> None:
        if legs.answered or legs.agent_id is None or legs.agent_channel is None:
            return
        outcome = await self._send(CallAnswered(
            type="call.answered", event_id=event_id(event, legs.agent_channel),
            call_id=legs.call_id, agent_id=legs.agent_id))
        if outcome is None:  # the gateway gave the call to someone else meanwhile
            await self._quietly(self.client.hangup(legs.agent_channel))
            legs.forget_agent()
            return
        legs.answered = True

    async def _agent_gone(self, legs: Legs, event: ChannelEvent) -> None:
        assert legs.agent_channel is not None
        if isinstance(event, ChannelHangupRequest):
            legs.agent_hanging_up = True
        if legs.answered:
            await self._end(legs, "agent_hangup", event_id(event, legs.agent_channel),
                            hang_up_caller=True)
        elif isinstance(event, ChannelDestroyed):
            # Busy, rejected or unanswered: the gateway's ring timeout routes the call on.
            log.info("call %s: agent %s leg ended unanswered (%s)", legs.call_id,
                     legs.agent_id, event.cause_txt)
            legs.forget_agent()

    async def _transferred(self, legs: Legs, event: ChannelLeftBridge) -> None:
        """The agent's leg left the bridge without hanging up: the call goes back to routing."""
        if not legs.answered or legs.agent_hanging_up or event.bridge.id != legs.bridge_id:
            return
        assert legs.agent_channel is not None
        eid = event_id(event, legs.agent_channel)
        legs.forget_agent()
        outcome = await self._send(CallTransferred(
            type="call.transferred", event_id=eid, call_id=legs.call_id, to_queue=legs.queue))
        await self._follow(legs, outcome)

    async def _store_digits(self, legs: Legs) -> None:
        """Digits pressed after the offer: kept on the call's interaction record."""
        digits = legs.all_digits()
        if not legs.offered or digits == legs.stored_digits:
            return
        legs.stored_digits = digits
        async with self.calls.maker() as session, session.begin():
            await records.set_interaction(session, legs.call_id,
                                          ivr={**legs.ivr, "digits": digits})

    async def _recording(self, call_id: str, event: RecordingFinished | RecordingFailed) -> None:
        rec = event.recording
        if isinstance(event, RecordingFailed):
            log.warning("call %s: recording %s failed (%s)", call_id, rec.name, rec.cause)
            return
        path = self.config.recordings_dir / f"{rec.name}.{rec.format}"
        await self._send(RecordingReady(
            type="recording.ready", event_id=f"ari:{rec.name}:{event.type}:{event.timestamp}",
            call_id=call_id, path=str(path)))

    async def _end(self, legs: Legs, cause: str, eid: str, hang_up_caller: bool = False) -> None:
        if legs.ended:
            return
        legs.ended = True
        await self._send(CallEnded(type="call.ended", event_id=eid, call_id=legs.call_id,
                                   cause=cause))  # type: ignore[arg-type]
        if hang_up_caller:
            await self._quietly(self.client.hangup(legs.call_id))
        if legs.agent_channel and not legs.agent_hanging_up:
            await self._quietly(self.client.hangup(legs.agent_channel))
        if legs.bridge:
            await self._quietly(self.client.destroy_bridge(legs.bridge))
        self._legs.pop(legs.call_id, None)

    async def _send(self, frame: Frame) -> Outcome | None:
        try:
            return await self.calls.handle(frame, self.integration)
        except (CallError, RoutingError) as e:
            # Telephony is racy: the call may have moved on while this event travelled.
            log.debug("%s for %s not applied: %s", frame.type, frame.call_id, e)  # type: ignore[attr-defined]
            return None

    # Routing decisions -> ARI requests --------------------------------------

    async def _on_route(self, message: dict[str, Any]) -> None:
        try:
            route = RouteMessage.model_validate(message)
        except ValidationError:
            return  # not a routing instruction
        self._submit(route.call_id, self._route_later, route)

    async def _route_later(self, route: RouteMessage) -> None:
        legs = self._legs.get(route.call_id)
        if legs is not None and not legs.ended:
            await self._route(legs, route)

    async def _follow(self, legs: Legs, outcome: Outcome | None) -> None:
        for reply in outcome.replies if outcome else []:
            await self._route(legs, RouteMessage.model_validate(reply))

    async def _route(self, legs: Legs, route: RouteMessage) -> None:
        if route.type == "route.queued":
            await self._queue(legs)
        elif route.agent_id is not None:
            await self._connect(legs, route.agent_id, route.extension)

    async def _queue(self, legs: Legs) -> None:
        if legs.agent_channel and not legs.answered:
            await self._quietly(self.client.hangup(legs.agent_channel))  # stop ringing
            legs.forget_agent()
        if legs.moh:
            return
        if legs.caller_bridged:
            await self._quietly(self.client.start_bridge_moh(legs.bridge_id,
                                                             self.config.moh_class))
            legs.moh = "bridge"
        else:
            await self._quietly(self.client.start_moh(legs.call_id, self.config.moh_class))
            legs.moh = "channel"

    async def _connect(self, legs: Legs, agent_id: int, extension: str) -> None:
        if legs.agent_channel and legs.agent_id == agent_id:
            return  # already ringing this agent
        if legs.agent_channel:
            await self._quietly(self.client.hangup(legs.agent_channel))
        legs.forget_agent()
        legs.agent_id = agent_id
        if not extension:
            log.warning("agent %s has no extension to ring for call %s", agent_id, legs.call_id)
            return  # the ring timeout routes the call on
        channel_id = legs.new_agent_channel(agent_id)
        try:
            await self.client.originate(
                self.config.endpoint_template.format(extension=extension),
                channel_id=channel_id, app_args=f"agent,{legs.call_id},{agent_id}",
                caller_id=legs.ani, timeout_s=math.ceil(self.config.ring_timeout_s) + 5)
            legs.agent_channel = channel_id
            await self.client.create_bridge(legs.bridge_id, name=legs.call_id)
            legs.bridge = legs.bridge_id
        except AriError as e:
            await self._failed(legs, e)

    async def _bridge_agent(self, legs: Legs) -> None:
        """The agent answered and entered the app: stop the music and join the two legs."""
        assert legs.agent_channel is not None
        await self._stop_moh(legs)
        joining = [legs.agent_channel] if legs.caller_bridged else [legs.call_id,
                                                                     legs.agent_channel]
        try:
            await self.client.add_channels(legs.bridge_id, joining)
        except AriError as e:
            await self._failed(legs, e)
            return
        legs.caller_bridged = True
        if self.config.record and not legs.recording:
            legs.recording = True
            await self._quietly(self.client.record_bridge(legs.bridge_id, legs.recording_name))

    async def _stop_moh(self, legs: Legs) -> None:
        if legs.moh == "channel":
            await self._quietly(self.client.stop_moh(legs.call_id))
        elif legs.moh == "bridge":
            await self._quietly(self.client.stop_bridge_moh(legs.bridge_id))
        legs.moh = None

    async def _failed(self, legs: Legs, error: AriError) -> None:
        if error.gone:
            log.debug("call %s: a leg vanished (%s)", legs.call_id, error)
            return  # its hangup events end the call
        if legs.agent_channel is None:
            # Could not ring the agent: the gateway's ring timeout routes the call on.
            log.warning("call %s: cannot ring agent %s: %s", legs.call_id, legs.agent_id, error)
            return
        log.error("call %s: cannot connect the caller to agent %s (%s); hanging up",
                  legs.call_id, legs.agent_id, error)
        await self._end(legs, "failed", f"ari:{legs.call_id}:failed:{legs.agent_channel}",
                        hang_up_caller=True)

    async def _quietly(self, request: Awaitable[None]) -> None:
        try:
            await request
        except AriError as e:
            level = logging.DEBUG if e.gone else logging.WARNING
            log.log(level, "ARI %s: %s", self.config.app, e)

    # Reconciliation after (re)connecting -------------------------------------

    async def _reconcile(self) -> None:
        channels = {c.id: c for c in await self.client.channels()}
        bridges = {b.id: b for b in await self.client.bridges()}
        snapshot = await self.calls.state_snapshot(self.integration)
        live = {c["call_id"] for c in snapshot["calls"] if c["state"] in PHONE_STATES}
        for call in snapshot["calls"]:
            if call["call_id"] in live:
                await self._serial_now(call["call_id"], self._reconcile_call, call, channels,
                                       bridges)
        await self._sweep(live, channels, bridges)
        log.info("ARI %s: reconciled %d live calls with %d channels", self.config.app,
                 len(live), len(channels))

    async def _serial_now(self, key: str, fn: Callable[..., Awaitable[None]],
                          *args: Any) -> None:
        self._pending[key] += 1
        await self._serial(key, fn, *args)

    async def _reconcile_call(self, call: dict[str, Any], channels: dict[str, Channel],
                              bridges: dict[str, Bridge]) -> None:
        call_id, state = call["call_id"], call["state"]
        legs = self._rebuild(call, channels, bridges)
        if call_id not in channels:
            cause = "normal" if state == "connected" else "abandoned"
            await self._end(legs, cause, f"ari:{call_id}:reconciled:gone")
        elif state == "connected" and legs.agent_channel is None:
            await self._end(legs, "agent_hangup", f"ari:{call_id}:reconciled:agent-gone",
                            hang_up_caller=True)
        elif state == "ringing" and legs.agent_channel and (
                channels[legs.agent_channel].state == "Up"):
            await self._answered_while_away(legs)
        elif state == "queued" and not legs.moh:
            await self._queue(legs)

    def _rebuild(self, call: dict[str, Any], channels: dict[str, Channel],
                 bridges: dict[str, Bridge]) -> Legs:
        call_id = call["call_id"]
        legs = self._legs.get(call_id)
        if legs is None:
            caller = channels.get(call_id)
            legs = Legs(call_id, ani=caller.caller.number if caller else "",
                        queue=call.get("queue") or "default", offered=True)
            legs.agent_id = call.get("agent_id")
            legs.answered = call["state"] == "connected"
            bridge = bridges.get(legs.bridge_id)
            if bridge is not None:
                legs.bridge, legs.caller_bridged = bridge.id, call_id in bridge.channels
                legs.recording = legs.answered
            self._legs[call_id] = legs
        if legs.agent_channel not in channels:
            legs.agent_channel = next(
                (c for c in channels if agent_leg(c) == (call_id, legs.agent_id)), None)
        return legs

    async def _answered_while_away(self, legs: Legs) -> None:
        assert legs.agent_channel is not None
        outcome = await self._send(CallAnswered(
            type="call.answered", event_id=f"ari:{legs.agent_channel}:reconciled:up",
            call_id=legs.call_id, agent_id=legs.agent_id or 0))
        legs.answered = outcome is not None
        if legs.answered:
            await self._bridge_agent(legs)

    async def _sweep(self, live: set[str], channels: dict[str, Channel],
                     bridges: dict[str, Bridge]) -> None:
        """Agent legs and bridges of calls no longer on the phone: release them."""
        for call_id in [c for c, legs in self._legs.items() if legs.offered and c not in live]:
            del self._legs[call_id]
        for channel_id in channels:
            leg = agent_leg(channel_id)
            if leg is not None and leg[0] not in live:
                await self._quietly(self.client.hangup(channel_id))
        for bridge_id in bridges:
            call_id = bridge_call(bridge_id)
            if call_id is not None and call_id not in live:
                await self._quietly(self.client.destroy_bridge(bridge_id))


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
                         AriConfig.from_settings(s))
    app[appkeys.ARI] = adapter
    task = asyncio.create_task(adapter.run(), name="ari")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await client.close()
