"""What the ARI adapter knows about one call, and how ARI facts become protocol frames.

Ids carry the relationships, so they can be rebuilt from Asterisk's channel and
bridge lists after a restart or a lost event socket:

- the caller's channel id is the call id;
- an agent leg is ``<call id>-agent-<agent id>-<6 hex>``;
- the call's bridge is ``<call id>-bridge``, its recording ``cc-<call id>``;
- a consulted agent's leg ``<call id>-consult-<agent id>-<6 hex>``, in the consult bridge
  ``<call id>-consult`` with the agent's leg (cti/ari_consult.py);
- a supervisor monitoring it: its phone's leg ``<call id>-sup-<agent id>-<6 hex>``, the
  snoop channel on the agent's leg ``<call id>-snoop-<6 hex>``, and the bridge joining the
  two ``<call id>-monitor`` (cti/ari_monitor.py).

No I/O here.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from cti.ari_events import Channel, ChannelDestroyed, ChannelEvent, ChannelHangupRequest
from cti.schemas import CallOffered, IvrData, describe

log = logging.getLogger(__name__)

_AGENT_LEG = re.compile(r"^(?P<call>.+)-agent-(?P<agent>\d+)-[0-9a-f]{6}$")
_CONSULT_LEG = re.compile(r"^(?P<call>.+)-consult-(?P<agent>\d+)-[0-9a-f]{6}$")
_MONITOR_LEG = re.compile(r"^(?P<call>.+)-(?:sup-\d+|snoop)-[0-9a-f]{6}$")
BRIDGE_SUFFIX = "-bridge"
MONITOR_SUFFIX = "-monitor"
CONSULT_SUFFIX = "-consult"
RECORDING_PREFIX = "cc-"
# Q.850 causes that mean the network failed the call, not that a person hung up.
FAILURE_CAUSES = frozenset({34, 38, 41, 42, 44, 47, 58, 63, 127})
MAX_DIGITS = 64


@dataclass
class Legs:
    call_id: str  # also the caller's channel id
    ani: str = ""
    queue: str = "default"
    ivr: dict[str, Any] = field(default_factory=dict)
    digits: str = ""          # DTMF pressed while in the app
    stored_digits: str = ""   # what the gateway already has
    offered: bool = False
    agent_id: int | None = None
    agent_channel: str | None = None
    answered: bool = False
    agent_hanging_up: bool = False
    caller_bridged: bool = False
    bridge: str | None = None
    moh: Literal["channel", "bridge"] | None = None
    recording: bool = False
    recording_paused: bool = False  # PCI pause (cti/ari_control.py)
    ended: bool = False
    monitor: Monitoring | None = None
    # A consult (cti/ari_consult.py): the consulted agent, its leg, whether it answered,
    # and whether all three are in conference.
    consult_agent: int | None = None
    consult_channel: str | None = None
    consult_answered: bool = False
    conference: bool = False

    @property
    def bridge_id(self) -> str:
        return self.call_id + BRIDGE_SUFFIX

    @property
    def recording_name(self) -> str:
        return RECORDING_PREFIX + self.call_id

    def new_agent_channel(self, agent_id: int) -> str:
        return f"{self.call_id}-agent-{agent_id}-{secrets.token_hex(3)}"

    def all_digits(self) -> str:
        return (str(self.ivr.get("digits", "")) + self.digits)[:MAX_DIGITS]

    @property
    def consult_bridge_id(self) -> str:
        return self.call_id + CONSULT_SUFFIX

    def new_consult_channel(self, agent_id: int) -> str:
        return f"{self.call_id}-consult-{agent_id}-{secrets.token_hex(3)}"

    def clear_consult(self) -> None:
        self.consult_agent, self.consult_channel = None, None
        self.consult_answered, self.conference = False, False

    def forget_agent(self) -> None:
        self.agent_channel, self.answered, self.agent_hanging_up = None, False, False

    @property
    def monitor_bridge_id(self) -> str:
        return self.call_id + MONITOR_SUFFIX

    def new_supervisor_channel(self, supervisor_id: int) -> str:
        return f"{self.call_id}-sup-{supervisor_id}-{secrets.token_hex(3)}"

    def new_snoop_channel(self) -> str:
        return f"{self.call_id}-snoop-{secrets.token_hex(3)}"


@dataclass
class Monitoring:
    """A supervisor's monitoring of the call: its phone's leg (`up` once answered and in
    the application), the mode, and what the mode made (a snoop channel on the agent's
    leg and the monitor bridge for listen and whisper; the call's bridge for barge)."""

    supervisor_channel: str
    mode: str
    supervisor_id: int = 0
    up: bool = False
    snoop_channel: str | None = None
    bridge: str | None = None  # the monitor bridge, when made


def agent_leg(channel_id: str) -> tuple[str, int] | None:
    """(call id, agent id) if this is an agent leg the adapter originated."""
    match = _AGENT_LEG.match(channel_id)
    return (match["call"], int(match["agent"])) if match else None


def consult_leg(channel_id: str) -> str | None:
    """The call id, if this is a consulted agent's leg the adapter originated."""
    match = _CONSULT_LEG.match(channel_id)
    return match["call"] if match else None


def consult_bridge_call(bridge_id: str) -> str | None:
    return bridge_id[: -len(CONSULT_SUFFIX)] if bridge_id.endswith(CONSULT_SUFFIX) else None


def monitor_leg(channel_id: str) -> str | None:
    """The call id, if this is a supervisor's leg or a snoop channel the adapter made."""
    match = _MONITOR_LEG.match(channel_id)
    return match["call"] if match else None


def monitor_bridge_call(bridge_id: str) -> str | None:
    return bridge_id[: -len(MONITOR_SUFFIX)] if bridge_id.endswith(MONITOR_SUFFIX) else None


def bridge_call(bridge_id: str) -> str | None:
    return bridge_id[: -len(BRIDGE_SUFFIX)] if bridge_id.endswith(BRIDGE_SUFFIX) else None


def recording_call(name: str) -> str | None:
    return name[len(RECORDING_PREFIX):] if name.startswith(RECORDING_PREFIX) else None


def is_agent_start(args: list[str]) -> bool:
    return bool(args) and args[0] == "agent"


def is_consult_start(args: list[str]) -> bool:
    return bool(args) and args[0] == "consult"


def is_monitor_start(args: list[str]) -> bool:
    return bool(args) and args[0] == "monitor"


def parse_args(args: list[str]) -> tuple[str, dict[str, str]]:
    """`Stasis(app,queue=sales,intent=billing,language=zh)` -> ("sales", {intent, language})."""
    pairs: dict[str, str] = {}
    for arg in args:
        for part in arg.split(","):
            key, sep, value = part.partition("=")
            if sep and key.strip():
                pairs[key.strip()] = value.strip()
    return pairs.pop("queue", "default") or "default", pairs


def event_id(event: ChannelEvent, channel_id: str) -> str:
    """Deterministic per ARI event, so a replayed event is acked as a duplicate."""
    return f"ari:{channel_id}:{event.type}:{event.timestamp}"


def caller_cause(legs: Legs, event: ChannelEvent) -> str:
    code = event.cause if isinstance(event, ChannelHangupRequest | ChannelDestroyed) else None
    if code in FAILURE_CAUSES:
        return "failed"
    return "caller_hangup" if legs.answered else "abandoned"


def offered_frame(legs: Legs, channel: Channel, event_id_: str) -> CallOffered:
    base: dict[str, Any] = {"type": "call.offered", "event_id": event_id_,
                            "call_id": channel.id, "ani": channel.caller.number[:64],
                            "dnis": channel.dialplan.exten[:64]}
    ivr = dict(legs.ivr)
    if legs.all_digits():
        ivr["digits"] = legs.all_digits()
    try:
        return CallOffered(**base, queue=legs.queue, ivr=IvrData(**ivr))
    except ValidationError as e:
        # Bad dialplan arguments must not cost the caller their call.
        log.warning("call %s: Stasis arguments ignored (%s)", channel.id, describe(e.errors()))
        return CallOffered(**base)


class RouteMessage(BaseModel):
    """`route.connect` / `route.queued` from the gateway, as the adapter reads them."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["route.connect", "route.queued"]
    call_id: str
    agent_id: int | None = None
    extension: str = ""
