"""The agent day rollup: each agent's call figures and seconds in each state per local
day of the center's time zone, on PostgreSQL.

An agent report by day, week or month over a quarter then reads one row per agent and
day (and state) instead of 96. The day rows are the sums of the 15-minute rows, kept
with them: the call rollup adds the same differences to the day in its one statement
(reports/agent_rollup.py), the state hook the same seconds (reports/agent_states.py).
`rebuild_calls` and `rebuild_states` recompute the local days a range touches from the
15-minute rows. Rows carry
the zone they were summed in; the report reads them only for that zone, and only on
PostgreSQL (SQLite cannot name a local day in SQL: its reports group the 15-minute rows,
as a report in another zone does).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, text

from core.models import UTCDateTime
from reports.agent_rollup import FIGURES as CALL_FIGURES
from reports.sql import DAY

_ADD_STATES = text("""
INSERT INTO report_agent_day_states (zone, day, agent_id, state, reason, seconds)
VALUES (:zone, :day, :agent_id, :state, :reason, :seconds)
ON CONFLICT (zone, day, agent_id, state, reason)
DO UPDATE SET seconds = report_agent_day_states.seconds + excluded.seconds
""")
_RANGE = [bindparam("lo", type_=UTCDateTime()), bindparam("hi", type_=UTCDateTime())]


def kept(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def add_states(conn: Connection, zone: str,
               seconds: dict[tuple[dt.datetime, int, str, str], float]) -> None:
    """Add the 15-minute (UTC) rows' seconds to their local days."""
    where = ZoneInfo(zone)
    days: dict[tuple[dt.date, int, str, str], float] = defaultdict(float)
    for (start, agent, state, reason), value in seconds.items():
        days[(start.astimezone(where).date(), agent, state, reason)] += value
    rows = [{"zone": zone, "day": d, "agent_id": a, "state": s, "reason": r,
             "seconds": round(v, 6)}
            for (d, a, s, r), v in sorted(days.items()) if abs(v) > 1e-9]
    if rows:
        conn.execute(_ADD_STATES, rows)


def rebuild_calls(conn: Connection, zone: str, since: dt.datetime, until: dt.datetime,
                  ) -> None:
    """Recompute the agents' call figures of the local days of `zone` that [since, until)
    touches from the 15-minute rows."""
    names = ", ".join(CALL_FIGURES)
    sums = ", ".join(f"sum({f})" for f in CALL_FIGURES)
    _rebuild(conn, zone, since, until, "report_agent_days",
             f"INSERT INTO report_agent_days (zone, day, agent_id, {names}) "
             f"SELECT {DAY}, agent_id, {sums} FROM report_agent_intervals "
             "WHERE start >= :lo AND start < :hi GROUP BY 2, 3")


def rebuild_states(conn: Connection, zone: str, since: dt.datetime, until: dt.datetime,
                   ) -> None:
    """The same for the seconds in each state."""
    _rebuild(conn, zone, since, until, "report_agent_day_states",
             "INSERT INTO report_agent_day_states (zone, day, agent_id, state, reason, "
             f"seconds) SELECT {DAY}, agent_id, state, reason, sum(seconds) "
             "FROM report_agent_states WHERE start >= :lo AND start < :hi GROUP BY 2, 3, 4, 5")


def _rebuild(conn: Connection, zone: str, since: dt.datetime, until: dt.datetime,
             table: str, insert: str) -> None:
    if not kept(conn):
        return
    where = ZoneInfo(zone)
    first = since.astimezone(where).date()
    last = (until - dt.timedelta.resolution).astimezone(where).date()
    bounds: dict[str, Any] = {
        "zone": zone, "first": first, "last": last,
        "lo": dt.datetime.combine(first, dt.time(), where),
        "hi": dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), where)}
    conn.execute(text(f"DELETE FROM {table} WHERE zone = :zone AND day >= :first "
                      "AND day <= :last"), bounds)
    conn.execute(text(insert).bindparams(*_RANGE), bounds)
