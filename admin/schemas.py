"""Request bodies of the administration API; anything else in a body is refused."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Skill = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{0,31}$")]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]
Tier = Literal["vip", "gold", "standard", "low"]
Seconds = Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)]
Boost = Annotated[float, Field(ge=-3600, le=3600, allow_inf_nan=False)]
Role = Literal["agent", "supervisor", "admin"]
Text = Annotated[str, Field(max_length=200)]
Password = Annotated[str, Field(min_length=8, max_length=256)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NewAgent(_Body):
    username: Username
    password: Password
    display_name: Text = ""
    role: Role = "agent"
    extension: Annotated[str, Field(max_length=32)] | None = None
    skills: Annotated[list[Skill], Field(max_length=50)] = []
    level: Annotated[int, Field(ge=1, le=10)] = 1
    team: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    queues: Annotated[list[Name], Field(max_length=50)] = []


class AgentChange(_Body):
    """Only the fields given change; `team: null` takes the agent out of its team."""

    display_name: Text | None = None
    role: Role | None = None
    extension: Annotated[str, Field(max_length=32)] | None = None
    skills: Annotated[list[Skill], Field(max_length=50)] | None = None
    level: Annotated[int, Field(ge=1, le=10)] | None = None
    team: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    queues: Annotated[list[Name], Field(max_length=50)] | None = None
    active: bool | None = None


class NewPassword(_Body):
    password: Password


class StateChange(_Body):
    """A supervisor takes an agent out of routing: not ready, or signed out. Only the
    agent, at its console, makes itself available."""

    state: Literal["not_ready", "logged_out"]
    reason: Annotated[str, Field(max_length=32)] = ""


class SignOut(_Body):
    reason: Annotated[str, Field(max_length=32)] = ""


class QueueBody(_Body):
    display_name: Text | None = None
    skills: Annotated[list[Skill], Field(max_length=20)] | None = None
    sl_threshold_s: Annotated[int, Field(ge=1, le=3600)] | None = None
    sl_target: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    wrap_up_s: Seconds | None = None
    tier_boost_s: dict[Tier, Boost] | None = None


class NewQueue(QueueBody):
    name: Name


class CodeItem(_Body):
    code: Code
    label: Text = ""


class CodeList(_Body):
    codes: Annotated[list[CodeItem], Field(min_length=1, max_length=50)]


class Skills(_Body):
    skills: Annotated[list[Skill], Field(max_length=200)]


class PolicyChange(_Body):
    tier_boost_s: dict[Tier, Boost] | None = None
    sticky_wait_s: dict[Tier, Seconds] | None = None
    complaint_wait_s: Seconds | None = None
    complaint_boost_s: Seconds | None = None
    intent_wait_s: Seconds | None = None


class MonitorRequest(_Body):
    """`listen`, `whisper` or `barge` start monitoring or switch to that mode; `stop` ends."""

    mode: Literal["listen", "whisper", "barge", "stop"]
