"""What the administration views share: the body parser, the path's ids, the app's parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from admin.changes import Changes
from core.web import Invalid
from cti.schemas import describe
from routing.directory import AgentDirectory

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Parts:
    changes: Changes
    directory: AgentDirectory
    calls: Any  # CallService


PARTS = web.AppKey("admin", Parts)


async def body(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate_json(await request.read() or b"{}")
    except ValidationError as e:
        raise Invalid(describe(e.errors())) from e


def agent_id(request: web.Request) -> int:
    raw = request.match_info["agent_id"]
    try:
        value = int(raw)
    except ValueError as e:
        raise Invalid(f"agent id must be a whole number, not {raw[:40]!r}") from e
    if not 0 < value < 2**31:
        raise Invalid("agent id is out of range")
    return value
