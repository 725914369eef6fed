"""Quality scores over time: the average score by period and agent, queue or question.

An evaluation counts in the period of its call (the center's days, weeks or months).
By question, each applicable answer counts as the share of the question's weight it
earned (0..100); a not-applicable answer does not count. Rows are sorted by period,
then group.
"""

from __future__ import annotations

from collections import defaultdict
from enum import Enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import QualityEvaluation
from quality.evaluations import names
from quality.forms import questions
from quality.scoring import fraction
from reports.periods import Range

Key = tuple[str, str]  # (period, group)


class By(str, Enum):
    agent = "agent"
    queue = "queue"
    question = "question"


async def scores(session: AsyncSession, rng: Range, by: By,
                 agent_id: int | None = None) -> dict[str, Any]:
    query = select(QualityEvaluation).where(QualityEvaluation.call_at >= rng.since,
                                            QualityEvaluation.call_at < rng.until)
    if agent_id is not None:
        query = query.where(QualityEvaluation.agent_id == agent_id)
    evaluations = list(await session.scalars(query))
    if by is By.question:
        rows = _by_question(rng, evaluations)
    else:
        agent_names = await names(session, {e.agent_id for e in evaluations})
        rows = _by_group(rng, evaluations, by, agent_names)
    return {**rng.bounds(), "by": by.value, "rows": rows}


def _by_group(rng: Range, evaluations: list[QualityEvaluation], by: By,
              agent_names: dict[int, str]) -> list[dict[str, Any]]:
    sums: dict[Key, list[float]] = defaultdict(list)
    failed: dict[Key, int] = defaultdict(int)
    for e in evaluations:
        key = (rng.period(e.call_at), str(e.agent_id) if by is By.agent else e.queue)
        sums[key].append(e.score)
        failed[key] += e.critical_failed
    rows = []
    for (period, group), values in sorted(sums.items()):
        row: dict[str, Any] = {"period": period, "evaluations": len(values),
                               "average": round(sum(values) / len(values), 2),
                               "lowest": min(values), "highest": max(values),
                               "critical_failed": failed[(period, group)]}
        if by is By.agent:
            row |= {"agent_id": int(group), "agent_name": agent_names.get(int(group), "")}
        else:
            row["queue"] = group
        rows.append(row)
    return rows


def _by_question(rng: Range, evaluations: list[QualityEvaluation]) -> list[dict[str, Any]]:
    """A question is known by its form and key (two forms may both have a `q1`)."""
    shares: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    texts: dict[tuple[int, str], str] = {}
    for e in evaluations:
        period = rng.period(e.call_at)
        for question in questions(e.form.get("sections", [])):
            share = fraction(question, e.answers.get(question["key"], "na"))
            texts[(e.form_id, question["key"])] = question["text"]
            if share is not None:
                shares[(period, e.form_id, question["key"])].append(100 * share)
    return [{"period": period, "form_id": form_id, "question": key,
             "text": texts[(form_id, key)], "answers": len(values),
             "average": round(sum(values) / len(values), 2)}
            for (period, form_id, key), values in sorted(shares.items())]
