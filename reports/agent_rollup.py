"""The agent call rollup: each agent's call figures per 15 minutes (UTC) of the offer.

Kept by the call rollups' hook (reports/rollup.py), in the same transaction, for the
same calls and under the same per-call lock: what each call adds to each agent
(`report_call_agents`, one row per call and agent) is recomputed from the records, and
the difference from what it added before goes to the agent's row
(`report_agent_intervals`). An agent who answered the call's last leg handled it (its
talk, hold, wrap-up and survey); each transfer leg an agent answered counts as a call
handled and a transfer made by that agent. One statement per batch on PostgreSQL,
three otherwise; a replayed event adds nothing. `rebuild` recomputes a range from the records.
On PostgreSQL the same statement adds the same differences to the agents' local days
and hours (`report_agent_days`, `report_agent_hours`: reports/agent_days.py).
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, text

from core.models import UTCDateTime
from reports import agent_days
from reports.sql import IDS, bucket

FIGURES = agent_days.CALL_FIGURES

# Per call and agent: the last leg's answering agent, then each transfer leg's agent.
_CONTRIBUTION = """
SELECT call_id, agent_id, start, {sums} FROM (
  SELECT i.call_id, i.agent_id, {bucket} AS start, 1 AS handled, 0 AS transfers,
    CASE WHEN i.talk_s IS NULL THEN 0 ELSE 1 END AS talk_n, COALESCE(i.talk_s, 0) AS talk_sum,
    CASE WHEN i.wrap_up_s IS NULL THEN 0 ELSE 1 END AS wrap_n,
    COALESCE(i.wrap_up_s, 0) AS wrap_sum,
    CASE WHEN i.survey_score IS NULL THEN 0 ELSE 1 END AS csat_n,
    COALESCE(i.survey_score, 0) AS csat_sum,
    CASE WHEN i.talk_s IS NULL THEN 0 ELSE COALESCE(i.hold_s, 0) END AS hold_sum
  FROM interactions i
  WHERE {where} AND i.agent_id IS NOT NULL AND i.answered_at IS NOT NULL
  UNION ALL
  SELECT i.call_id, t.agent_id, {bucket}, 1, 1, 0, 0, 0, 0, 0, 0, 0
  FROM call_transfers t JOIN interactions i ON i.call_id = t.call_id
  WHERE {where} AND t.agent_id IS NOT NULL
) legs GROUP BY call_id, agent_id, start
"""
_RANGE = [bindparam("since", type_=UTCDateTime()), bindparam("until", type_=UTCDateTime())]


def _contribution(dialect: str, where: str) -> str:
    sums = ", ".join(f"sum({f}) AS {f}" for f in FIGURES)
    return _CONTRIBUTION.format(sums=sums, bucket=bucket(dialect, "i.offered_at"), where=where)


@functools.cache
def _statements(dialect: str) -> tuple[Any, Any, Any]:
    """Add the difference between the calls' new and kept figures to the agents' rows;
    then keep the new figures."""
    names = ", ".join(FIGURES)
    new = _contribution(dialect, "i.call_id IN :ids")
    negated = ", ".join(f"-{f}" for f in FIGURES)
    sums = ", ".join(f"sum({f})" for f in FIGURES)
    adds = ", ".join(f"{f} = report_agent_intervals.{f} + excluded.{f}" for f in FIGURES)
    add = text(
        f"INSERT INTO report_agent_intervals (start, agent_id, {names}) "
        f"SELECT start, agent_id, {sums} FROM ("
        f"SELECT start, agent_id, {names} FROM ({new}) n UNION ALL "
        f"SELECT start, agent_id, {negated} FROM report_call_agents WHERE call_id IN :ids"
        f") d GROUP BY start, agent_id "
        f"ON CONFLICT (start, agent_id) DO UPDATE SET {adds}")
    forget = text("DELETE FROM report_call_agents WHERE call_id IN :ids")
    keep = text(f"INSERT INTO report_call_agents (call_id, agent_id, start, {names}) {new}")
    ids: BindParameter[Any] = bindparam("ids", expanding=True)
    return add.bindparams(ids), forget.bindparams(ids), keep.bindparams(ids)


@functools.cache
def _one_statement() -> Any:
    """PostgreSQL: the three in one statement, and the days and hours; the main query reads the
    kept figures as they were (a data-modifying WITH and its statement see the same
    snapshot)."""
    names = ", ".join(FIGURES)
    new = _contribution("postgresql", f"i.call_id = {IDS}")
    negated = ", ".join(f"-{f}" for f in FIGURES)
    sums = ", ".join(f"sum({f}) AS {f}" for f in FIGURES)
    return text(
        f"WITH n AS ({new}), "
        f"gone AS (DELETE FROM report_call_agents r WHERE r.call_id = {IDS} AND NOT EXISTS "
        f"(SELECT 1 FROM n WHERE n.call_id = r.call_id AND n.agent_id = r.agent_id)), "
        f"kept AS (INSERT INTO report_call_agents (call_id, agent_id, start, {names}) "
        f"SELECT call_id, agent_id, start, {names} FROM n ON CONFLICT (call_id, agent_id) "
        f"DO UPDATE SET " + ", ".join(f"{f} = excluded.{f}" for f in FIGURES) + "), "
        f"d AS (SELECT start, agent_id, {sums} FROM ("
        f"SELECT start, agent_id, {names} FROM n UNION ALL "
        f"SELECT start, agent_id, {negated} FROM report_call_agents WHERE call_id = {IDS}"
        f") x GROUP BY start, agent_id), "
        f"days AS ({agent_days.add_calls_sql(agent_days.DAYS, 'd')}), "
        f"hours AS ({agent_days.add_calls_sql(agent_days.HOURS, 'd')}) "
        f"INSERT INTO report_agent_intervals (start, agent_id, {names}) "
        f"SELECT start, agent_id, {names} FROM d ON CONFLICT (start, agent_id) DO UPDATE SET "
        + ", ".join(f"{f} = report_agent_intervals.{f} + excluded.{f}" for f in FIGURES))


def count(conn: Connection, call_ids: list[str], zone: str = "UTC") -> None:
    """Bring the agents' rows up to date with these calls' records (the caller holds the
    calls' locks); `zone`: the center's, whose local days are kept on PostgreSQL."""
    if conn.dialect.name == "postgresql":  # the days and hours too: agent_days.take_turns
        agent_days.take_turns(conn)
        conn.execute(_one_statement(), {"ids": call_ids, "zone": zone})
        return
    for statement in _statements(conn.dialect.name):
        conn.execute(statement, {"ids": call_ids})


def rebuild(conn: Connection, since: Any, until: Any, zone: str = "UTC") -> None:
    """Recompute the intervals in [since, until) (15-minute aligned) from the records,
    then the local days of `zone` and the hours they touch."""
    bounds = {"since": since, "until": until}
    for table in ("report_agent_intervals", "report_call_agents"):
        conn.execute(text(f"DELETE FROM {table} WHERE start >= :since AND start < :until")
                     .bindparams(*_RANGE), bounds)
    names = ", ".join(FIGURES)
    calls = _contribution(conn.dialect.name,
                          "i.offered_at >= :since AND i.offered_at < :until")
    conn.execute(text(f"INSERT INTO report_call_agents (call_id, agent_id, start, {names}) "
                      f"{calls}").bindparams(*_RANGE), bounds)
    sums = ", ".join(f"sum({f})" for f in FIGURES)
    conn.execute(text(
        f"INSERT INTO report_agent_intervals (start, agent_id, {names}) "
        f"SELECT start, agent_id, {sums} FROM report_call_agents "
        f"WHERE start >= :since AND start < :until GROUP BY start, agent_id"
    ).bindparams(*_RANGE), bounds)
    agent_days.rebuild_calls(conn, zone, since, until)
