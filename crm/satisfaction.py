"""The satisfaction index c = b / a: perceived performance over expectation.

Both come from the post-call IVR survey (`survey.result`'s optional `perception` and
`expectation`, 1..5). c = 1 means the call met what the caller expected, above 1
exceeded it, below 1 fell short. Reported per customer, agent, queue and tier as the
mean of each surveyed call's c.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Float, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Interaction

GROUPS = {"customer": Interaction.customer_id, "agent": Interaction.agent_id,
          "queue": Interaction.queue, "tier": Interaction.tier}


def satisfaction_index(expectation: float, perception: float) -> float:
    """c = b / a for one survey (a = expectation, b = perception)."""
    if expectation <= 0:
        raise ValueError("expectation must be positive")
    return perception / expectation


def c_column() -> Any:
    return cast(Interaction.survey_perception, Float) / Interaction.survey_expectation


def _surveyed() -> Any:
    return (Interaction.survey_expectation.is_not(None)
            & Interaction.survey_perception.is_not(None))


async def satisfaction_by(session: AsyncSession, group: str,
                          since: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Mean c and survey count per customer, agent, queue or tier."""
    key = GROUPS[group]
    query = (select(key, func.avg(c_column()), func.count())
             .where(_surveyed(), key.is_not(None)).group_by(key).order_by(key))
    if since is not None:
        query = query.where(Interaction.offered_at >= since)
    rows = await session.execute(query)
    return [{group: k, "c": round(float(c), 4), "surveys": n} for k, c, n in rows]


def customer_satisfaction_query(since: dt.datetime | None, until: dt.datetime) -> Any:
    query = (select(Interaction.customer_id, func.avg(c_column()))
             .where(_surveyed(), Interaction.customer_id.is_not(None),
                    Interaction.offered_at < until)
             .group_by(Interaction.customer_id))
    return query if since is None else query.where(Interaction.offered_at >= since)
