"""Which calls to evaluate in a week: every complaint-flagged call, plus `per_agent`
random calls of each agent, drawn from a seed so the same week, seed and calls give the
same proposal on any node, any day.

Candidates are the week's answered calls with a recording (nothing else can be
evaluated), in the center's time zone. A call is complaint-flagged when the complaint
detector flagged its transcript or a complaint names it. Each agent's draw uses its own
random generator, seeded with (seed, week, agent), over its calls sorted by id: one
agent's new call does not change another agent's draw. Calls evaluated already are
still proposed, marked `evaluated`, so the proposal does not change as the work is done.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Complaint, Interaction, QualityEvaluation
from quality.evaluations import names
from quality.exceptions import InvalidAnswers
from quality.store import iso

WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
PER_AGENT_MAX = 100


@dataclass(frozen=True)
class Week:
    year: int
    week: int
    zone: ZoneInfo

    @classmethod
    def parse(cls, raw: str | None, zone: ZoneInfo, today: dt.date) -> Week:
        if not raw:
            year, week, _ = today.isocalendar()
            return cls(year, week, zone)
        match = WEEK.match(raw)
        try:
            if match is None:
                raise ValueError(raw)
            dt.date.fromisocalendar(int(match[1]), int(match[2]), 1)
        except ValueError:
            raise InvalidAnswers("week must be an ISO week such as 2026-W49") from None
        return cls(int(match[1]), int(match[2]), zone)

    def __str__(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        monday = dt.date.fromisocalendar(self.year, self.week, 1)
        start = dt.datetime.combine(monday, dt.time(), self.zone)
        return start.astimezone(dt.UTC), (start + dt.timedelta(days=7)).astimezone(dt.UTC)


def draw(calls_by_agent: dict[int, list[int]], flagged: set[int], per_agent: int,
         seed: str, week: Week) -> dict[int, list[int]]:
    """The random picks per agent (call record ids), excluding the flagged calls."""
    picks: dict[int, list[int]] = {}
    for agent_id in sorted(calls_by_agent):
        pool = sorted(i for i in calls_by_agent[agent_id] if i not in flagged)
        rng = random.Random(f"{seed}|{week}|{agent_id}")
        picks[agent_id] = sorted(rng.sample(pool, min(per_agent, len(pool))))
    return picks


async def propose(session: AsyncSession, week: Week, per_agent: int,
                  seed: str) -> dict[str, Any]:
    start, end = week.bounds()
    rows = list(await session.execute(
        select(Interaction.id, Interaction.agent_id, Interaction.call_id, Interaction.queue,
               Interaction.offered_at, Interaction.complaint_flag)
        .where(Interaction.offered_at >= start, Interaction.offered_at < end,
               Interaction.recording_path.is_not(None), Interaction.agent_id.is_not(None),
               Interaction.outcome == "answered")))
    ids = [row.id for row in rows]
    named = set(await session.scalars(select(Complaint.interaction_id)
                                      .where(Complaint.interaction_id.in_(ids or [-1]))))
    flagged = {row.id for row in rows if row.complaint_flag or row.id in named}
    by_agent: dict[int, list[int]] = {}
    for row in rows:
        by_agent.setdefault(row.agent_id, []).append(row.id)
    picks = draw(by_agent, flagged, per_agent, seed, week)
    chosen = {i: "complaint" for i in flagged} | {i: "random" for p in picks.values()
                                                   for i in p}
    evaluated = set(await session.scalars(
        select(QualityEvaluation.interaction_id)
        .where(QualityEvaluation.interaction_id.in_(list(chosen) or [-1]))))
    agent_names = await names(session, set(by_agent))
    calls = [{"interaction_id": row.id, "call_id": row.call_id, "agent_id": row.agent_id,
              "agent_name": agent_names.get(row.agent_id, ""), "queue": row.queue,
              "offered_at": iso(row.offered_at),
              "reason": chosen[row.id], "evaluated": row.id in evaluated}
             for row in sorted(rows, key=lambda r: (r.agent_id, r.id)) if row.id in chosen]
    return {"week": str(week), "seed": seed, "per_agent": per_agent,
            "from": iso(start), "to": iso(end), "calls": calls}
