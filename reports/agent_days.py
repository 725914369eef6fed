"""The agents' coarser rows, on PostgreSQL: each agent's call figures, seconds in each
state and not-ready seconds by reason per local day of the center's time zone (`DAYS`)
and per hour (UTC, `HOURS`).

An agent report over a quarter then reads one row per agent and day (and one per
not-ready reason) instead of 96 times as many; a report by hour, or by day in another
zone, reads one per agent and hour instead of four times as many. Both levels are the
sums of the 15-minute rows, kept with them: the call rollup adds the same differences
to the day and the hour in its one statement (reports/agent_rollup.py), the state hook
the same seconds (reports/agent_states.py); each writes only its own columns of the
shared rows. `rebuild_calls` and `rebuild_states` recompute the days and hours a range
touches from the 15-minute rows. Day rows carry the zone they were summed in; the report
reads them only for that zone. Hour rows serve any zone whose offset is a whole number
of hours. Only on PostgreSQL (SQLite cannot name a local day in SQL: its reports group
the 15-minute rows).
"""

from __future__ import annotations

import datetime as dt
import functools
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, text

from core import plans
from core.models import UTCDateTime
from reports.sql import DAY, HOUR

# The call figures of the agent rollups (reports/agent_rollup.py imports them from here).
CALL_FIGURES = ("handled", "transfers", "talk_n", "talk_sum", "wrap_n", "wrap_sum", "csat_n",
                "csat_sum", "hold_sum")
STATES = ("available", "ringing", "on_call", "wrap_up", "not_ready")
STATE_COLUMNS = tuple(f"{s}_s" for s in STATES)
_RANGE = [bindparam("lo", type_=UTCDateTime()), bindparam("hi", type_=UTCDateTime())]


def _day_of(zone: ZoneInfo, start: dt.datetime) -> tuple[Any, ...]:
    return zone.key, start.astimezone(zone).date()


def _hour_of(zone: ZoneInfo, start: dt.datetime) -> tuple[Any, ...]:
    return (start.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0),)


def _days_touched(zone: ZoneInfo, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    first = since.astimezone(zone).date()
    last = (until - dt.timedelta.resolution).astimezone(zone).date()
    return {"zone": zone.key, "first": first, "last": last,
            "lo": dt.datetime.combine(first, dt.time(), zone),
            "hi": dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), zone)}


def _hours_touched(zone: ZoneInfo, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    def hour(moment: dt.datetime) -> dt.datetime:
        return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return {"lo": hour(since), "hi": hour(until - dt.timedelta.resolution)
            + dt.timedelta(hours=1)}


@dataclass(frozen=True)
class Level:
    """One coarser level: its tables, the key columns before `agent_id`, and how a
    15-minute row's `start` maps to them."""

    table: str
    reasons: str
    key: tuple[str, ...]
    of_start: str  # SQL: the key of a 15-minute row (`start`; the center's zone :zone)
    grouped: str  # the positions of `of_start`'s columns and agent_id to group by
    of_arrays: str  # SQL: the key from array parameters named as its columns
    where: str  # SQL: the rows of the range `touched` gives
    of: Callable[[ZoneInfo, dt.datetime], tuple[Any, ...]]  # the key in Python
    touched: Callable[[ZoneInfo, dt.datetime, dt.datetime], dict[str, Any]]


DAYS = Level("report_agent_days", "report_agent_day_reasons", ("zone", "day"), DAY, "2, 3",
             "CAST(:zone AS text[]), CAST(:day AS date[])",
             "zone = :zone AND day >= :first AND day <= :last", _day_of, _days_touched)
HOURS = Level("report_agent_hours", "report_agent_hour_reasons", ("start",), HOUR, "1, 2",
              "CAST(:start AS timestamptz[])", "start >= :lo AND start < :hi", _hour_of,
              _hours_touched)
LEVELS = (DAYS, HOURS)


def kept(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _upsert(level: Level, columns: tuple[str, ...], select: str, *, add: bool) -> str:
    """Insert the rows of `select` (the level's key, agent_id, then `columns`), the other
    figures of a new row 0 (the other hook's columns); on a kept row, add to `columns`
    or replace them."""
    others = [c for c in (*CALL_FIGURES, *STATE_COLUMNS) if c not in columns]
    zeros = "".join(", 0" for _ in others)
    names = ", ".join((*level.key, "agent_id", *columns, *others))
    sets = ", ".join(f"{c} = {level.table}.{c} + excluded.{c}" if add
                     else f"{c} = excluded.{c}" for c in columns)
    return (f"INSERT INTO {level.table} ({names}) SELECT s.*{zeros} FROM ({select}) s "
            f"ON CONFLICT ({', '.join(level.key)}, agent_id) DO UPDATE SET {sets}")


def add_calls_sql(level: Level, source: str) -> str:
    """A data-modifying WITH term adding `source`'s rows (start, agent_id, call
    figures...) to the agents' rows of `level` (days: in :zone)."""
    sums = ", ".join(f"sum({f})" for f in CALL_FIGURES)
    return _upsert(level, CALL_FIGURES, f"SELECT {level.of_start}, agent_id, {sums} "
                   f"FROM {source} GROUP BY {level.grouped}", add=True)


def rebuild_calls(conn: Connection, zone: str, since: dt.datetime, until: dt.datetime,
                  ) -> None:
    """Recompute the agents' call figures of the local days of `zone`, and the hours,
    that [since, until) touches from the 15-minute rows."""
    if not kept(conn):
        return
    sums = ", ".join(f"sum({f})" for f in CALL_FIGURES)
    for level in LEVELS:
        _recompute(conn, level, CALL_FIGURES, sums, "report_agent_intervals",
                   level.touched(ZoneInfo(zone), since, until))


def _recompute(conn: Connection, level: Level, columns: tuple[str, ...], sums: str,
               source: str, bounds: dict[str, Any]) -> None:
    """`columns` of `level`'s rows within `bounds` set anew to `sums` of the 15-minute
    rows of `source` (rows left all zero are dropped)."""
    _zero(conn, level, columns, bounds)
    conn.execute(_text(_upsert(
        level, columns, f"SELECT {level.of_start}, agent_id, {sums} "
        f"FROM {source} WHERE start >= :lo AND start < :hi "
        f"GROUP BY {level.grouped}", add=False)), bounds)
    _drop_empty(conn, level, bounds)


# The days' and hours' rows are added to by two writers, each in its own transaction:
# the call rollup (reports/agent_rollup.py, the record writer's) and the state rollup
# (reports/agent_states.py, the agent-log consumer's). Each touches many agents' rows of
# both tables in its own order, so on PostgreSQL they take turns, or they deadlock (seen:
# one waiting on report_agent_days, the other on report_agent_hours) and a batch of
# telephony events fails to store.
_TURN = text("SELECT pg_advisory_xact_lock(:key)")
_TURN_KEY = zlib.crc32(b"report_agent_days+hours")


def take_turns(conn: Connection) -> None:
    """Before adding to the days or hours: wait for the other writer's transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(_TURN, {"key": _TURN_KEY})


def add_states(conn: Connection, zone: str,
               seconds: dict[tuple[dt.datetime, int, str, str], float]) -> None:
    """Add the 15-minute (UTC) rows' seconds to their local days and their hours."""
    take_turns(conn)
    for level in LEVELS:
        _add_states(conn, level, ZoneInfo(zone), seconds)


def _add_states(conn: Connection, level: Level, zone: ZoneInfo,
                seconds: dict[tuple[dt.datetime, int, str, str], float]) -> None:
    rows: dict[tuple[Any, ...], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    reasons: dict[tuple[Any, ...], float] = defaultdict(float)
    for (start, agent, state, reason), value in seconds.items():
        key = (*level.of(zone, start), agent)
        if state in STATES:
            rows[key][state] += value
        if state == "not_ready" and reason:
            reasons[(*key, reason)] += value
    columns = (*level.key, "agent_id")
    kept_rows = [{**dict(zip(columns, key, strict=True)),
                  **{f"{s}_s": round(by_state.get(s, 0.0), 6) for s in STATES}}
                 for key, by_state in sorted(rows.items())]
    if kept_rows:
        plans.execute(conn, _add_states_statement(level), [_arrays(kept_rows)])
    kept_reasons = [{**dict(zip((*columns, "reason"), key, strict=True)),
                     "seconds": round(v, 6)}
                    for key, v in sorted(reasons.items()) if abs(v) > 1e-9]
    if kept_reasons:
        plans.execute(conn, _add_reasons_statement(level), [_arrays(kept_reasons)])


def _arrays(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows as one array per column: all of them in one statement (an executemany runs
    the statement once per row)."""
    return {k: [row[k] for row in rows] for k in rows[0]}


@functools.cache
def _add_states_statement(level: Level) -> Any:
    arrays = ", ".join((level.of_arrays, "CAST(:agent_id AS integer[])",
                        *(f"CAST(:{c} AS float[])" for c in STATE_COLUMNS)))
    return text(_upsert(level, STATE_COLUMNS, f"SELECT * FROM unnest({arrays})", add=True))


@functools.cache
def _add_reasons_statement(level: Level) -> Any:
    key = ", ".join((*level.key, "agent_id", "reason"))
    return text(
        f"INSERT INTO {level.reasons} ({key}, seconds) SELECT * FROM unnest("
        f"{level.of_arrays}, CAST(:agent_id AS integer[]), CAST(:reason AS text[]), "
        f"CAST(:seconds AS float[])) ON CONFLICT ({key}) "
        f"DO UPDATE SET seconds = {level.reasons}.seconds + excluded.seconds")


def rebuild_states(conn: Connection, zone: str, since: dt.datetime, until: dt.datetime,
                   ) -> None:
    """The same for the seconds in each state and by not-ready reason."""
    if not kept(conn):
        return
    sums = ", ".join(f"COALESCE(sum(seconds) FILTER (WHERE state = '{s}'), 0)"
                     for s in STATES)
    for level in LEVELS:
        bounds = level.touched(ZoneInfo(zone), since, until)
        _recompute(conn, level, STATE_COLUMNS, sums, "report_agent_states", bounds)
        conn.execute(_text(f"DELETE FROM {level.reasons} WHERE {level.where}"), bounds)
        key = ", ".join((*level.key, "agent_id", "reason"))
        conn.execute(_text(
            f"INSERT INTO {level.reasons} ({key}, seconds) "
            f"SELECT {level.of_start}, agent_id, reason, sum(seconds) "
            "FROM report_agent_states WHERE state = 'not_ready' AND reason <> '' "
            f"AND start >= :lo AND start < :hi GROUP BY {level.grouped}, "
            f"{len(level.key) + 2}"), bounds)


def _zero(conn: Connection, level: Level, columns: tuple[str, ...],
          bounds: dict[str, Any]) -> None:
    conn.execute(_text(f"UPDATE {level.table} SET " + ", ".join(f"{c} = 0" for c in columns)
                       + f" WHERE {level.where}"), bounds)


def _drop_empty(conn: Connection, level: Level, bounds: dict[str, Any]) -> None:
    """Rows a rebuild left at 0 everywhere: the 15-minute rows have none."""
    conn.execute(_text(f"DELETE FROM {level.table} WHERE {level.where} AND "
                       + " AND ".join(f"{c} = 0" for c in (*CALL_FIGURES, *STATE_COLUMNS))),
                 bounds)


def _text(sql: str) -> Any:
    """A statement with the range's bounds typed as UTC times where it uses them."""
    return text(sql).bindparams(*(p for p in _RANGE if f":{p.key}" in sql))
