"""The agents' day rows (PostgreSQL): an agent report by day, week or month of the
center's time zone read from them equals the same report summed from the 15-minute
rows, after replays, a state spanning local midnight and a rebuild.

The center is in Asia/Kolkata (UTC+5:30): its midnight is 18:30 UTC. The calls are those
of tests/test_reports_agent_calls.py (UTC 09:00-10:05 on 2026-03-10, agents 7 and 8, every
ending written twice). Agent 9's changes (UTC, local in brackets):
  2026-03-10 18:00 available (23:30), 18:40 not_ready lunch (00:10 on the 11th),
  19:00 available (00:30), open since: up to the end of the range, 2026-03-12 00:00 local.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, insert, select

from core.models import (
    Agent,
    ReportAgentDay,
    ReportAgentDayReason,
    ReportAgentHour,
    ReportAgentHourReason,
    ReportAgentInterval,
    ReportAgentState,
    ReportCallAgent,
)
from core.writer import Insert, RecordWriter
from reports.agent_states import AgentStates
from reports.agents import agent_report
from reports.periods import Interval, Range
from reports.rollup import Rollups
from tests.conftest import make_settings
from tests.test_reports_agent_calls import write_day

CENTER = "Asia/Kolkata"
ZONE = ZoneInfo(CENTER)
SINCE = dt.datetime(2026, 3, 9, tzinfo=ZONE)
UNTIL = dt.datetime(2026, 3, 12, tzinfo=ZONE)
CHANGES = [("18:00", "available", None), ("18:40", "not_ready", "lunch"),
           ("19:00", "available", None)]


@pytest.fixture
def settings(any_database_url, redis_url, redis_prefix, tmp_path):
    return make_settings(any_database_url, redis_url, redis_prefix, tmp_path,
                         center_timezone=CENTER)


def change(hhmm: str, state: str, reason: str | None) -> Insert:
    at = dt.datetime.combine(dt.date(2026, 3, 10), dt.time.fromisoformat(hhmm), dt.UTC)
    return Insert("agent_state_changes", {"agent_id": 9, "state": state, "reason": reason,
                                          "at": at})


async def write(engine) -> None:
    async with engine.begin() as conn:  # a known agent: its open state counts up to now
        await conn.execute(insert(Agent).values(id=9, username="nine", password_hash="-"))
    writer = RecordWriter(engine, hooks=[Rollups(zone=CENTER), AgentStates(CENTER)])
    await write_day(writer)
    for hhmm, state, reason in (CHANGES[2], CHANGES[0], CHANGES[1], CHANGES[0]):  # late, replay
        await writer.write([change(hhmm, state, reason)])


async def reports(engine, center: str | None) -> list[dict]:
    out = []
    async with engine.connect() as conn:
        for interval in (Interval.day, Interval.week, Interval.month):
            out.append(await conn.run_sync(agent_report, Range(SINCE, UNTIL, interval, ZONE),
                                           center))
    return out


async def test_day_rows_give_the_report_of_the_quarter_hours(settings, sessions):
    engine = sessions.kw["bind"]
    await write(engine)
    from_days = await reports(engine, CENTER)
    assert from_days == await reports(engine, None)  # from the 15-minute rows

    by_day = {(r["period"], r["agent_id"]): r for r in from_days[0]["rows"]}
    assert (by_day[("2026-03-10", 7)]["handled"], by_day[("2026-03-10", 8)]["handled"]) == (2, 2)
    assert by_day[("2026-03-10", 9)]["available_s"] == 1800.0  # 23:30-24:00
    nine = by_day[("2026-03-11", 9)]
    assert (nine["available_s"], nine["not_ready_by_reason"]) == (600.0 + 84600.0,
                                                                   {"lunch": 1200.0})
    async with sessions() as session:
        days = await session.scalar(select(func.count()).select_from(ReportAgentDay))
        state_days = await session.scalar(select(func.count()).select_from(ReportAgentDayReason))
    postgres = engine.dialect.name == "postgresql"
    assert (days > 0, state_days > 0) == (postgres, postgres)  # SQLite: quarter hours only

    async with engine.begin() as conn:
        for table in (ReportAgentInterval, ReportCallAgent, ReportAgentState, ReportAgentDay,
                      ReportAgentDayReason, ReportAgentHour, ReportAgentHourReason):
            await conn.execute(delete(table))
        await conn.run_sync(Rollups(zone=CENTER).rebuild, SINCE, UNTIL)
        await conn.run_sync(AgentStates(CENTER).rebuild, SINCE, UNTIL)
    assert await reports(engine, CENTER) == from_days


async def test_a_report_in_another_zone_or_of_part_days_reads_finer_rows(settings, sessions):
    """Day rows of Kolkata cannot be split into UTC days or at 06:00: the UTC report sums
    the hour rows (tests/test_reports_agent_hours.py), the one from 06:00 Kolkata (00:30
    UTC, not a whole hour) the 15-minute rows, and both give what the whole-day figures
    add up to."""
    engine = sessions.kw["bind"]
    await write(engine)
    utc = ZoneInfo("UTC")
    async with engine.connect() as conn:
        other = await conn.run_sync(agent_report, Range(
            dt.datetime(2026, 3, 10, tzinfo=utc), dt.datetime(2026, 3, 11, tzinfo=utc),
            Interval.day, utc), CENTER)
        part = await conn.run_sync(agent_report, Range(
            dt.datetime(2026, 3, 10, 6, tzinfo=ZONE), dt.datetime(2026, 3, 11, 6, tzinfo=ZONE),
            Interval.day, ZONE), CENTER)
    utc_nine = {r["agent_id"]: r for r in other["rows"]}[9]
    assert (utc_nine["available_s"], utc_nine["not_ready_s"]) == (2400.0 + 18000.0, 1200.0)
    part_rows = {(r["period"], r["agent_id"]): r for r in part["rows"]}
    assert part_rows[("2026-03-11", 9)]["available_s"] == 600.0 + 19800.0  # to 06:00
    assert part_rows[("2026-03-10", 7)]["handled"] == 2
