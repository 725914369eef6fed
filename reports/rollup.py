"""The report rollups, kept in the transaction that writes the call records.

`Rollups` is a record-writer hook (core/writer.py): after a batch's ops are applied,
in the same transaction, it notes each transfer (`call_transfers`, keeping the leg
that ended as the record held it), recomputes from the records what each call the
batch ended (or surveyed, or transferred) adds to the figures (`report_calls`, one row
per call), and adds the difference from what it added before to the call's rollup row
(15 minutes x queue x tier, `report_intervals`): two statements per batch whatever the
number of calls in the interval. A replayed event finds nothing changed and adds
nothing; additions commute, so two nodes may add to one row at once (on PostgreSQL an
advisory lock per call makes two writers of the same call take turns). A call's
interval, queue and tier are written once, at the offer, so a call never moves rows.

`rebuild` recomputes both tables of a range from the records in two statements.
Each agent's call figures (reports/agent_rollup.py) are kept and rebuilt with them.
The longest wait is a maximum: a delta can raise it, only a rebuild lowers it.
"""

from __future__ import annotations

import datetime as dt
import functools
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, text

from core.models import UTCDateTime
from core.writer import Insert, Op, Update
from reports import agent_rollup
from reports.sql import IDS

INTERVAL = dt.timedelta(minutes=15)
# A call is counted when it ends (its outcome is written), and again when a survey
# answer, the end of its wrap-up or a transfer changes its figures: not at the offer or
# the answer, which would triple the writes for figures the end writes anyway
# (docs/reports.md).
FIGURE_COLUMNS = frozenset({"outcome", "survey_score", "wrap_up_s"})
FIGURES = ("offered", "answered", "answered_within", "abandoned", "abandoned_short", "failed",
           "wait_sum", "wait_max", "talk_n", "talk_sum", "transfers", "csat_n", "csat_sum",
           "csat_good", "wrap_n", "wrap_sum", "hold_sum", "callbacks", "callbacks_connected")
KEY = ("start", "queue", "tier")

# What each call adds to the figures (its columns in the order of FIGURES: a rebuild
# inserts them by position): its first answer (before any transfer) decides
# whether it was answered and after how long. Callbacks are counted apart from the calls
# that waited on the line (docs/reports.md): a call whose caller left for a callback
# (outcome `callback`) was offered but is neither answered nor abandoned; the call that
# placed a callback (`callback_id`) is not offered, answered or waited for, only counted
# in `callbacks_connected` (its talk and wrap-up are agents' work like any other).
_CONTRIBUTION = """
SELECT call_id, start, queue, tier, CASE WHEN callback_id IS NULL THEN 1 ELSE 0 END AS offered,
  CASE WHEN first_answered IS NOT NULL AND callback_id IS NULL THEN 1 ELSE 0 END AS answered,
  CASE WHEN first_answered IS NOT NULL AND callback_id IS NULL AND first_wait <= threshold
    THEN 1 ELSE 0 END AS answered_within,
  CASE WHEN first_answered IS NULL AND outcome = 'abandoned' AND first_wait >= :short
    THEN 1 ELSE 0 END AS abandoned,
  CASE WHEN first_answered IS NULL AND outcome = 'abandoned'
    AND (first_wait < :short OR first_wait IS NULL) THEN 1 ELSE 0 END AS abandoned_short,
  CASE WHEN first_answered IS NULL AND outcome = 'failed' THEN 1 ELSE 0 END AS failed,
  CASE WHEN first_answered IS NOT NULL AND callback_id IS NULL THEN COALESCE(first_wait, 0)
    ELSE 0 END AS wait_sum,
  CASE WHEN callback_id IS NULL THEN COALESCE(first_wait, 0) ELSE 0 END AS wait_max,
  CASE WHEN talk_s IS NULL THEN 0 ELSE 1 END AS talk_n, COALESCE(talk_s, 0) AS talk_sum,
  transfers,
  CASE WHEN survey_score IS NULL THEN 0 ELSE 1 END AS csat_n,
  COALESCE(survey_score, 0) AS csat_sum,
  CASE WHEN survey_score >= 4 THEN 1 ELSE 0 END AS csat_good,
  CASE WHEN wrap_up_s IS NULL THEN 0 ELSE 1 END AS wrap_n, COALESCE(wrap_up_s, 0) AS wrap_sum,
  CASE WHEN talk_s IS NULL THEN 0 ELSE COALESCE(hold_s, 0) END AS hold_sum,
  CASE WHEN outcome = 'callback' THEN 1 ELSE 0 END AS callbacks,
  CASE WHEN callback_id IS NOT NULL THEN 1 ELSE 0 END AS callbacks_connected
FROM (
  SELECT i.call_id, i.queue, i.tier, i.outcome, i.talk_s, i.survey_score, i.wrap_up_s,
         i.hold_s, i.callback_id,
         {bucket} AS start,
         COALESCE(f.answered_at, i.answered_at) AS first_answered,
         CASE WHEN f.event_id IS NULL THEN i.wait_s ELSE f.wait_s END AS first_wait,
         (SELECT count(*) FROM call_transfers c WHERE c.call_id = i.call_id) AS transfers,
         COALESCE(q.sl_threshold_s, :threshold) AS threshold
  FROM interactions i
  LEFT JOIN call_transfers f ON f.call_id = i.call_id AND f.seq = 1
  LEFT JOIN queues q ON q.name = i.queue
  WHERE {where}
) c
"""

# The 15-minute interval a UTC time falls in, as each backend stores times.
_BUCKET = {
    "postgresql": "to_timestamp(floor(extract(epoch FROM i.offered_at) / 900) * 900)",
    "sqlite": ("strftime('%Y-%m-%d %H:', i.offered_at) || printf('%02d', "
               "CAST(strftime('%M', i.offered_at) AS INTEGER) / 15 * 15) || '\\:00.000000'"),
}
_GREATEST = {"postgresql": "GREATEST", "sqlite": "max"}

_TRANSFER = text("""
INSERT INTO call_transfers (event_id, call_id, seq, at, agent_id, queue, answered_at, wait_s)
SELECT :event_id, i.call_id,
       (SELECT count(*) FROM call_transfers c WHERE c.call_id = i.call_id) + 1,
       :at, i.agent_id, i.queue, i.answered_at, i.wait_s
FROM interactions i WHERE i.call_id = :call_id
ON CONFLICT (event_id) DO NOTHING
""").bindparams(bindparam("at", type_=UTCDateTime()))

_LOCK = text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k")
_RANGE = [bindparam("since", type_=UTCDateTime()), bindparam("until", type_=UTCDateTime())]


def interval_start(moment: dt.datetime) -> dt.datetime:
    """The start of the 15-minute interval (UTC) `moment` falls in."""
    moment = moment.astimezone(dt.UTC)
    return moment.replace(minute=moment.minute // 15 * 15, second=0, microsecond=0)


@functools.cache
def _statements(dialect: str) -> tuple[Any, Any]:
    """Add to each rollup row what its calls' figures changed by; then keep the figures."""
    calls = _CONTRIBUTION.format(bucket=_BUCKET[dialect], where="i.call_id IN :ids")
    changes = ", ".join(
        "max(n.wait_max)" if f == "wait_max" else f"sum(n.{f} - COALESCE(o.{f}, 0))"
        for f in FIGURES)
    adds = ", ".join(
        f"wait_max = {_GREATEST[dialect]}(report_intervals.wait_max, excluded.wait_max)"
        if f == "wait_max" else f"{f} = report_intervals.{f} + excluded.{f}" for f in FIGURES)
    add = text(
        f"INSERT INTO report_intervals (start, queue, tier, {', '.join(FIGURES)}) "
        f"SELECT n.start, n.queue, n.tier, {changes} FROM ({calls}) n "
        f"LEFT JOIN report_calls o ON o.call_id = n.call_id "
        f"GROUP BY n.start, n.queue, n.tier "
        f"ON CONFLICT (start, queue, tier) DO UPDATE SET {adds}")
    names = ", ".join(("call_id", *KEY, *FIGURES))
    keep = text(
        f"INSERT INTO report_calls ({names}) SELECT {names} FROM ({calls}) n WHERE true "
        f"ON CONFLICT (call_id) DO UPDATE SET "
        + ", ".join(f"{f} = excluded.{f}" for f in FIGURES))
    ids: BindParameter[Any] = bindparam("ids", expanding=True)
    return add.bindparams(ids), keep.bindparams(ids)


@functools.cache
def _one_statement() -> Any:
    """PostgreSQL: both in one statement; the main query still reads the old figures
    (a data-modifying WITH and its statement see the same snapshot)."""
    calls = _CONTRIBUTION.format(bucket=_BUCKET["postgresql"], where=f"i.call_id = {IDS}")
    names = ", ".join(("call_id", *KEY, *FIGURES))
    changes = ", ".join(
        "max(n.wait_max)" if f == "wait_max" else f"sum(n.{f} - COALESCE(o.{f}, 0))"
        for f in FIGURES)
    adds = ", ".join(
        "wait_max = GREATEST(report_intervals.wait_max, excluded.wait_max)"
        if f == "wait_max" else f"{f} = report_intervals.{f} + excluded.{f}" for f in FIGURES)
    return text(
        f"WITH n AS ({calls}), kept AS (INSERT INTO report_calls ({names}) "
        f"SELECT {names} FROM n ON CONFLICT (call_id) DO UPDATE SET "
        + ", ".join(f"{f} = excluded.{f}" for f in FIGURES) + ") "
        f"INSERT INTO report_intervals (start, queue, tier, {', '.join(FIGURES)}) "
        f"SELECT n.start, n.queue, n.tier, {changes} FROM n "
        f"LEFT JOIN report_calls o ON o.call_id = n.call_id "
        f"GROUP BY n.start, n.queue, n.tier "
        f"ON CONFLICT (start, queue, tier) DO UPDATE SET {adds}")


@dataclass(frozen=True)
class Rollups:
    """The record-writer hook. `threshold_s` is the service-level threshold of a queue
    without its own; `short_abandon_s` the setting of that name; `zone` the center's
    time zone (the agents' days)."""

    threshold_s: float = 20.0
    short_abandon_s: float = 5.0
    zone: str = "UTC"

    def __call__(self, conn: Connection, ops: list[Op]) -> None:
        transfers = [op.values for op in ops if isinstance(op, Insert)
                     and op.table == "processed_events"
                     and op.values.get("type") == "call.transferred"]
        for values in transfers:
            conn.execute(_TRANSFER, {"event_id": values["event_id"],
                                     "call_id": values["call_id"], "at": values["received_at"]})
        touched = touched_calls(ops) | {v["call_id"] for v in transfers}
        if touched:
            self.count(conn, sorted(touched))

    def count(self, conn: Connection, call_ids: list[str]) -> None:
        """Bring the rollups up to date with these calls' records."""
        dialect = conn.dialect.name
        params = {"ids": call_ids, "threshold": self.threshold_s, "short": self.short_abandon_s}
        if dialect == "postgresql":
            # Its own statement: a statement's snapshot is taken before it would wait.
            conn.execute(_LOCK, {"keys": [zlib.crc32(c.encode()) for c in call_ids]})
            conn.execute(_one_statement(), params)
        else:
            add, keep = _statements(dialect)
            conn.execute(add, params)
            conn.execute(keep, params)
        agent_rollup.count(conn, call_ids, self.zone)

    def rebuild(self, conn: Connection, since: dt.datetime, until: dt.datetime) -> None:
        """Recompute the rollups of the intervals in [since, until) from the records."""
        since, until = interval_start(since), interval_start(until - dt.timedelta.resolution)
        until += INTERVAL
        bounds = {"since": since, "until": until}
        for table in ("report_intervals", "report_calls"):
            conn.execute(text(f"DELETE FROM {table} WHERE start >= :since AND start < :until")
                         .bindparams(*_RANGE), bounds)
        dialect = conn.dialect.name
        names = ", ".join(("call_id", *KEY, *FIGURES))
        calls = _CONTRIBUTION.format(bucket=_BUCKET[dialect],
                                     where="i.offered_at >= :since AND i.offered_at < :until")
        conn.execute(text(f"INSERT INTO report_calls ({names}) {calls}").bindparams(*_RANGE),
                     {**bounds, "threshold": self.threshold_s, "short": self.short_abandon_s})
        sums = ", ".join(f"max({f})" if f == "wait_max" else f"sum({f})" for f in FIGURES)
        conn.execute(text(
            f"INSERT INTO report_intervals (start, queue, tier, {', '.join(FIGURES)}) "
            f"SELECT start, queue, tier, {sums} FROM report_calls "
            f"WHERE start >= :since AND start < :until GROUP BY start, queue, tier"
        ).bindparams(*_RANGE), bounds)
        agent_rollup.rebuild(conn, since, until, self.zone)


def touched_calls(ops: Iterable[Op]) -> set[str]:
    """Calls whose figures these ops may move."""
    calls: set[str] = set()
    for op in ops:
        if isinstance(op, Update) and op.table == "interactions" \
                and FIGURE_COLUMNS.intersection(op.values):
            calls.add(op.ident)
    return calls
