"""Complaints as other systems see them: the API's shape, and `complaint.*` webhook events.

Every change of a complaint is announced the same way, whoever made it: a person through
the API, the transcription worker's detector (`complaint.received`) or the SLA sweep
(`complaint.escalated`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from redis.asyncio import Redis

from core import outbox
from core.models import Complaint


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def complaint_dict(c: Complaint) -> dict[str, Any]:
    return {
        "id": c.id, "customer_id": c.customer_id, "interaction_id": c.interaction_id,
        "category": c.category, "state": c.state, "source": c.source, "summary": c.summary,
        "score": c.score, "evidence": c.evidence, "cause_side": c.cause_side,
        "resolution": c.resolution, "rejection_reason": c.rejection_reason,
        "assigned_agent_id": c.assigned_agent_id, "tier": c.tier,
        "sla_due_at": iso(c.sla_due_at), "escalation_level": c.escalation_level,
        "created_by": c.created_by, "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at), "closed_at": iso(c.closed_at),
    }


async def announce(redis: Redis, stream: str, kind: str, complaint: Complaint) -> None:
    """`complaint.<kind>` to the webhooks (one XADD; logged, not raised, if Redis is away)."""
    await outbox.emit_quietly(redis, stream, f"complaint.{kind}",
                              {**complaint_dict(complaint), "complaint_id": complaint.id},
                              order_key=f"complaint:{complaint.id}")
