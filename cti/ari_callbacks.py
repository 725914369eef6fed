"""Queue callbacks over ARI: the caller's DTMF choice in the Stasis application asks for
the callback (cti/ari_calls.py), and `route.callback` is placed here: the agent's phone
first, then the customer's number, both originated into the application and bridged.

Ids carry the relationships, as in cti/ari_legs.py:

- the agent's leg is ``<callback id>-cbagent-<attempt>``, the customer's
  ``<callback id>-cbcust-<attempt>``, their bridge ``<callback id>-bridge``.

The attempt's outcome goes back as `callback.result`: `connected` once the customer's
leg answers and joins the bridge; `busy`, `no_answer` or `failed` from the customer's
hangup cause; `failed` when the agent's leg ends before the customer answered. After
`connected` the callback is a call under the callback's id: either leg hanging up ends
it (`call.ended`) and the other leg is hung up.

An attempt in flight lives in this adapter's memory only: one that a restart of the
adapter loses is ended by the service's attempt timeout (counted as `no_answer`) and
tried again.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from cti.ari_calls import GONE, CallControl
from cti.ari_events import (
    Channel,
    ChannelDestroyed,
    ChannelEvent,
    ChannelHangupRequest,
    StasisStart,
)
from cti.ari_legs import BRIDGE_SUFFIX, FAILURE_CAUSES, event_id
from cti.schemas import CallbackResult, CallEnded

log = logging.getLogger(__name__)

_LEG = re.compile(r"^(?P<callback>.+)-cb(?P<side>agent|cust)-(?P<attempt>\d+)$")
BUSY_CAUSES = frozenset({17})


class CallbackMessage(BaseModel):
    """`route.callback` from the gateway, as the adapter reads it."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    callback_id: str
    number: str
    agent_id: int
    extension: str = ""
    attempt: int = 1


@dataclass
class Placing:
    route: CallbackMessage
    agent_up: bool = False
    customer_channel: str | None = None
    connected: bool = False
    ended: bool = False

    @property
    def callback_id(self) -> str:
        return self.route.callback_id

    @property
    def agent_channel(self) -> str:
        return f"{self.callback_id}-cbagent-{self.route.attempt}"

    @property
    def customer_leg(self) -> str:
        return f"{self.callback_id}-cbcust-{self.route.attempt}"

    @property
    def bridge_id(self) -> str:
        return self.callback_id + BRIDGE_SUFFIX


def callback_leg(channel_id: str) -> tuple[str, str] | None:
    """(callback id, "agent" or "cust") if this is a callback leg the adapter originated."""
    match = _LEG.match(channel_id)
    return (match["callback"], match["side"]) if match else None


def is_callback(call_id: str, channels: dict[str, Channel], placing: dict[str, Any]) -> bool:
    """Whether a live call of this integration is a callback this adapter placed."""
    return call_id in placing or any(
        (leg := callback_leg(c)) is not None and leg[0] == call_id for c in channels)


def outcome_of(cause: int | None) -> str:
    if cause in BUSY_CAUSES:
        return "busy"
    if cause in FAILURE_CAUSES:
        return "failed"
    return "no_answer"


class AriCallbacks:
    def __init__(self, control: CallControl, endpoint_template: str) -> None:
        self.control = control
        self.client = control.client
        self.endpoint_template = endpoint_template  # how a customer's number is dialled
        self.placing: dict[str, Placing] = {}

    async def place(self, route: CallbackMessage) -> None:
        """Ring the agent first; the customer is called once the agent answers."""
        if route.callback_id in self.placing:
            return
        placing = self.placing[route.callback_id] = Placing(route)
        if not route.extension:
            log.warning("callback %s: agent %s has no extension", route.callback_id,
                        route.agent_id)
            await self._result(placing, "failed", f"ari:{placing.agent_channel}:no-extension")
            return
        config = self.control.config
        try:
            await self.client.originate(
                config.endpoint_template.format(extension=route.extension),
                channel_id=placing.agent_channel, app_args=f"cbagent,{route.callback_id}",
                caller_id=route.number, timeout_s=math.ceil(config.ring_timeout_s) + 5)
        except Exception as e:  # an AriError, or Asterisk unreachable
            log.warning("callback %s: cannot ring agent %s: %s", route.callback_id,
                        route.agent_id, e)
            await self._result(placing, "failed", f"ari:{placing.agent_channel}:originate")

    async def event(self, callback_id: str, side: str, event: ChannelEvent) -> None:
        placing = self.placing.get(callback_id)
        channel = event.channel
        if placing is None or placing.ended or channel is None:
            if isinstance(event, StasisStart) and channel is not None:
                await self.control.quietly(self.client.hangup(channel.id))  # a stray leg
            return
        if isinstance(event, StasisStart):
            await (self._agent_answered(placing) if side == "agent"
                   else self._customer_answered(placing, event))
        elif event.type in GONE:
            await self._gone(placing, side, event)

    async def _agent_answered(self, placing: Placing) -> None:
        placing.agent_up = True
        placing.customer_channel = placing.customer_leg
        try:
            await self.client.create_bridge(placing.bridge_id, name=placing.callback_id)
            await self.client.add_channels(placing.bridge_id, [placing.agent_channel])
            await self.client.originate(
                self.endpoint_template.format(number=placing.route.number),
                channel_id=placing.customer_leg, app_args=f"cbcust,{placing.callback_id}",
                timeout_s=60)
        except Exception as e:
            log.warning("callback %s: cannot call %s: %s", placing.callback_id,
                        placing.route.number, e)
            await self._finish(placing, "failed", f"ari:{placing.customer_leg}:originate")

    async def _customer_answered(self, placing: Placing, event: StasisStart) -> None:
        try:
            await self.client.add_channels(placing.bridge_id, [placing.customer_leg])
        except Exception as e:
            log.warning("callback %s: cannot bridge the customer: %s", placing.callback_id, e)
            await self._finish(placing, "failed", event_id(event, placing.customer_leg))
            return
        if not await self._result(placing, "connected", event_id(event, placing.customer_leg)):
            await self._hang_up_all(placing)  # the service refused: nobody talks
            return
        placing.connected = True

    async def _gone(self, placing: Placing, side: str, event: ChannelEvent) -> None:
        leg = placing.agent_channel if side == "agent" else placing.customer_leg
        if placing.connected:
            placing.ended = True
            await self.control.send(CallEnded(
                type="call.ended", event_id=event_id(event, leg), call_id=placing.callback_id,
                cause="agent_hangup" if side == "agent" else "caller_hangup"))
            await self._hang_up_all(placing)
            return
        code = event.cause if isinstance(event, ChannelHangupRequest | ChannelDestroyed) \
            else None
        if side == "agent" and isinstance(event, ChannelDestroyed):
            await self._finish(placing, "failed", event_id(event, leg))
        elif side == "cust" and isinstance(event, ChannelHangupRequest | ChannelDestroyed):
            await self._finish(placing, outcome_of(code), event_id(event, leg))

    async def _finish(self, placing: Placing, outcome: str, eid: str) -> None:
        """The attempt ended unanswered: say so, and release what is left of it."""
        placing.ended = True
        await self._result(placing, outcome, eid)
        await self._hang_up_all(placing)

    async def _result(self, placing: Placing, outcome: str, eid: str) -> bool:
        if outcome != "connected":
            placing.ended = True
        outcome_frame = CallbackResult(
            type="callback.result", event_id=eid, call_id=placing.callback_id,
            callback_id=placing.callback_id, outcome=outcome)  # type: ignore[arg-type]
        return await self.control.send(outcome_frame) is not None

    # Reconciliation after (re)connecting ----------------------------------------

    async def reconcile(self, call: dict[str, Any], channels: dict[str, Channel]) -> None:
        """A connected callback the service holds: kept while both its legs are up (taken
        back after an adapter restart), else ended."""
        callback_id = call["call_id"]
        legs = {side: (channel_id, int(attempt)) for channel_id in channels
                if (found := _LEG.match(channel_id)) and found["callback"] == callback_id
                for side, attempt in [(found["side"], found["attempt"])]}
        placing = self.placing.get(callback_id)
        if placing is None and "agent" in legs and "cust" in legs:
            placing = self.placing[callback_id] = Placing(CallbackMessage(
                callback_id=callback_id, number="", agent_id=call.get("agent_id") or 0,
                attempt=legs["agent"][1]), agent_up=True, connected=True)
            placing.customer_channel = placing.customer_leg
        if placing is not None and placing.agent_channel in channels \
                and placing.customer_leg in channels:
            return
        log.info("callback %s: its legs are gone; the call ends", callback_id)
        await self.control.send(CallEnded(type="call.ended", call_id=callback_id,
                                          event_id=f"ari:{callback_id}:reconciled:gone"))
        if placing is None:
            placing = Placing(CallbackMessage(callback_id=callback_id, number="", agent_id=0))
        await self._hang_up_all(placing)

    async def _hang_up_all(self, placing: Placing) -> None:
        placing.ended = True
        self.placing.pop(placing.callback_id, None)
        for channel in (placing.agent_channel, placing.customer_channel):
            if channel is not None:
                await self.control.quietly(self.client.hangup(channel))
        await self.control.quietly(self.client.destroy_bridge(placing.bridge_id))
