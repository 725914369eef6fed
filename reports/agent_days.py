"""The agent day rollup: each agent's call figures, seconds in each state and not-ready
seconds by reason per local day of the center's time zone, on PostgreSQL.

An agent report by day, week or month over a quarter then reads one row per agent and
day (and one per not-ready reason) instead of 96 times as many. The day rows are the
sums of the 15-minute rows, kept with them: the call rollup adds the same differences
to the day in its one statement (reports/agent_rollup.py), the state hook the same
seconds (reports/agent_states.py); each writes only its own columns of the shared row.
`rebuild_calls` and `rebuild_states` recompute the local days a range touches from the
15-minute rows. Rows carry the zone they were summed in; the report reads them only for
that zone, and only on PostgreSQL (SQLite cannot name a local day in SQL: its reports
group the 15-minute rows, as a report in another zone does).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, text

from core.models import UTCDateTime
from reports.sql import DAY

# The call figures of the agent rollups (reports/agent_rollup.py imports them from here).
CALL_FIGURES = ("handled", "transfers", "talk_n", "talk_sum", "wrap_n", "wrap_sum", "csat_n",
                "csat_sum", "hold_sum")
STATES = ("available", "ringing", "on_call", "wrap_up", "not_ready")
STATE_COLUMNS = tuple(f"{s}_s" for s in STATES)
_RANGE = [bindparam("lo", type_=UTCDateTime()), bindparam("hi", type_=UTCDateTime())]
_REASONS_ADD = text("""
INSERT INTO report_agent_day_reasons (zone, day, agent_id, reason, seconds)
VALUES (:zone, :day, :agent_id, :reason, :seconds)
ON CONFLICT (zone, day, agent_id, reason)
DO UPDATE SET seconds = report_agent_day_reasons.seconds + excluded.seconds
""")


def kept(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _upsert(columns: tuple[str, ...], select: str, *, add: bool) -> str:
    """Insert the day rows of `select` (zone, day, agent_id, then `columns`), the other
    figures of a new row 0 (the other hook's columns); on a kept row, add to `columns`
    or replace them."""
    others = [c for c in (*CALL_FIGURES, *STATE_COLUMNS) if c not in columns]
    zeros = "".join(", 0" for _ in others)
    names = ", ".join((*columns, *others))
    sets = ", ".join(f"{c} = report_agent_days.{c} + excluded.{c}" if add
                     else f"{c} = excluded.{c}" for c in columns)
    return (f"INSERT INTO report_agent_days (zone, day, agent_id, {names}) "
            f"SELECT s.*{zeros} FROM ({select}) s "
            f"ON CONFLICT (zone, day, agent_id) DO UPDATE SET {sets}")


_ADD_STATES = text(_upsert(STATE_COLUMNS, "VALUES (CAST(:zone AS text), CAST(:day AS date), "
                           "CAST(:agent_id AS integer), "
                           + ", ".join(f"CAST(:{c} AS float)" for c in STATE_COLUMNS) + ")",
                           add=True))


def add_calls_sql(source: str) -> str:
    """A data-modifying WITH term adding `source`'s rows (start, agent_id, call
    figures...) to the agents' days in :zone."""
    sums = ", ".join(f"sum({f})" for f in CALL_FIGURES)
    return _upsert(CALL_FIGURES, f"SELECT {DAY}, agent_id, {sums} FROM {source} GROUP BY 2, 3",
                   add=True)


def rebuild_calls(conn: Connection, zone: str, since: dt.datetime, until: dt.datetime,
                  ) -> None:
    """Recompute the agents' call figures of the local days of `zone` that [since, until)
    touches from the 15-minute rows."""
    if not kept(conn):
        return
    figures = CALL_FIGURES
    bounds = _bounds(zone, since, until)
    conn.execute(text("UPDATE report_agent_days SET " + ", ".join(f"{f} = 0" for f in figures)
                      + " WHERE zone = :zone AND day >= :first AND day <= :last"), bounds)
    sums = ", ".join(f"sum({f})" for f in figures)
    conn.execute(text(_upsert(
        figures, f"SELECT {DAY}, agent_id, {sums} FROM report_agent_intervals "
        "WHERE start >= :lo AND start < :hi GROUP BY 2, 3", add=False)).bindparams(*_RANGE),
        bounds)
    _drop_empty(conn, bounds)


def add_states(conn: Connection, zone: str,
               seconds: dict[tuple[dt.datetime, int, str, str], float]) -> None:
    """Add the 15-minute (UTC) rows' seconds to their local days."""
    where = ZoneInfo(zone)
    days: dict[tuple[dt.date, int], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    reasons: dict[tuple[dt.date, int, str], float] = defaultdict(float)
    for (start, agent, state, reason), value in seconds.items():
        day = start.astimezone(where).date()
        if state in STATES:
            days[(day, agent)][state] += value
        if state == "not_ready" and reason:
            reasons[(day, agent, reason)] += value
    rows = [{"zone": zone, "day": d, "agent_id": a,
             **{f"{s}_s": round(by_state.get(s, 0.0), 6) for s in STATES}}
            for (d, a), by_state in sorted(days.items())]
    if rows:
        conn.execute(_ADD_STATES, rows)
    kept_reasons = [{"zone": zone, "day": d, "agent_id": a, "reason": r, "seconds": round(v, 6)}
                    for (d, a, r), v in sorted(reasons.items()) if abs(v) > 1e-9]
    if kept_reasons:
        conn.execute(_REASONS_ADD, kept_reasons)


def rebuild_states(conn: Connection, zone: str, since: dt.datetime, until: dt.datetime,
                   ) -> None:
    """The same for the seconds in each state and by not-ready reason."""
    if not kept(conn):
        return
    bounds = _bounds(zone, since, until)
    conn.execute(text("UPDATE report_agent_days SET "
                      + ", ".join(f"{c} = 0" for c in STATE_COLUMNS)
                      + " WHERE zone = :zone AND day >= :first AND day <= :last"), bounds)
    sums = ", ".join(f"COALESCE(sum(seconds) FILTER (WHERE state = '{s}'), 0)"
                     for s in STATES)
    conn.execute(text(_upsert(
        STATE_COLUMNS, f"SELECT {DAY}, agent_id, {sums} FROM report_agent_states "
        "WHERE start >= :lo AND start < :hi GROUP BY 2, 3", add=False)).bindparams(*_RANGE),
        bounds)
    _drop_empty(conn, bounds)
    conn.execute(text("DELETE FROM report_agent_day_reasons WHERE zone = :zone "
                      "AND day >= :first AND day <= :last"), bounds)
    conn.execute(text(
        f"INSERT INTO report_agent_day_reasons (zone, day, agent_id, reason, seconds) "
        f"SELECT {DAY}, agent_id, reason, sum(seconds) FROM report_agent_states "
        "WHERE state = 'not_ready' AND reason <> '' AND start >= :lo AND start < :hi "
        "GROUP BY 2, 3, 4").bindparams(*_RANGE), bounds)


def _drop_empty(conn: Connection, bounds: dict[str, Any]) -> None:
    """Rows a rebuild left at 0 everywhere: the 15-minute rows have none."""
    conn.execute(text("DELETE FROM report_agent_days WHERE zone = :zone AND day >= :first "
                      "AND day <= :last AND "
                      + " AND ".join(f"{c} = 0" for c in (*CALL_FIGURES, *STATE_COLUMNS))),
                 bounds)


def _bounds(zone: str, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    where = ZoneInfo(zone)
    first = since.astimezone(where).date()
    last = (until - dt.timedelta.resolution).astimezone(where).date()
    return {"zone": zone, "first": first, "last": last,
            "lo": dt.datetime.combine(first, dt.time(), where),
            "hi": dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), where)}
