"""Request bodies of the webhook API."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Url = Annotated[str, Field(min_length=1, max_length=2048)]
EventList = Annotated[list[Annotated[str, Field(max_length=40)]],
                      Field(min_length=1, max_length=50)]
Secret = Annotated[str, Field(min_length=16, max_length=200)]
Text = Annotated[str, Field(max_length=200)]


class NewSubscription(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: Url
    events: EventList
    secret: Secret | None = None
    active: bool = True
    description: Text = ""


class SubscriptionChange(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: Url | None = None
    events: EventList | None = None
    secret: Secret | None = None
    active: bool | None = None
    description: Text | None = None


class Replay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delivery_id: int | None = None
