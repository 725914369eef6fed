"""Wire protocol v1 for IVR/PBX integrations (see docs/protocol.md)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Number = Annotated[str, Field(max_length=64)]


class Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    type: str  # each event narrows it to its own name
    event_id: Annotated[str, Field(min_length=1, max_length=200)]
    call_id: Id
    ts: dt.datetime | None = Field(default=None, strict=False)


class IvrData(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    language: Annotated[str, Field(max_length=16)] | None = None
    intent: Annotated[str, Field(max_length=64, pattern=r"^[\w.-]+$")] | None = None
    digits: Annotated[str, Field(max_length=64)] | None = None

    @model_validator(mode="after")
    def _storable(self) -> IvrData:
        """Extra IVR keys are kept as sent, so they must be JSON we can store and send on
        (orjson writes integers of at most 64 bits)."""
        try:
            orjson.dumps(self.model_extra)
        except orjson.JSONEncodeError as e:
            raise ValueError(f"ivr holds a value that cannot be stored: {e}") from e
        return self


class CallOffered(Frame):
    type: Literal["call.offered"]
    ani: Number
    dnis: Number = ""
    queue: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\w.-]+$")] = "default"
    ivr: IvrData = IvrData()


class CallAnswered(Frame):
    type: Literal["call.answered"]
    agent_id: Annotated[int, Field(ge=1, le=2**31)]


class CallEnded(Frame):
    type: Literal["call.ended"]
    cause: Literal["normal", "caller_hangup", "agent_hangup", "abandoned", "failed"] = "normal"


# A telephone number to transfer a caller to: digits, an optional leading +.
PhoneNumber = Annotated[str, Field(pattern=r"^\+?[0-9]{3,20}$")]
QueueName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\w.-]+$")]
AgentId = Annotated[int, Field(ge=1, le=2**31)]


class CallTransferred(Frame):
    """The PBX moved the caller: to a queue or an agent (back into routing), or (v2) out
    of the center to a number (the call ends for the center; its agent wraps up)."""

    type: Literal["call.transferred"]
    to_queue: QueueName | None = None
    to_agent_id: AgentId | None = None
    to_number: PhoneNumber | None = None

    @model_validator(mode="after")
    def _one_target(self) -> CallTransferred:
        if sum(t is not None for t in (self.to_queue, self.to_agent_id, self.to_number)) != 1:
            raise ValueError("give exactly one of to_queue, to_agent_id or to_number")
        return self


class CallHeld(Frame):
    """The PBX put the caller on hold (music on hold)."""

    type: Literal["call.held"]


class CallResumed(Frame):
    """The caller is back with the agent after a hold."""

    type: Literal["call.resumed"]


class ConsultAnswered(Frame):
    """The consulted agent picked up the consult leg (the caller still on hold)."""

    type: Literal["consult.answered"]
    agent_id: AgentId


class ConsultEnded(Frame):
    """The consult leg is gone (cancelled, the consulted agent hung up or never answered,
    or left a conference): the caller is back with the first agent."""

    type: Literal["consult.ended"]
    agent_id: AgentId | None = None
    cause: Literal["cancelled", "hangup", "no_answer", "failed"] = "cancelled"


class ConsultCompleted(Frame):
    """The caller now talks to the consulted agent; the first agent left the call."""

    type: Literal["consult.completed"]
    agent_id: AgentId | None = None


class ConferenceStarted(Frame):
    """Caller, first agent and consulted agent are joined in one conference."""

    type: Literal["conference.started"]


class RecordingPaused(Frame):
    """The PBX paused the call's recording (PCI: a card number is being read out); the
    paused audio is left out of the file. `command_id`: the route.control it carried out
    (who asked is taken from it), absent when the PBX paused on its own."""

    type: Literal["recording.paused"]
    command_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class RecordingResumed(Frame):
    """The PBX resumed the call's recording after a pause."""

    type: Literal["recording.resumed"]
    command_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class ControlResult(BaseModel):
    """The PBX's answer to one command (route.control and the like): done, or not and why.
    Further fields are kept as the command's `detail`."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    type: Literal["control.result"]
    event_id: Annotated[str, Field(min_length=1, max_length=200)]
    command_id: Annotated[str, Field(min_length=1, max_length=64)]
    ok: bool
    reason: Annotated[str, Field(max_length=64, pattern=r"^[\w.-]*$")] = ""

    @model_validator(mode="after")
    def _storable(self) -> ControlResult:
        try:
            orjson.dumps(self.model_extra)
        except orjson.JSONEncodeError as e:
            raise ValueError(f"a field holds a value that cannot be stored: {e}") from e
        return self

    @property
    def detail(self) -> dict[str, Any]:
        return {k: v for k, v in (self.model_extra or {}).items() if k != "call_id"}


class ControlFields(BaseModel):
    """What a call-control request asks (agent frame `call.control`, REST body): the
    action and, for a transfer, exactly one target and the mode."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    action: Literal["hold", "resume", "hangup", "answer", "transfer", "consult.complete",
                    "consult.cancel", "conference", "recording.pause", "recording.resume"]
    mode: Literal["blind", "consult"] = "blind"
    to_queue: QueueName | None = None
    to_agent_id: AgentId | None = None
    to_number: PhoneNumber | None = None
    # A consult: the first agent's notes so far, shown to the consulted agent.
    notes: Annotated[str, Field(max_length=4000)] | None = None

    @model_validator(mode="after")
    def _targets(self) -> ControlFields:
        given = sum(t is not None for t in (self.to_queue, self.to_agent_id, self.to_number))
        if self.action == "transfer" and given != 1:
            raise ValueError("a transfer takes exactly one of to_queue, to_agent_id, to_number")
        if self.action != "transfer" and given:
            raise ValueError(f"{self.action} takes no transfer target")
        if self.consult and self.to_number is not None:
            raise ValueError("a consult goes to an agent or a queue, not a number")
        if self.notes is not None and not self.consult:
            raise ValueError("notes go with a consult transfer only")
        return self

    @property
    def consult(self) -> bool:
        return self.action == "transfer" and self.mode == "consult"

    def fields(self) -> dict[str, Any]:
        """The request's own fields for the PBX (none but the action's target)."""
        if self.action != "transfer":
            return {}
        targets = {"to_queue": self.to_queue, "to_agent_id": self.to_agent_id,
                   "to_number": self.to_number}
        fields = {"mode": self.mode, **{k: v for k, v in targets.items() if v is not None}}
        if self.notes is not None:
            fields["notes"] = self.notes
        return fields


class RecordingReady(Frame):
    type: Literal["recording.ready"]
    path: Annotated[str, Field(min_length=1, max_length=1024)]


class SurveyResult(Frame):
    type: Literal["survey.result"]
    score: Annotated[int, Field(ge=1, le=5)]
    # Optional: the caller's expectation (a) and perceived performance (b), 1..5; the
    # satisfaction index is c = b / a (docs/value-model.md).
    expectation: Annotated[int, Field(ge=1, le=5)] | None = None
    perception: Annotated[int, Field(ge=1, le=5)] | None = None


class CallbackRequested(Frame):
    """The caller of a waiting call chose to be called back (the IVR's "press 1"): the
    caller leaves the line, the callback keeps the call's place. `number`: where to call
    (default: the caller's number); `not_before`: not earlier than this."""

    type: Literal["callback.requested"]
    number: PhoneNumber | None = None
    not_before: dt.datetime | None = Field(default=None, strict=False)

    @model_validator(mode="after")
    def _aware(self) -> CallbackRequested:
        if self.not_before is not None and self.not_before.tzinfo is None:
            raise ValueError("not_before needs a time zone (e.g. 2026-12-03T09:00:00Z)")
        return self


class CallbackResult(Frame):
    """How an attempt of a callback (route.callback) went. Names its callback by
    `callback_id` (the call path knows it as the callback's call id)."""

    type: Literal["callback.result"]
    callback_id: Id
    outcome: Literal["connected", "no_answer", "busy", "failed"]

    @model_validator(mode="before")
    @classmethod
    def _call_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "call_id" not in data and "callback_id" in data:
            return {**data, "call_id": data["callback_id"]}
        return data

    @model_validator(mode="after")
    def _same(self) -> CallbackResult:
        if self.call_id != self.callback_id:
            raise ValueError("call_id, if given, must be the callback_id")
        return self


class StateSync(BaseModel):
    """Ask for the state of this integration's live calls (after a reconnect)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    type: Literal["state.sync"]
    event_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None


Inbound = Annotated[
    CallOffered | CallAnswered | CallEnded | CallTransferred | CallHeld | CallResumed
    | ConsultAnswered | ConsultEnded | ConsultCompleted | ConferenceStarted
    | RecordingPaused | RecordingResumed | RecordingReady | SurveyResult | StateSync
    | ControlResult | CallbackRequested | CallbackResult,
    Field(discriminator="type"),
]
inbound = TypeAdapter(Inbound)
CALL_EVENTS = ("call.offered", "call.answered", "call.ended", "call.transferred",
               "call.held", "call.resumed", "consult.answered", "consult.ended",
               "consult.completed", "conference.started", "recording.paused",
               "recording.resumed", "recording.ready", "survey.result",
               "callback.requested", "callback.result")


def describe(errors: list[Any]) -> str:
    """Pydantic's errors as one line a PBX integrator can act on."""
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "frame"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
