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


class CallTransferred(Frame):
    type: Literal["call.transferred"]
    to_queue: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\w.-]+$")] | None = None
    to_agent_id: Annotated[int, Field(ge=1, le=2**31)] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> CallTransferred:
        if (self.to_queue is None) == (self.to_agent_id is None):
            raise ValueError("give exactly one of to_queue or to_agent_id")
        return self


class CallHeld(Frame):
    """The PBX put the caller on hold (music on hold)."""

    type: Literal["call.held"]


class CallResumed(Frame):
    """The caller is back with the agent after a hold."""

    type: Literal["call.resumed"]


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


class StateSync(BaseModel):
    """Ask for the state of this integration's live calls (after a reconnect)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    type: Literal["state.sync"]
    event_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None


Inbound = Annotated[
    CallOffered | CallAnswered | CallEnded | CallTransferred | CallHeld | CallResumed
    | RecordingReady | SurveyResult | StateSync | ControlResult,
    Field(discriminator="type"),
]
inbound = TypeAdapter(Inbound)
CALL_EVENTS = ("call.offered", "call.answered", "call.ended", "call.transferred",
               "call.held", "call.resumed", "recording.ready", "survey.result")


def describe(errors: list[Any]) -> str:
    """Pydantic's errors as one line a PBX integrator can act on."""
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "frame"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
