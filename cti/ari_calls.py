"""Call control over ARI: one call's Asterisk events become protocol frames, and the
gateway's routing decisions become ARI requests.

Every method runs under the call's lock (see `AriAdapter`), so per call they
see events and decisions one at a time, in arrival order.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import Settings
from cti import records
from cti.ari_client import AriClient, AriError
from cti.ari_events import (
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
)
from cti.ari_legs import (
    Legs,
    RouteMessage,
    agent_leg,
    bridge_call,
    caller_cause,
    consult_bridge_call,
    consult_leg,
    event_id,
    monitor_bridge_call,
    monitor_leg,
    offered_frame,
    parse_args,
)
from cti.calls import CallError, StorageUnavailable
from cti.schemas import (
    CallAnswered,
    CallbackRequested,
    CallEnded,
    CallTransferred,
    Frame,
    RecordingReady,
)
from cti.service import CallService, Outcome
from routing.service import RoutingError

log = logging.getLogger(__name__)

GONE = ("ChannelHangupRequest", "StasisEnd", "ChannelDestroyed")
STORE_ATTEMPTS = 5
# Call states with the caller and its agent on the phone (bridged, or consulting).
TALKING = ("connected", "on_hold", "consult_ringing", "consulting", "conference")


@dataclass(frozen=True)
class AriConfig:
    app: str
    endpoint_template: str = "PJSIP/{extension}"
    recordings_dir: Path = Path("/var/spool/asterisk/recording")
    moh_class: str = ""
    transfer_context: str = "callcenter-transfer"
    record: bool = True
    ring_timeout_s: float = 15.0
    callback_digit: str = ""  # a waiting caller's key for a callback ("" = not offered)
    callback_endpoint_template: str = "Local/{number}@callcenter-callback"
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    @classmethod
    def from_settings(cls, s: Settings) -> AriConfig:
        return cls(app=s.ari_app or "", endpoint_template=s.ari_endpoint_template,
                   recordings_dir=s.ari_recordings_dir, moh_class=s.ari_moh_class,
                   transfer_context=s.ari_transfer_context,
                   record=s.ari_record_calls, ring_timeout_s=s.ring_timeout_s,
                   callback_digit=s.ari_callback_digit,
                   callback_endpoint_template=s.ari_callback_endpoint_template)


class CallControl:
    def __init__(self, client: AriClient, calls: CallService, config: AriConfig) -> None:
        self.client, self.calls, self.config = client, calls, config
        self.integration = f"ari:{config.app}"
        self.legs: dict[str, Legs] = {}  # by call id (= the caller's channel id)
        # Where a route.callback answered to the caller's own request goes (the adapter's
        # placing of callbacks, cti/ari_callbacks.py).
        self.on_callback_route: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    # Asterisk events -> frames ------------------------------------------------

    async def offer(self, legs: Legs, event: StasisStart) -> None:
        legs.queue, legs.ivr = parse_args(event.args)
        if event.channel.state != "Up":
            await self._quietly(self.client.answer(legs.call_id))
        frame = offered_frame(legs, event.channel, event_id(event, legs.call_id))
        legs.stored_digits = legs.all_digits()
        outcome = await self._send(frame)
        legs.offered = True
        await self._follow(legs, outcome)

    async def caller_event(self, legs: Legs, event: ChannelEvent) -> None:
        if legs.ended:
            return
        if isinstance(event, ChannelDtmfReceived):
            if self._wants_callback(legs, event):
                await self._request_callback(legs, event)
                return
            await self._store_digits(legs)
        elif event.type in GONE:
            await self._end(legs, caller_cause(legs, event), event_id(event, legs.call_id))
        elif isinstance(event, ChannelEnteredBridge | ChannelLeftBridge):
            legs.caller_bridged = isinstance(event, ChannelEnteredBridge)

    async def agent_event(self, legs: Legs, event: ChannelEvent) -> None:
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
        if not legs.answered or legs.agent_hanging_up or event.bridge.id != legs.bridge_id \
                or legs.consult_agent is not None:  # a consult took it out of the bridge
            return
        assert legs.agent_channel is not None
        eid = event_id(event, legs.agent_channel)
        legs.forget_agent()
        await self.end_monitor(legs)
        outcome = await self._send(CallTransferred(
            type="call.transferred", event_id=eid, call_id=legs.call_id, to_queue=legs.queue))
        await self._follow(legs, outcome)

    def _wants_callback(self, legs: Legs, event: ChannelDtmfReceived) -> bool:
        """The callback key, pressed while the caller waits (offered, no agent ringing)."""
        return bool(self.config.callback_digit) and event.digit == self.config.callback_digit \
            and legs.offered and not legs.answered and legs.agent_channel is None

    async def _request_callback(self, legs: Legs, event: ChannelDtmfReceived) -> None:
        """The caller chose to be called back: once the service kept the callback, the
        caller's line is released (the callback keeps the place)."""
        outcome = await self._send(CallbackRequested(
            type="callback.requested", event_id=event_id(event, legs.call_id),
            call_id=legs.call_id))
        if outcome is None:
            return  # refused (an agent is ringing now, say): the call goes on
        for reply in outcome.replies:
            if reply.get("type") == "route.callback" and self.on_callback_route is not None:
                await self.on_callback_route(reply)
        legs.ended = True
        await self._quietly(self.client.hangup(legs.call_id))
        await self._end_legs(legs)

    async def _store_digits(self, legs: Legs) -> None:
        """Digits pressed after the offer: kept on the call's interaction record."""
        digits = legs.all_digits()
        if not legs.offered or digits == legs.stored_digits:
            return
        legs.stored_digits = digits
        async with self.calls.maker() as session, session.begin():
            await records.set_interaction(session, legs.call_id,
                                          ivr={**legs.ivr, "digits": digits})

    async def recording(self, call_id: str, event: RecordingFinished | RecordingFailed) -> None:
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
        await self._end_legs(legs)

    async def _end_legs(self, legs: Legs) -> None:
        await self.end_monitor(legs)
        if legs.consult_channel:
            await self._quietly(self.client.hangup(legs.consult_channel))
        if legs.consult_agent is not None:
            await self._quietly(self.client.destroy_bridge(legs.consult_bridge_id))
        legs.clear_consult()
        if legs.agent_channel and not legs.agent_hanging_up:
            await self._quietly(self.client.hangup(legs.agent_channel))
        if legs.bridge:
            await self._quietly(self.client.destroy_bridge(legs.bridge))
        self.legs.pop(legs.call_id, None)

    async def send(self, frame: Frame) -> Outcome | None:
        return await self._send(frame)

    async def _send(self, frame: Frame) -> Outcome | None:
        """Apply a frame; None if the gateway refused it. Resent while storage is down,
        as the protocol asks of a PBX."""
        kind = getattr(frame, "type", "frame")
        for attempt in range(STORE_ATTEMPTS):
            try:
                return await self.calls.handle(frame, self.integration)
            except StorageUnavailable as e:
                log.warning("%s for %s: %s (attempt %d)", kind, frame.call_id, e, attempt + 1)
                await asyncio.sleep(0.2 * 2**attempt)
            except (CallError, RoutingError) as e:
                # Telephony is racy: the call may have moved on while this event travelled.
                log.debug("%s for %s not applied: %s", kind, frame.call_id, e)
                return None
        log.error("%s for %s dropped: storage unavailable", kind, frame.call_id)
        return None

    # Routing decisions -> ARI requests --------------------------------------

    async def follow(self, legs: Legs, outcome: Outcome | None) -> None:
        await self._follow(legs, outcome)

    async def release(self, legs: Legs) -> None:
        """The caller left the center (transferred out): release the agent's leg and the
        bridge, and forget the call."""
        legs.ended = True
        await self._end_legs(legs)

    async def _follow(self, legs: Legs, outcome: Outcome | None) -> None:
        for reply in outcome.replies if outcome else []:
            await self.route(legs, RouteMessage.model_validate(reply))

    async def route(self, legs: Legs, route: RouteMessage) -> None:
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

    async def end_monitor(self, legs: Legs) -> None:
        """Tear down a supervisor's monitoring: its snoop channel, the monitor bridge and
        the supervisor's leg. When the call ends, leaves its agent, or is told to stop."""
        monitor, legs.monitor = legs.monitor, None
        if monitor is None:
            return
        if monitor.snoop_channel:
            await self._quietly(self.client.hangup(monitor.snoop_channel))
        if monitor.bridge:
            await self._quietly(self.client.destroy_bridge(monitor.bridge))
        await self._quietly(self.client.hangup(monitor.supervisor_channel))

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

    async def quietly(self, request: Awaitable[None]) -> None:
        """Make a request whose failure is only logged (a channel gone is normal)."""
        await self._quietly(request)

    async def _quietly(self, request: Awaitable[None]) -> None:
        try:
            await request
        except AriError as e:
            level = logging.DEBUG if e.gone else logging.WARNING
            log.log(level, "ARI %s: %s", self.config.app, e)

    # Reconciliation --------------------------------------------------------

    async def reconcile(self, call: dict[str, Any], channels: dict[str, Channel],
                              bridges: dict[str, Bridge]) -> None:
        call_id, state = call["call_id"], call["state"]
        legs = self._rebuild(call, channels, bridges)
        talking = state in TALKING
        if call_id not in channels:
            cause = "normal" if talking else "abandoned"
            await self._end(legs, cause, f"ari:{call_id}:reconciled:gone")
        elif talking and legs.agent_channel is None:
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
        legs = self.legs.get(call_id)
        if legs is None:
            caller = channels.get(call_id)
            legs = Legs(call_id, ani=caller.caller.number if caller else "",
                        queue=call.get("queue") or "default", offered=True)
            legs.agent_id = call.get("agent_id")
            legs.answered = call["state"] in TALKING
            bridge = bridges.get(legs.bridge_id)
            if bridge is not None:
                legs.bridge, legs.caller_bridged = bridge.id, call_id in bridge.channels
                legs.recording = legs.answered
            self.legs[call_id] = legs
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

    async def sweep(self, live: set[str], channels: dict[str, Channel],
                    bridges: dict[str, Bridge]) -> None:
        """Legs and bridges of calls no longer on the phone: forget and release them."""
        for call_id in [c for c, legs in self.legs.items() if legs.offered and c not in live]:
            del self.legs[call_id]
        for channel_id in channels:
            leg = agent_leg(channel_id)
            owner = leg[0] if leg is not None else consult_leg(channel_id)
            if owner is not None and owner not in live:
                await self._quietly(self.client.hangup(channel_id))
        for bridge_id in bridges:
            bridged = bridge_call(bridge_id) or monitor_bridge_call(bridge_id) \
                or consult_bridge_call(bridge_id)
            if bridged is not None and bridged not in live:
                await self._quietly(self.client.destroy_bridge(bridge_id))
        await self._sweep_monitors(channels, bridges)

    async def _sweep_monitors(self, channels: dict[str, Channel],
                              bridges: dict[str, Bridge]) -> None:
        """Monitoring legs the adapter does not know (its call ended, or the adapter
        restarted and forgot them): hung up, and their bridges destroyed."""
        known = {c for legs in self.legs.values() if legs.monitor is not None
                 for c in (legs.monitor.supervisor_channel, legs.monitor.snoop_channel) if c}
        for channel_id in channels:
            if monitor_leg(channel_id) is not None and channel_id not in known:
                await self._quietly(self.client.hangup(channel_id))
        for bridge_id in bridges:
            call_id = monitor_bridge_call(bridge_id)
            legs = self.legs.get(call_id) if call_id is not None else None
            if call_id is not None and (legs is None or legs.monitor is None):
                await self._quietly(self.client.destroy_bridge(bridge_id))
