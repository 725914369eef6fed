"""The parts of Asterisk's ARI messages the adapter reads, as Asterisk sends them.

Shapes follow Asterisk's `rest-api/api-docs/events.json`, `channels.json`,
`bridges.json` and `recordings.json`. Unknown fields are ignored so newer
Asterisk versions keep working; events the adapter does not use parse to None.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CallerId(_Model):
    name: str = ""
    number: str = ""


class DialplanCEP(_Model):
    context: str = ""
    exten: str = ""
    priority: int = 0


class Channel(_Model):
    id: str
    name: str = ""
    state: str = "Unknown"  # Down, Rsrved, OffHook, Dialing, Ring, Ringing, Up, Busy, ...
    caller: CallerId = CallerId()
    connected: CallerId = CallerId()
    dialplan: DialplanCEP = DialplanCEP()
    creationtime: str = ""


class Bridge(_Model):
    id: str
    technology: str = ""
    bridge_type: str = ""
    bridge_class: str = ""
    name: str = ""
    channels: list[str] = []


class LiveRecording(_Model):
    name: str
    format: str = "wav"
    state: str = ""  # queued, recording, paused, done, failed, canceled
    target_uri: str = ""
    cause: str | None = None


class _Event(_Model):
    application: str = ""
    timestamp: str = ""


class StasisStart(_Event):
    type: Literal["StasisStart"]
    args: list[str] = []
    channel: Channel
    replace_channel: Channel | None = None


class StasisEnd(_Event):
    type: Literal["StasisEnd"]
    channel: Channel


class ChannelStateChange(_Event):
    type: Literal["ChannelStateChange"]
    channel: Channel


class ChannelDtmfReceived(_Event):
    type: Literal["ChannelDtmfReceived"]
    digit: str
    duration_ms: int = 0
    channel: Channel


class ChannelHangupRequest(_Event):
    type: Literal["ChannelHangupRequest"]
    cause: int | None = None
    soft: bool | None = None
    channel: Channel


class ChannelDestroyed(_Event):
    type: Literal["ChannelDestroyed"]
    cause: int = 0
    cause_txt: str = ""
    channel: Channel


class ChannelEnteredBridge(_Event):
    type: Literal["ChannelEnteredBridge"]
    bridge: Bridge
    channel: Channel | None = None


class ChannelLeftBridge(_Event):
    type: Literal["ChannelLeftBridge"]
    bridge: Bridge
    channel: Channel


class ApplicationReplaced(_Event):
    type: Literal["ApplicationReplaced"]


class RecordingFinished(_Event):
    type: Literal["RecordingFinished"]
    recording: LiveRecording


class RecordingFailed(_Event):
    type: Literal["RecordingFailed"]
    recording: LiveRecording


ChannelEvent = (StasisStart | StasisEnd | ChannelStateChange | ChannelDtmfReceived
                | ChannelHangupRequest | ChannelDestroyed | ChannelEnteredBridge
                | ChannelLeftBridge)
Event = Annotated[
    ChannelEvent | ApplicationReplaced | RecordingFinished | RecordingFailed,
    Field(discriminator="type"),
]
_events = TypeAdapter(Event)
channel_list = TypeAdapter(list[Channel])
bridge_list = TypeAdapter(list[Bridge])


class BadEvent(Exception):
    code = "bad_ari_event"


def parse_event(data: str | bytes) -> Event | None:
    """The event, None for a type the adapter does not use; BadEvent if malformed."""
    try:
        return _events.validate_json(data)
    except ValidationError as e:
        if {err["type"] for err in e.errors()} <= {"union_tag_invalid"}:
            return None
        raise BadEvent(str(e)) from e
