"""Live monitoring over ARI: the gateway's `route.monitor` carried out on Asterisk and
answered with one `control.result` (docs/asterisk.md, "Live monitoring").

- listen: a snoop channel on the agent's leg hearing both directions (`spy=both`) and a
  bridge (`<call>-monitor`) joining it with the supervisor's phone: the supervisor hears
  agent and caller, and nobody hears the supervisor.
- whisper: the same with `whisper=out`: what the supervisor says goes out of the agent's
  channel to the agent only.
- barge: the supervisor's phone joins the call's own bridge: all three talk.
- the supervisor hanging up its phone (or not answering it) tears it down too, and the
  service is told (`MonitorService.supervisor_left`: the wallboard stops showing it).
- a switch tears down what the previous mode made (the snoop channel, the monitor bridge,
  or the supervisor's place in the call's bridge) and makes the new mode's; a switch
  Asterisk refuses goes back to the previous mode (or, refused again, tears it all
  down and tells the service, reason `failed`); stop tears
  everything down and hangs up the supervisor's phone. The call's end or transfer does
  the same (`CallControl.end_monitor`), so no snoop channel outlives its call.

The supervisor's phone is rung once (originated into the application) and kept across
switches; it and a new snoop channel join their bridge when they enter the application
(StasisStart), since a channel can be bridged only once it is in Stasis.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict

from cti.ari_calls import CallControl
from cti.ari_client import AriError
from cti.ari_control import AriCommands, reason_for
from cti.ari_events import ChannelEvent, StasisStart
from cti.ari_legs import Legs, Monitoring
from cti.monitor import MonitorService

log = logging.getLogger(__name__)

GONE = ("ChannelHangupRequest", "StasisEnd", "ChannelDestroyed")
# What the snoop channel hears and says, per mode (channels.json, snoopChannel).
_SNOOP = {"listen": ("both", "none"), "whisper": ("both", "out")}


class MonitorMessage(BaseModel):
    """`route.monitor` from the gateway, as the adapter reads it."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["route.monitor"]
    command_id: str
    call_id: str
    supervisor_extension: str
    mode: Literal["listen", "whisper", "barge", "stop"]
    supervisor_id: int = 0


class AriMonitor:
    def __init__(self, calls: CallControl, commands: AriCommands,
                 monitors: MonitorService | None = None) -> None:
        self.calls, self.commands, self.monitors = calls, commands, monitors
        self.client = calls.client

    async def carry_out(self, command: MonitorMessage) -> None:
        """Start, switch or stop (under the call's lock) and answer once."""
        legs = self.calls.legs.get(command.call_id)
        if legs is None or legs.ended:
            await self.commands.answer(command.command_id, "call_ended")
            return
        if command.mode != "stop" and (legs.agent_channel is None or not legs.answered):
            await self.commands.answer(command.command_id, "no_agent_leg")
            return
        previous = legs.monitor.mode if legs.monitor is not None else None
        try:
            await self._switch(legs, command)
        except AriError as e:
            log.info("call %s: monitor %s refused by Asterisk: %s", legs.call_id,
                     command.mode, e)
            if previous is None or command.mode == "stop":
                await self.calls.end_monitor(legs)  # nothing half-made is left
            else:
                await self._restore(legs, command.model_copy(update={"mode": previous}))
            await self.commands.answer(command.command_id, reason_for(e))
            return
        await self.commands.answer(command.command_id, "")

    async def _restore(self, legs: Legs, back: MonitorMessage) -> None:
        """A refused switch: what it made is torn down and the previous mode made again,
        as the service still has it. If Asterisk refuses that too, nothing of the
        monitoring is left, and the service is told it ended."""
        try:
            await self._switch(legs, back)
        except AriError as e:
            log.warning("call %s: monitoring could not go back to %s (%s); torn down",
                        legs.call_id, back.mode, e)
            await self.calls.end_monitor(legs)
            if self.monitors is not None:
                await self.monitors.supervisor_left(legs.call_id, back.supervisor_id,
                                                    reason="failed")

    async def _switch(self, legs: Legs, command: MonitorMessage) -> None:
        if command.mode == "stop":
            await self.calls.end_monitor(legs)
            return
        monitor = legs.monitor
        if monitor is None:
            monitor = legs.monitor = Monitoring(
                legs.new_supervisor_channel(command.supervisor_id), command.mode,
                command.supervisor_id)
            await self.client.originate(
                self.calls.config.endpoint_template.format(
                    extension=command.supervisor_extension),
                channel_id=monitor.supervisor_channel, app_args=f"monitor,{legs.call_id}",
                caller_id=legs.ani, timeout_s=30)
        else:
            await self._undo(legs, monitor, command.mode)
        moved = (monitor.mode == "barge") != (command.mode == "barge")
        monitor.mode = command.mode
        if command.mode in _SNOOP:
            await self._snoop(legs, monitor)
        if monitor.up and moved:
            await self._place_supervisor(legs, monitor)

    async def _undo(self, legs: Legs, monitor: Monitoring, mode: str) -> None:
        """Tear down what the current mode made and the next does not keep: the snoop
        channel always (its directions are the mode's), the monitor bridge going to
        barge, the supervisor's place in the call's bridge leaving barge. The
        supervisor's phone stays."""
        if monitor.snoop_channel is not None:
            snoop, monitor.snoop_channel = monitor.snoop_channel, None
            await self.calls.quietly(self.client.hangup(snoop))
        if monitor.mode == "barge" and mode != "barge" and monitor.up:
            await self.calls.quietly(self.client.remove_channels(
                legs.bridge_id, [monitor.supervisor_channel]))
        if mode == "barge" and monitor.bridge is not None:
            bridge, monitor.bridge = monitor.bridge, None
            await self.calls.quietly(self.client.destroy_bridge(bridge))

    async def _snoop(self, legs: Legs, monitor: Monitoring) -> None:
        assert legs.agent_channel is not None
        if monitor.bridge is None:
            await self.client.create_bridge(legs.monitor_bridge_id, name=legs.call_id)
            monitor.bridge = legs.monitor_bridge_id
        spy, whisper = _SNOOP[monitor.mode]
        monitor.snoop_channel = legs.new_snoop_channel()
        await self.client.snoop(legs.agent_channel, monitor.snoop_channel, spy=spy,
                                whisper=whisper, app_args=f"monitor,{legs.call_id}")

    async def _place_supervisor(self, legs: Legs, monitor: Monitoring) -> None:
        """The supervisor's phone into the bridge of its mode: the call's for barge."""
        bridge = legs.bridge_id if monitor.mode == "barge" else monitor.bridge
        if bridge is not None:
            await self.client.add_channels(bridge, [monitor.supervisor_channel])

    async def event(self, legs: Legs, event: ChannelEvent) -> None:
        """An event of a supervisor's leg or a snoop channel of this call."""
        channel, monitor = event.channel, legs.monitor
        assert channel is not None
        mine = monitor is not None and channel.id in (monitor.supervisor_channel,
                                                      monitor.snoop_channel)
        if not mine or monitor is None:
            if isinstance(event, StasisStart):  # left from an earlier mode or monitor
                await self.calls.quietly(self.client.hangup(channel.id))
            return
        try:
            await self._own_event(legs, monitor, event)
        except AriError as e:
            log.warning("call %s: monitoring failed (%s); torn down", legs.call_id, e)
            await self.calls.end_monitor(legs)

    async def _own_event(self, legs: Legs, monitor: Monitoring, event: ChannelEvent) -> None:
        channel = event.channel
        assert channel is not None
        supervisor = channel.id == monitor.supervisor_channel
        if isinstance(event, StasisStart):
            if supervisor:
                monitor.up = True
                await self._place_supervisor(legs, monitor)
            elif monitor.bridge is not None:
                await self.client.add_channels(monitor.bridge, [channel.id])
        elif event.type in GONE and supervisor:
            # The supervisor hung up the phone (or never answered): nothing of the
            # monitoring is left to keep, and the service forgets it.
            monitor.up = False
            await self.calls.end_monitor(legs)
            if self.monitors is not None:
                await self.monitors.supervisor_left(legs.call_id, monitor.supervisor_id)
        elif event.type in GONE:
            monitor.snoop_channel = None if monitor.snoop_channel == channel.id \
                else monitor.snoop_channel
