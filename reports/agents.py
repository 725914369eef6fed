"""The agent report: calls handled and time in each state, per agent and period.

Calls are read from the agent call rollup (reports/agent_rollup.py): an agent's calls
are counted in the period the call was offered in, once the call has ended. Time in each
state comes from the agent-state rollup (reports/agent_states.py), and each agent's
current state from its last change, split at period boundaries. On PostgreSQL a report
reads both from the coarsest rollup whose rows fall whole into its periods
(reports/agent_days.py): the center's local days for a report by day, week or month of
whole local days in the center's zone; else the UTC hours for any report but by 15
minutes whose periods start on whole UTC hours (zones with whole-hour offsets). A call
transferred between agents is a handled call for each agent who answered a leg of it.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, bindparam, select, text

from core import db, gctune
from core.models import Agent, UTCDateTime
from reports import agent_days
from reports.agent_rollup import FIGURES as CALL_FIGURES
from reports.figures import handle_figures, ratio
from reports.periods import Interval, Range
from reports.sql import TRUNC, moment_of, period_sql

# Each agent's last change: its state since then is not in the rollup yet.
_LAST = text("""
SELECT agent_id, state, reason, at FROM agent_state_changes WHERE id IN (
  SELECT (SELECT x.id FROM agent_state_changes x WHERE x.agent_id = a.agent_id
           ORDER BY x.at DESC, x.id DESC LIMIT 1)
  FROM (SELECT id AS agent_id FROM agents) a)
""")


def agent_report(conn: Connection, rng: Range, center: str | None = None) -> dict[str, Any]:
    """`center`: the center's time zone, the one the day rows are summed in."""
    sums: dict[tuple[str, int], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    name = _namer(rng)
    names = dict(conn.execute(select(Agent.id, Agent.display_name)).all())
    level = _coarsest(conn, rng, center)
    if level is not None:
        _open_states(conn, rng, sums)
        rows = _summed(conn, rng, level, sums, name, names)
    else:
        _calls(conn, rng, sums, name)
        _states(conn, rng, sums, name)
        _open_states(conn, rng, sums)
        rows = db.off_loop(_rows, sums, names)
    return {"scope": "agents", **rng.bounds(), "rows": [rows[k] for k in sorted(rows)]}


def _rows(sums: dict[tuple[str, int], dict[str, float]], names: dict[int, str],
          ) -> dict[tuple[str, int], dict[str, Any]]:
    return {key: _row(key, names, figures(s)) for key, s in sums.items()}


def _row(key: tuple[str, int], names: dict[int, str], figures: dict[str, Any]) -> dict[str, Any]:
    return {"period": key[0], "agent_id": key[1], "name": names.get(key[1]) or str(key[1]),
            **figures}


def figures(s: dict[str, float]) -> dict[str, Any]:
    get = s.get
    available = get("state_available", 0.0)
    working = get("state_ringing", 0.0) + get("state_on_call", 0.0) + get("state_wrap_up", 0.0)
    signed_in, reasons = _state_totals(s)
    return {
        "handled": int(get("handled", 0)), "transfers_made": int(get("transfers", 0)),
        **handle_figures(s),
        "csat_responses": int(get("csat_n", 0)),
        "csat_average": ratio(get("csat_sum", 0), get("csat_n", 0), 2),
        "signed_in_s": round(signed_in, 1),
        "available_s": round(available, 1),
        "on_call_s": round(get("state_on_call", 0.0) + get("state_ringing", 0.0), 1),
        "wrap_up_s": round(get("state_wrap_up", 0.0), 1),
        "not_ready_s": round(get("state_not_ready", 0.0), 1),
        "not_ready_by_reason": reasons,
        "occupancy": ratio(working, working + available),
    }


def _state_totals(s: dict[str, float]) -> tuple[float, dict[str, float]]:
    """Signed-in seconds and not-ready seconds by reason, in one pass over the sums."""
    signed_in, reasons = 0.0, {}
    for k, v in s.items():
        if k[:6] == "state_":
            if k != "state_logged_out":
                signed_in += v
        elif k[:10] == "not_ready_":
            reasons[k[10:]] = round(v, 1)
    return signed_in, reasons


_CALLS = ("SELECT {p} AS p, agent_id, " + ", ".join(f"sum({f})" for f in CALL_FIGURES)
          + " FROM report_agent_intervals WHERE start >= :since AND start < :until "
          "GROUP BY 1, 2")


def _calls(conn: Connection, rng: Range, sums: Any, name: Any) -> None:
    """Each agent's call figures from the agent call rollup, summed by the database per
    period of the offer."""
    params = {"since": rng.since, "until": rng.until, "tz": rng.zone.key}
    for p, agent, *values in conn.execute(_statement(_CALLS, period_sql(conn, rng)), params):
        key = (name(p), agent)
        s = sums.get(key)
        if s is None:  # the common case: one row per period and agent
            sums[key] = defaultdict(float, zip(CALL_FIGURES, map(float, values), strict=True))
            continue
        for figure, value in zip(CALL_FIGURES, values, strict=True):
            s[figure] += float(value)


def _statement(sql: str, period: str) -> Any:
    return text(sql.format(p=period)).bindparams(bindparam("since", type_=UTCDateTime()),
                                                  bindparam("until", type_=UTCDateTime()))


def _namer(rng: Range) -> Callable[[Any], str]:
    """A period's name from its start as the database gives it, computed once per start:
    a report's rows share few starts."""
    @functools.cache
    def name(value: Any) -> str:
        return rng.period(moment_of(value, rng))
    return name


def _coarsest(conn: Connection, rng: Range, center: str | None) -> agent_days.Level | None:
    """The coarsest rollup above the 15-minute rows whose rows fall whole into the
    report's periods, on PostgreSQL: the center's local days for a report by day, week
    or month of whole local days in its zone; else the UTC hours for a report by hour or
    longer whose periods start on whole UTC hours."""
    if not agent_days.kept(conn) or rng.interval is Interval.m15:
        return None
    ends = (rng.since, rng.until)
    if (center == rng.zone.key and rng.interval is not Interval.hour
            and all(m.astimezone(rng.zone).time() == dt.time() for m in ends)):
        return agent_days.DAYS
    if all(m.timestamp() % 3600 == 0 for m in ends) and _whole_hours(rng):
        return agent_days.HOURS
    return None


def _whole_hours(rng: Range) -> bool:
    """Whether the zone's offset is a whole number of hours over the range (every local
    hour and midnight then starts a UTC hour), looked at every 12 hours: no zone keeps
    an offset for less."""
    moment, step = rng.since, dt.timedelta(hours=12)
    while True:
        offset = moment.astimezone(rng.zone).utcoffset()
        if offset is None or offset % dt.timedelta(hours=1):
            return False
        if moment >= rng.until:
            return True
        moment = min(moment + step, rng.until)


_DAY_FIGURES = (*CALL_FIGURES, *(f"state_{s}" for s in agent_days.STATES))
_SUMS = ", ".join(f"CAST(sum({c}) AS float8)" for c in (*CALL_FIGURES, *agent_days.STATE_COLUMNS))


# Per level: the report period of a row (in :tz), and the rows of the range.
_READ = {agent_days.DAYS: ("date_trunc('{trunc}', CAST(day AS timestamp))",
                           "zone = :tz AND day >= :first AND day < :end"),
         agent_days.HOURS: ("date_trunc('{trunc}', start AT TIME ZONE :tz)",
                            "start >= :since AND start < :until")}


@functools.cache
def _level_statement(level: agent_days.Level, trunc: str) -> Any:
    """Per period and agent: the sums of its rows of `level` (as floats), and its
    not-ready reasons with their seconds as two arrays (one row per period and agent)."""
    period, where = _READ[level]
    period = period.format(trunc=trunc)
    statement = text(
        f"SELECT d.*, r.reasons, r.seconds FROM (SELECT {period} AS p, agent_id, {_SUMS} "
        f"FROM {level.table} WHERE {where} GROUP BY 1, 2) d LEFT JOIN ("
        "SELECT p, agent_id, array_agg(reason) AS reasons, array_agg(seconds) AS seconds "
        f"FROM (SELECT {period} AS p, agent_id, reason, sum(seconds) AS seconds "
        f"FROM {level.reasons} WHERE {where} GROUP BY 1, 2, 3) x GROUP BY 1, 2) r "
        "ON r.p = d.p AND r.agent_id = d.agent_id")
    return statement.bindparams(*(bindparam(b, type_=UTCDateTime()) for b in ("since", "until")
                                  if f":{b}" in where))


def _summed(conn: Connection, rng: Range, level: agent_days.Level, opened: Any, name: Any,
            names: dict[int, str]) -> dict[tuple[str, int], dict[str, Any]]:
    """The report's rows from the agents' day or hour rows (every reason's seconds are
    in the not-ready seconds of its row: no reason without a row), plus `opened`, the
    open states' seconds per period and agent. A row without open seconds is made
    straight from the database's tuple (`_day_row`, the same figures as `figures`)."""
    params = {"tz": rng.zone.key, "since": rng.since, "until": rng.until,
              "first": rng.since.astimezone(rng.zone).date(),
              "end": rng.until.astimezone(rng.zone).date()}
    result = conn.execute(_level_statement(level, TRUNC[rng.interval]), params)
    with gctune.paused():  # tens of thousands of rows of dicts, none in a cycle
        # `all()` too: the rows are fetched already (a buffered cursor), but making
        # SQLAlchemy's rows of them is a good part of the CPU.
        return db.off_loop(lambda: _made(result.all(), opened, name, names))


def _made(fetched: Any, opened: Any, name: Any, names: dict[int, str],
          ) -> dict[tuple[str, int], dict[str, Any]]:
    """`_summed`'s rows from the fetched sums."""
    rows = {}
    # Rows fetched at once: fetching them one by one costs more than making them.
    for p, agent, *values, reasons, seconds in fetched:
        key = (name(p), agent)
        extra = opened.pop(key, None)
        if extra is None:
            rows[key] = _day_row(key, names.get(agent) or str(agent), values, reasons, seconds)
            continue
        s = defaultdict(float, zip(_DAY_FIGURES, values, strict=True))
        if reasons:
            s.update(zip(["not_ready_" + r for r in reasons], seconds, strict=True))
        for figure, value in extra.items():
            s[figure] += value
        rows[key] = _row(key, names, figures(s))
    rows.update((key, _row(key, names, figures(s))) for key, s in opened.items())
    return rows


def _day_row(key: tuple[str, int], name: str, values: list[float], reasons: list[str] | None,
             seconds: list[float] | None) -> dict[str, Any]:
    """`figures` of one period's day sums, computed in the same order (the same floats)
    without the dictionary of sums: this is most of a long report's time."""
    (handled, transfers, talk_n, talk_sum, wrap_n, wrap_sum, csat_n, csat_sum, hold_sum,
     available, ringing, on_call, wrap_up, not_ready) = values
    hold = round(hold_sum / talk_n, 2) if talk_n else None
    talk = round((talk_sum - hold_sum) / talk_n, 2) if talk_n else None
    wrap = round(wrap_sum / wrap_n, 2) if wrap_n else None
    working = ringing + on_call + wrap_up
    by_reason = ({r: round(v, 1) for r, v in zip(reasons, seconds or (), strict=True)}
                 if reasons else {})
    return {
        "period": key[0], "agent_id": key[1], "name": name,
        "handled": int(handled), "transfers_made": int(transfers),
        "avg_talk_s": talk, "avg_hold_s": hold, "avg_wrap_up_s": wrap,
        "aht_s": None if talk is None else round(talk + (hold or 0.0) + (wrap or 0.0), 2),
        "csat_responses": int(csat_n),
        "csat_average": round(csat_sum / csat_n, 2) if csat_n else None,
        "signed_in_s": round(0.0 + available + ringing + on_call + wrap_up + not_ready, 1),
        "available_s": round(available, 1),
        "on_call_s": round(on_call + ringing, 1),
        "wrap_up_s": round(wrap_up, 1),
        "not_ready_s": round(not_ready, 1),
        "not_ready_by_reason": by_reason,
        "occupancy": round(working / (working + available), 4) if working + available else None,
    }


def _states(conn: Connection, rng: Range, sums: Any, name: Any) -> None:
    """Closed segments from the 15-minute rollup."""
    statement = text(
        f"SELECT {period_sql(conn, rng)} AS p, agent_id, state, reason, sum(seconds) "
        "FROM report_agent_states WHERE start >= :since AND start < :until "
        "GROUP BY 1, 2, 3, 4").bindparams(bindparam("since", type_=UTCDateTime()),
                                          bindparam("until", type_=UTCDateTime()))
    for p, agent, state, reason, seconds in conn.execute(
            statement, {"since": rng.since, "until": rng.until, "tz": rng.zone.key}):
        s = sums[(name(p), agent)]
        s[f"state_{state}"] += seconds
        if state == "not_ready" and reason:
            s[f"not_ready_{reason}"] += seconds


def _open_states(conn: Connection, rng: Range, sums: Any) -> None:
    """Each agent's open state (since its last change) up to now."""
    now = dt.datetime.now(dt.UTC)
    for agent, state, reason, at in conn.execute(_LAST):
        start = moment_of(at, rng).astimezone(dt.UTC)
        if state != "logged_out" and start < rng.until:
            _spread(rng, sums, agent, state, reason, max(start, rng.since), min(rng.until, now))


def _spread(rng: Range, sums: Any, agent: int, state: str, reason: str | None,
            start: dt.datetime, end: dt.datetime) -> None:
    """Add [start, end) in `state` to each period it covers."""
    while start < end:
        cut = min(end, next_boundary(rng, start))
        s = sums[(rng.period(start), agent)]
        s[f"state_{state}"] += (cut - start).total_seconds()
        if state == "not_ready" and reason:
            s[f"not_ready_{reason}"] += (cut - start).total_seconds()
        start = cut


def next_boundary(rng: Range, moment: dt.datetime) -> dt.datetime:
    """The start of the period after the one `moment` is in."""
    local = moment.astimezone(rng.zone).replace(tzinfo=None)
    if rng.interval is Interval.m15:
        nxt = local.replace(minute=local.minute // 15 * 15, second=0, microsecond=0) \
            + dt.timedelta(minutes=15)
    elif rng.interval is Interval.hour:
        nxt = local.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    else:
        day = local.date()
        if rng.interval is Interval.day:
            day += dt.timedelta(days=1)
        elif rng.interval is Interval.week:
            day += dt.timedelta(days=7 - day.weekday())
        else:
            day = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        nxt = dt.datetime.combine(day, dt.time())
    return max(nxt.replace(tzinfo=rng.zone).astimezone(dt.UTC), moment + dt.timedelta(seconds=1))
