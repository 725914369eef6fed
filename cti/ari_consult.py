"""Consult transfer and conference over ARI (docs/asterisk.md, "Consult transfer").

- consult (`transfer`, `mode: consult`): the caller is held (`POST /channels/{caller}/hold`)
  alone in the call's bridge; the agent's leg moves into a new consult bridge
  (`<call id>-consult`) and the consulted agent's phone is originated into the application
  (`<call id>-consult-<agent id>-<6 hex>`, appArgs `consult,<call id>,<agent id>`). Its
  StasisStart (answered) puts it in the consult bridge: `consult.answered`.
- consult.complete: the consulted leg moves into the call's bridge beside the caller (taken
  off hold), the first agent's leg is hung up and the consulted leg is the call's agent
  leg from then on: `consult.completed`.
- consult.cancel: the consulted leg is hung up, the agent's leg goes back to the call's
  bridge and the caller off hold: `consult.ended` (after the consulted agent's
  ring-no-answer, `reason: no_answer`: `call.resumed`).
- conference: both agents' legs join the call's (mixing) bridge, the caller off hold:
  `conference.started`; the consulted leg hanging up then is `consult.ended`.
- the consulted agent hanging up during the consult: the agent back with the caller,
  `consult.ended` (cause `hangup`). Unanswered (busy, rejected), its leg is only
  forgotten: the service's ring timer decides, and cancels.
"""

from __future__ import annotations

import logging
import math
from typing import Protocol

from cti.ari_calls import GONE, CallControl
from cti.ari_client import AriError
from cti.ari_events import Channel, ChannelEvent, StasisStart
from cti.ari_legs import Legs
from cti.schemas import (
    CallResumed,
    ConferenceStarted,
    ConsultAnswered,
    ConsultCompleted,
    ConsultEnded,
    Frame,
)


class ControlMessage(Protocol):
    """What of a `route.control` a consult reads (cti/ari_control.py)."""

    @property
    def to_agent_id(self) -> int | None: ...
    @property
    def to_extension(self) -> str: ...
    @property
    def reason(self) -> str: ...

log = logging.getLogger(__name__)

CONSULT_STATES = ("consult_ringing", "consulting", "conference")


class ConsultRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AriConsult:
    def __init__(self, control: CallControl) -> None:
        self.control = control
        self.client = control.client

    # Commands ---------------------------------------------------------------

    async def start(self, legs: Legs, command: ControlMessage) -> None:
        """Hold the caller, take the agent into a consult bridge, ring the colleague."""
        a, b = legs.agent_channel, command.to_agent_id
        if a is None or b is None:
            raise ConsultRefused("no_agent_leg")
        if not command.to_extension:
            raise ConsultRefused("no_extension")
        legs.consult_agent, legs.consult_channel = b, legs.new_consult_channel(b)
        try:
            await self.client.hold(legs.call_id)
            await self.client.create_bridge(legs.consult_bridge_id, name=legs.call_id)
            await self.client.remove_channels(legs.bridge_id, [a])
            await self.client.add_channels(legs.consult_bridge_id, [a])
            await self.client.originate(
                self.control.config.endpoint_template.format(extension=command.to_extension),
                channel_id=legs.consult_channel, app_args=f"consult,{legs.call_id},{b}",
                caller_id=legs.ani, timeout_s=math.ceil(self.control.config.ring_timeout_s) + 5)
        except AriError:
            await self._back_to_agent(legs)
            raise

    async def complete(self, legs: Legs, eid: str) -> Frame:
        """The caller to the consulted agent; the first agent's leg hung up."""
        b, b_channel = legs.consult_agent, legs.consult_channel
        if b is None or b_channel is None or not legs.consult_answered:
            raise ConsultRefused("consult_not_answered")
        if not legs.conference:
            await self._quietly_remove(legs.consult_bridge_id, b_channel)
            await self.client.add_channels(legs.bridge_id, [b_channel])
            await self.client.unhold(legs.call_id)
        old = legs.agent_channel
        legs.forget_agent()  # its hangup is no longer the call's end
        legs.agent_id, legs.agent_channel, legs.answered = b, b_channel, True
        legs.clear_consult()
        await self.control.end_monitor(legs)  # the monitoring was of the first agent's leg
        if old is not None:
            await self.control.quietly(self.client.hangup(old))
        await self.control.quietly(self.client.destroy_bridge(legs.consult_bridge_id))
        return ConsultCompleted(type="consult.completed", event_id=eid, call_id=legs.call_id,
                                agent_id=b)

    async def cancel(self, legs: Legs, command: ControlMessage, eid: str) -> Frame:
        """The consulted leg hung up, the agent back with the caller."""
        b = legs.consult_agent
        await self._drop_consulted(legs)
        await self._back_to_agent(legs)
        if command.reason == "no_answer":  # the service decided: the caller back, on hold
            return CallResumed(type="call.resumed", event_id=eid, call_id=legs.call_id)
        return ConsultEnded(type="consult.ended", event_id=eid, call_id=legs.call_id,
                            agent_id=b, cause="cancelled")

    async def conference(self, legs: Legs, eid: str) -> Frame:
        """All three in the call's mixing bridge."""
        a, b_channel = legs.agent_channel, legs.consult_channel
        if a is None or b_channel is None or not legs.consult_answered:
            raise ConsultRefused("consult_not_answered")
        await self._quietly_remove(legs.consult_bridge_id, a, b_channel)
        await self.client.add_channels(legs.bridge_id, [a, b_channel])
        await self.client.unhold(legs.call_id)
        legs.conference = True
        await self.control.quietly(self.client.destroy_bridge(legs.consult_bridge_id))
        return ConferenceStarted(type="conference.started", event_id=eid, call_id=legs.call_id)

    # The consulted leg's events ---------------------------------------------------

    async def event(self, legs: Legs, event: ChannelEvent) -> None:
        channel = event.channel
        assert channel is not None
        if channel.id == legs.agent_channel:  # a completed consult: the call's agent now
            await self.control.agent_event(legs, event)
            return
        if channel.id != legs.consult_channel:
            if isinstance(event, StasisStart):  # answered after the consult was over
                await self.control.quietly(self.client.hangup(channel.id))
            return
        if isinstance(event, StasisStart):
            await self._answered(legs, channel)
        elif event.type in GONE:
            await self._consulted_gone(legs, channel)

    async def _answered(self, legs: Legs, channel: Channel) -> None:
        if legs.consult_answered or legs.consult_agent is None:
            return
        try:
            await self.client.add_channels(legs.consult_bridge_id, [channel.id])
        except AriError as e:
            log.warning("call %s: consulted leg not bridged: %s", legs.call_id, e)
            return
        legs.consult_answered = True
        await self.control.send(ConsultAnswered(
            type="consult.answered", event_id=f"ari:{channel.id}:answered",
            call_id=legs.call_id, agent_id=legs.consult_agent))

    async def _consulted_gone(self, legs: Legs, channel: Channel) -> None:
        if not legs.consult_answered:
            legs.consult_channel = None  # busy or rejected: the service's ring timer decides
            return
        b = legs.consult_agent
        legs.consult_channel = None
        await self._back_to_agent(legs)
        await self.control.send(ConsultEnded(
            type="consult.ended", event_id=f"ari:{channel.id}:gone", call_id=legs.call_id,
            agent_id=b, cause="hangup"))

    # Reconciliation -----------------------------------------------------------------

    async def reconcile(self, legs: Legs, state: str, channels: dict[str, Channel]) -> None:
        """After a lost event socket: a consulted leg answered meanwhile is bridged and
        reported; one that vanished while talking ends the consult."""
        channel = channels.get(legs.consult_channel or "")
        if state == "consult_ringing" and channel is not None and channel.state == "Up":
            await self._answered(legs, channel)
        elif state in ("consulting", "conference") and channel is None \
                and legs.consult_channel is not None:
            await self._consulted_gone(legs, Channel.model_construct(id=legs.consult_channel))

    # Helpers ------------------------------------------------------------------------

    async def _drop_consulted(self, legs: Legs) -> None:
        channel, legs.consult_channel = legs.consult_channel, None  # its events: not ours
        if channel is not None:
            await self.control.quietly(self.client.hangup(channel))

    async def _back_to_agent(self, legs: Legs) -> None:
        """The agent's leg back in the call's bridge with the caller, off hold."""
        a = legs.agent_channel
        if a is not None and not legs.conference:
            await self._quietly_remove(legs.consult_bridge_id, a)
            await self.control.quietly(self.client.add_channels(legs.bridge_id, [a]))
        await self.control.quietly(self.client.unhold(legs.call_id))
        await self.control.quietly(self.client.destroy_bridge(legs.consult_bridge_id))
        legs.clear_consult()

    async def _quietly_remove(self, bridge_id: str, *channel_ids: str) -> None:
        for channel_id in channel_ids:
            await self.control.quietly(self.client.remove_channels(bridge_id, [channel_id]))
