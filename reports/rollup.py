"""The report rollups, kept in the transaction that writes the call records.

`Rollups` is a record-writer hook (core/writer.py): after a batch's ops are applied,
in the same transaction, it notes each transfer (`call_transfers`, keeping the leg
that ended as the record held it) and recomputes, from the records, every rollup row
(15 minutes x queue x tier) whose calls the batch touched. Recomputing rather than
adding deltas makes a replayed event harmless, and `rebuild` is the same query over
a whole range. On PostgreSQL a transaction-scoped advisory lock per rollup row makes
two nodes recomputing the same row take turns, so the second sees the first's calls.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, text

from core.models import Interaction, UTCDateTime
from core.writer import Insert, Op, Update

INTERVAL = dt.timedelta(minutes=15)
# Interaction columns whose change moves a figure; others (transcripts) move none.
FIGURE_COLUMNS = frozenset({"answered_at", "ended_at", "outcome", "wait_s", "talk_s",
                            "survey_score", "agent_id"})
FIGURES = ("offered", "answered", "answered_within", "abandoned", "abandoned_short", "failed",
           "wait_sum", "wait_max", "talk_n", "talk_sum", "transfers", "csat_n", "csat_sum",
           "csat_good")

# One row per call, as the figures see it: its first answer (before any transfer) and
# its number of transfers.
_CALLS = """
SELECT i.queue, i.tier, i.outcome, i.talk_s, i.survey_score, {bucket} AS start,
       COALESCE(f.answered_at, i.answered_at) AS first_answered,
       CASE WHEN f.event_id IS NULL THEN i.wait_s ELSE f.wait_s END AS first_wait,
       (SELECT count(*) FROM call_transfers c WHERE c.call_id = i.call_id) AS transfers,
       COALESCE(q.sl_threshold_s, :threshold) AS threshold
FROM interactions i
LEFT JOIN call_transfers f ON f.call_id = i.call_id AND f.seq = 1
LEFT JOIN queues q ON q.name = i.queue
WHERE i.offered_at >= :since AND i.offered_at < :until {where}
"""

_AGGREGATE = """
INSERT INTO report_intervals (start, queue, tier, {figures})
SELECT start, queue, tier,
  count(*),
  COALESCE(sum(CASE WHEN first_answered IS NOT NULL THEN 1 ELSE 0 END), 0),
  COALESCE(sum(CASE WHEN first_answered IS NOT NULL AND first_wait <= threshold
                    THEN 1 ELSE 0 END), 0),
  COALESCE(sum(CASE WHEN first_answered IS NULL AND outcome = 'abandoned'
                     AND first_wait >= :short THEN 1 ELSE 0 END), 0),
  COALESCE(sum(CASE WHEN first_answered IS NULL AND outcome = 'abandoned'
                     AND (first_wait < :short OR first_wait IS NULL) THEN 1 ELSE 0 END), 0),
  COALESCE(sum(CASE WHEN first_answered IS NULL AND outcome = 'failed' THEN 1 ELSE 0 END), 0),
  COALESCE(sum(CASE WHEN first_answered IS NOT NULL THEN first_wait END), 0),
  COALESCE(max(first_wait), 0),
  count(talk_s), COALESCE(sum(talk_s), 0),
  COALESCE(sum(transfers), 0),
  count(survey_score), COALESCE(sum(survey_score), 0),
  COALESCE(sum(CASE WHEN survey_score >= 4 THEN 1 ELSE 0 END), 0)
FROM ({calls}) c
GROUP BY start, queue, tier
ON CONFLICT (start, queue, tier) DO UPDATE SET {updates}
"""

# The 15-minute interval a UTC time falls in, as each backend stores times.
_BUCKET = {
    "postgresql": "to_timestamp(floor(extract(epoch FROM i.offered_at) / 900) * 900)",
    "sqlite": ("strftime('%Y-%m-%d %H:', i.offered_at) || printf('%02d', "
               "CAST(strftime('%M', i.offered_at) AS INTEGER) / 15 * 15) || '\\:00.000000'"),
}

_TRANSFER = text("""
INSERT INTO call_transfers (event_id, call_id, seq, at, agent_id, queue, answered_at, wait_s)
SELECT :event_id, i.call_id,
       (SELECT count(*) FROM call_transfers c WHERE c.call_id = i.call_id) + 1,
       :at, i.agent_id, i.queue, i.answered_at, i.wait_s
FROM interactions i WHERE i.call_id = :call_id
ON CONFLICT (event_id) DO NOTHING
""").bindparams(bindparam("at", type_=UTCDateTime()))


def interval_start(moment: dt.datetime) -> dt.datetime:
    """The start of the 15-minute interval (UTC) `moment` falls in."""
    moment = moment.astimezone(dt.UTC)
    return moment.replace(minute=moment.minute // 15 * 15, second=0, microsecond=0)


def aggregate(dialect: str, where: str = "") -> Any:
    figures = ", ".join(FIGURES)
    updates = ", ".join(f"{f} = excluded.{f}" for f in FIGURES)
    calls = _CALLS.format(bucket=_BUCKET[dialect], where=where)
    return text(_AGGREGATE.format(figures=figures, calls=calls, updates=updates)).bindparams(
        bindparam("since", type_=UTCDateTime()), bindparam("until", type_=UTCDateTime()))


@dataclass(frozen=True)
class Rollups:
    """The record-writer hook. `threshold_s` is the service-level threshold of a queue
    without its own; `short_abandon_s` the setting of that name."""

    threshold_s: float = 20.0
    short_abandon_s: float = 5.0

    def __call__(self, conn: Connection, ops: list[Op]) -> None:
        transfers = [op.values for op in ops if isinstance(op, Insert)
                     and op.table == "processed_events"
                     and op.values.get("type") == "call.transferred"]
        for values in transfers:
            conn.execute(_TRANSFER, {"event_id": values["event_id"],
                                     "call_id": values["call_id"], "at": values["received_at"]})
        touched = touched_calls(ops) | {v["call_id"] for v in transfers}
        if touched:
            self.refresh(conn, rows_of(conn, touched))

    def refresh(self, conn: Connection, rows: Iterable[tuple[dt.datetime, str, str]]) -> None:
        """Recompute these rollup rows (interval start, queue, tier) from the records."""
        dialect = conn.dialect.name
        statement = aggregate(dialect, "AND i.queue = :queue AND i.tier = :tier")
        for start, queue, tier in sorted(set(rows)):
            if dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                             {"k": zlib.crc32(f"{start.isoformat()}|{queue}|{tier}".encode())})
            conn.execute(statement, self._params(start, start + INTERVAL, queue=queue,
                                                 tier=tier))

    def rebuild(self, conn: Connection, since: dt.datetime, until: dt.datetime) -> None:
        """Recompute every rollup row of the intervals in [since, until) from the records."""
        since, until = interval_start(since), interval_start(until - dt.timedelta.resolution)
        until += INTERVAL
        conn.execute(text("DELETE FROM report_intervals WHERE start >= :since AND start < :until")
                     .bindparams(bindparam("since", type_=UTCDateTime()),
                                 bindparam("until", type_=UTCDateTime())),
                     {"since": since, "until": until})
        conn.execute(aggregate(conn.dialect.name), self._params(since, until))

    def _params(self, since: dt.datetime, until: dt.datetime, **extra: Any) -> dict[str, Any]:
        return {"since": since, "until": until, "threshold": self.threshold_s,
                "short": self.short_abandon_s, **extra}


def touched_calls(ops: Iterable[Op]) -> set[str]:
    """Calls whose figures these ops may move."""
    calls: set[str] = set()
    for op in ops:
        if isinstance(op, Insert) and op.table == "interactions":
            calls.add(op.values["call_id"])
        elif isinstance(op, Update) and op.table == "interactions" \
                and FIGURE_COLUMNS.intersection(op.values):
            calls.add(op.ident)
    return calls


def rows_of(conn: Connection, call_ids: set[str]) -> set[tuple[dt.datetime, str, str]]:
    found = conn.execute(select(Interaction.offered_at, Interaction.queue, Interaction.tier)
                         .where(Interaction.call_id.in_(sorted(call_ids))))
    return {(interval_start(offered), queue, tier) for offered, queue, tier in found}
