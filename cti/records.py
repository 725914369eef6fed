"""What the call path writes to the system of record."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Interaction, ProcessedEvent
from core.writer import Insert, Op, Update, loads, numbered


def at(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


async def event_seen(session: AsyncSession, event_id: str) -> bool:
    return await session.get(ProcessedEvent, event_id) is not None


async def recording_announced(session: AsyncSession, call_id: str, event_id: str) -> bool:
    """Whether another recording.ready event of this call was stored."""
    found = await session.scalar(select(ProcessedEvent.event_id).where(
        ProcessedEvent.call_id == call_id, ProcessedEvent.type == "recording.ready",
        ProcessedEvent.event_id != event_id).limit(1))
    return found is not None


# Writes in a caller's own session, for what does not go through the event path (the
# ARI adapter's recording paths).

async def mark_event(session: AsyncSession, event_id: str, call_id: str, kind: str) -> None:
    await session.execute(insert(ProcessedEvent).values(
        event_id=event_id, call_id=call_id, type=kind, received_at=dt.datetime.now(dt.UTC)))


async def set_interaction(session: AsyncSession, call_id: str, **values: Any) -> None:
    await session.execute(
        update(Interaction).where(Interaction.call_id == call_id).values(**values))


async def interaction(session: AsyncSession, call_id: str) -> Interaction | None:
    return await session.scalar(select(Interaction).where(Interaction.call_id == call_id))


# The number of a call's first write (routing/transitions.py: the offer's step starts
# the call's count; core/sequenced.py orders the later writes by it).
OFFER_SEQ = 1


# The event path's writes, as operations for the group-commit writer
# (core/writer.py): built when an event is applied, kept in Redis until stored.

def offer_ops(*, event_id: str, call_id: str, queue: str, ani: str, dnis: str,
              customer_id: str | None, tier: str, ivr: dict[str, Any], offered_at: float,
              node_id: str, integration: str) -> list[Op]:
    when = at(offered_at)
    return [
        Insert("calls", {"id": call_id, "state": "queued", "queue": queue, "ani": ani,
                         "dnis": dnis, "customer_id": customer_id, "tier": tier,
                         "ivr": {**ivr, "_integration": integration}, "offered_at": when,
                         "updated_at": when, "node_id": node_id, "agent_id": None,
                         "seq": OFFER_SEQ}),
        Insert("interactions", {"call_id": call_id, "customer_id": customer_id, "queue": queue,
                                "tier": tier, "ani": ani, "ivr": ivr, "offered_at": when,
                                "agent_ids": [], "routing_reason": {},
                                "transcript_status": "none", "complaint_flag": False,
                                "seq": OFFER_SEQ}),
        event_op(event_id, call_id, "call.offered"),
    ]


def owed(value: str) -> list[Op]:
    """The writes an event's key holds: "<number> <writes>" (routing/transitions.py mark),
    or the writes alone (an offer's, whose number is in its rows)."""
    number, _, data = value.partition(" ")
    if number.isdigit():
        return numbered(loads(data), int(number))
    return loads(value)


def event_op(event_id: str, call_id: str, kind: str) -> Op:
    return Insert("processed_events", {"event_id": event_id, "call_id": call_id, "type": kind,
                                       "received_at": dt.datetime.now(dt.UTC)},
                  skip_existing=True)


def call_op(call_id: str, **values: Any) -> Op:
    """A change of a call's row. The event path writes the row's state, queue and agent
    together, so the newest numbered write alone says where the call is
    (core/sequenced.py: an older write stored later changes nothing)."""
    return Update("calls", "id", call_id, values)


def interaction_op(call_id: str, **values: Any) -> Op:
    return Update("interactions", "call_id", call_id, values)
