"""Graded access to customer data: which customer a caller may see, and how much of it.

Supervisors and admins see every customer in full. An agent sees in full the
customer on its current call (ringing, talking or wrapping up); the customer of its
last call in full but with phone numbers and email masked; any other customer (one
it searched for) only in summary: the fields a search shows, masked, with no call
history, transcripts or value scores. Telephony integrations see no customer data.

`grant` and `shape` are pure; `agent_calls` reads which calls an agent has.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import Forbidden, Principal
from core.keys import Keys
from core.models import Call, Interaction, Role

# Agent states in which the agent's `call_id` is its current call.
ACTIVE_STATES = frozenset({"ringing", "on_call", "wrap_up"})
# What an agent may see of a customer it is not serving: what a search shows.
SUMMARY_FIELDS = frozenset({"id", "name", "phones", "email", "company", "tags", "tier",
                            "lifecycle_stage", "open_complaints", "access"})


class Grant(str, Enum):
    full = "full"  # everything as stored
    masked = "masked"  # everything, with phone numbers and email masked
    summary = "summary"  # SUMMARY_FIELDS only, masked
    none = "none"


@dataclass(frozen=True)
class AgentCalls:
    """The customers of an agent's current call and of its last call before that."""

    current: str | None = None
    last: str | None = None


def grant(role: Role, calls: AgentCalls, customer_id: str) -> Grant:
    if role in (Role.supervisor, Role.admin):
        return Grant.full
    if role is not Role.agent:
        return Grant.none
    if customer_id == calls.current:
        return Grant.full
    if customer_id == calls.last:
        return Grant.masked
    return Grant.summary


def shape(record: dict[str, Any], level: Grant) -> dict[str, Any]:
    """`record` (a customer profile or search result) as `level` allows it to be seen."""
    if level is Grant.none:
        raise Forbidden("this role sees no customer data")
    if level is Grant.full:
        return record
    shaped: dict[str, Any] = {}
    for key, value in record.items():
        if level is Grant.summary and key not in SUMMARY_FIELDS:
            shaped[key] = [] if isinstance(value, list) else None
        else:
            shaped[key] = _masked(key, value)
    return shaped


def _masked(key: str, value: Any) -> Any:
    if key == "phones":
        return [mask_phone(p) for p in value]
    if key == "email":
        return mask_email(value)
    if key == "interactions":
        return [{**row, "ani": mask_phone(row["ani"])} for row in value]
    return value


def mask_phone(phone: str) -> str:
    """`+8613800000001` -> `+86138****0001`: at least four characters hidden."""
    body = phone.removeprefix("+")
    plus = phone[: len(phone) - len(body)]
    if len(body) <= 4:
        return plus + "*" * len(body)
    tail = min(4 if len(body) >= 8 else 2, len(body) - 4)
    head = len(body) - tail - max(4, len(body) - tail - 5)
    return f"{plus}{body[:head]}{'*' * (len(body) - head - tail)}{body[len(body) - tail:]}"


def mask_email(email: str | None) -> str | None:
    """`zhang.wei@example.com` -> `z***@example.com`."""
    if not email:
        return email
    local, at, domain = email.rpartition("@")
    if not at:
        return f"{email[0]}***"
    return f"{local[:1]}***@{domain}"


async def agent_calls(redis: Redis, keys: Keys, session: AsyncSession,
                      agent_id: int) -> AgentCalls:
    current_call = await current_call_id(redis, keys, agent_id)
    current = None
    if current_call:
        # The database, not the live call, is updated when a new caller's customer
        # record is created during the call.
        current = await session.scalar(select(Call.customer_id).where(Call.id == current_call))
    last = await session.scalar(
        select(Interaction.customer_id)
        .where(Interaction.agent_id == agent_id, Interaction.call_id != current_call)
        .order_by(Interaction.offered_at.desc(), Interaction.id.desc()).limit(1))
    return AgentCalls(current, last)


async def current_call_id(redis: Redis, keys: Keys, agent_id: int) -> str:
    """The call the agent is ringing for, talking on or wrapping up; "" when none."""
    state, call_id = await redis.hmget(keys.agent(agent_id), ["state", "call_id"])
    return str(call_id) if call_id and state in ACTIVE_STATES else ""


def took_part(interaction: Interaction, agent_id: int, current_call: str) -> bool:
    """Whether the call is the agent's: it took it, was on it, or is being offered it."""
    return (interaction.agent_id == agent_id or agent_id in (interaction.agent_ids or [])
            or interaction.call_id == current_call)


async def calls_of(redis: Redis, keys: Keys, session: AsyncSession,
                   principal: Principal) -> AgentCalls:
    """The calls that widen what `principal` sees: only an agent's own count."""
    if principal.role is not Role.agent or principal.agent_id is None:
        return AgentCalls()
    return await agent_calls(redis, keys, session, principal.agent_id)
