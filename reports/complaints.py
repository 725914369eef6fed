"""Complaints in the reports: opened in a period, resolved within their SLA, by category.

A complaint counts in the period it was opened in (as a call in the one it was offered
in). It is resolved when it first reached `resolved`; within its SLA when that was no
later than its `sla_due_at`. Read from the complaint records (there are few beside the
calls); a complaint is a queue's through the call it came from, a tier's by the tier it
was opened under.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, text

from core.models import Complaint, ComplaintEvent, UTCDateTime
from reports.figures import ratio
from reports.periods import Range
from reports.sql import moment_of, period_sql
from transcripts.complaints import UNRESOLVED


@dataclass(frozen=True)
class Opened:
    at: dt.datetime
    category: str
    tier: str
    queue: str | None
    state: str
    due: dt.datetime | None
    resolved_at: dt.datetime | None

    @property
    def within_sla(self) -> bool:
        return self.resolved_at is not None and (self.due is None or self.resolved_at <= self.due)


def opened(conn: Connection, rng: Range, queue: str | None = None) -> list[Opened]:
    """The complaints opened in the range (by category: few rows read)."""
    c, e = Complaint, ComplaintEvent
    resolved = (select(func.min(e.at)).where(e.complaint_id == c.id, e.to_state == "resolved")
                .scalar_subquery())
    query = (select(c.created_at, c.category, c.tier, c.queue, c.state, c.sla_due_at, resolved)
             .where(c.created_at >= rng.since, c.created_at < rng.until))
    if queue is not None:
        query = query.where(c.queue == queue)
    return [Opened(*row) for row in conn.execute(query)]


_RESOLVED = ("(SELECT min(e.at) FROM complaint_events e "
             "WHERE e.complaint_id = c.id AND e.to_state = 'resolved')")
_COUNTS = """
SELECT p, g, count(*), sum(CASE WHEN r IS NOT NULL AND (due IS NULL OR r <= due)
                           THEN 1 ELSE 0 END)
FROM (SELECT {period} AS p, {group} AS g, c.sla_due_at AS due, {resolved} AS r
      FROM complaints c
      WHERE c.created_at >= :since AND c.created_at < :until{where}) x
GROUP BY p, g
"""


def add_counts(conn: Connection, sums: dict[tuple[str, str], dict[str, float]],
               totals: dict[str, dict[str, float]], rng: Range, key: str | None,
               queue: str | None = None) -> None:
    """Add the complaints opened in the range to their period's (and group's) sums:
    `complaints_opened` and `complaints_resolved_within_sla`, summed by the database."""
    statement = text(_COUNTS.format(
        period=period_sql(conn, rng, "c.created_at"), group=f"c.{key}" if key else "'center'",
        resolved=_RESOLVED, where=" AND c.queue = :queue" if queue is not None else ""))
    statement = statement.bindparams(bindparam("since", type_=UTCDateTime()),
                                     bindparam("until", type_=UTCDateTime()))
    params = {"since": rng.since, "until": rng.until, "tz": rng.zone.key, "queue": queue}
    for p, group, opened_n, within in conn.execute(statement, params):
        if group is None:
            continue
        for into in (sums.setdefault((rng.period(moment_of(p, rng)), group), {}),
                     totals.setdefault(group, {})):
            into["complaints_opened"] = into.get("complaints_opened", 0) + opened_n
            into["complaints_resolved_within_sla"] = \
                into.get("complaints_resolved_within_sla", 0) + int(within or 0)


def by_category(found: list[Opened], now: dt.datetime) -> list[dict[str, Any]]:
    """Per category: opened, resolved (within and past the SLA), rejected, still open
    (and of those past the SLA), and the time to resolve in hours."""
    groups: dict[str, list[Opened]] = defaultdict(list)
    for complaint in found:
        groups[complaint.category].append(complaint)
    return [_category(name, items, now) for name, items in sorted(groups.items())]


def _category(name: str, items: list[Opened], now: dt.datetime) -> dict[str, Any]:
    hours = [(c.resolved_at - c.at).total_seconds() / 3600 for c in items
             if c.resolved_at is not None]
    within = sum(c.within_sla for c in items)
    still_open = [c for c in items if c.state in UNRESOLVED]
    return {
        "category": name, "opened": len(items), "resolved": len(hours),
        "resolved_within_sla": within, "resolved_late": len(hours) - within,
        "within_sla_rate": ratio(within, len(hours)),
        "rejected": sum(c.state == "rejected" for c in items),
        "open": len(still_open),
        "open_overdue": sum(c.due is not None and c.due <= now for c in still_open),
        "avg_hours_to_resolve": ratio(sum(hours), len(hours), 2),
        "max_hours_to_resolve": round(max(hours), 2) if hours else None,
    }
