"""Satisfaction (CSAT) per agent, queue and tier, and complaint counts, for the wallboard."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Agent, Complaint, Interaction
from crm.open_complaints import is_open_complaint
from transcripts.complaints import UNRESOLVED

# A survey scored 4 or 5 (of 5) is a satisfied customer: CSAT is their share.
SATISFIED = 4


def _csat_columns() -> tuple[Any, ...]:
    score = Interaction.survey_score
    return (func.count(score), func.avg(score),
            func.sum(case((score >= SATISFIED, 1), else_=0)))


def _row(surveys: int, average: float | None, satisfied: int | None) -> dict[str, Any]:
    return {"surveys": surveys, "average": round(float(average or 0), 2),
            "csat": round((satisfied or 0) / surveys, 3) if surveys else None}


async def csat(session: AsyncSession, since: dt.datetime | None = None) -> dict[str, Any]:
    where: list[ColumnElement[bool]] = [Interaction.survey_score.is_not(None)]
    if since is not None:
        where.append(Interaction.offered_at >= since)
    result: dict[str, Any] = {}
    for name, column in (("queues", Interaction.queue), ("tiers", Interaction.tier)):
        rows = await session.execute(select(column, *_csat_columns()).where(*where)
                                     .group_by(column).order_by(column))
        result[name] = [{name[:-1]: key, **_row(*rest)} for key, *rest in rows]
    rows = await session.execute(
        select(Interaction.agent_id, Agent.display_name, *_csat_columns())
        .outerjoin(Agent, Agent.id == Interaction.agent_id)
        .where(*where, Interaction.agent_id.is_not(None))
        .group_by(Interaction.agent_id, Agent.display_name).order_by(Interaction.agent_id))
    result["agents"] = [{"agent_id": agent_id, "name": name, **_row(*rest)}
                        for agent_id, name, *rest in rows]
    overall = (await session.execute(select(*_csat_columns()).where(*where))).one()
    result["overall"] = _row(*overall)
    return result


async def complaint_counts(session: AsyncSession, now: dt.datetime) -> dict[str, Any]:
    by_state = dict((await session.execute(
        select(Complaint.state, func.count()).group_by(Complaint.state))).all())
    unresolved = Complaint.state.in_(UNRESOLVED)
    overdue = await session.scalar(select(func.count()).select_from(Complaint).where(
        unresolved, Complaint.sla_due_at <= now))
    levels = dict((await session.execute(
        select(Complaint.escalation_level, func.count())
        .where(unresolved, Complaint.escalation_level > 0)
        .group_by(Complaint.escalation_level))).all())
    detected = await session.scalar(select(func.count()).select_from(Complaint).where(
        Complaint.source == "detected"))
    return {"by_state": by_state,
            "open": await session.scalar(select(func.count()).select_from(Complaint).where(
                is_open_complaint())),
            "overdue": overdue, "detected": detected,
            "escalated": {str(level): count for level, count in sorted(levels.items())}}
