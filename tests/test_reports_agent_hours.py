"""The agents' hour rows (PostgreSQL): each agent's figures per hour (UTC) are the sums
of its 15-minute rows, worked out by hand here, kept through replays and late entries,
reproduced by `callcenter report rebuild`; an agent report by hour or longer in a zone
with a whole-hour offset reads them and gives the report of the 15-minute rows.

The center is in Asia/Kolkata (UTC+5:30), so its day rows serve no report in
Asia/Shanghai (UTC+8), where the reports are asked for. The calls are those of
tests/test_reports_agent_calls.py (UTC 2026-03-10; every ending written twice):
  09:00 a1 agent 7, talk 100 (30 on hold), wrap-up 10, survey 5
  09:10 a2 agent 7, transferred to agent 8: talk 60, wrap-up 20
  09:20 a3 abandoned;  10:05 a4 agent 8, talk 40, no wrap-up
Agent 9's changes (UTC): 08:50 available, 09:20 not_ready lunch, 10:05 available,
10:30 logged_out; written out of order, one of them twice.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, insert, select, text

from core.models import (
    Agent,
    ReportAgentDay,
    ReportAgentDayReason,
    ReportAgentHour,
    ReportAgentHourReason,
    ReportAgentInterval,
    ReportAgentState,
    ReportCall,
    ReportCallAgent,
    ReportInterval,
)
from core.writer import Insert, RecordWriter
from reports import commands
from reports.agent_states import AgentStates
from reports.agents import agent_report
from reports.periods import Interval, Range
from reports.rollup import Rollups
from tests.conftest import make_settings
from tests.test_reports_agent_calls import write_day

CENTER = "Asia/Kolkata"
SHANGHAI = ZoneInfo("Asia/Shanghai")
CHANGES = {"08:50": ("available", None), "09:20": ("not_ready", "lunch"),
           "10:05": ("available", None), "10:30": ("logged_out", None)}
ORDER = ("10:05", "08:50", "09:20", "10:30", "08:50")
CALLS = ("handled", "transfers", "talk_n", "talk_sum", "wrap_n", "wrap_sum", "csat_n",
         "csat_sum", "hold_sum")
STATES = ("available_s", "ringing_s", "on_call_s", "wrap_up_s", "not_ready_s")


def hour_row(calls: tuple = (0,) * 9, **seconds: float) -> dict[str, float]:
    return {**dict(zip(CALLS, calls, strict=True)), **{s: 0.0 for s in STATES}, **seconds}


# (UTC hour, agent): the figures summed by hand from the calls and changes above.
BY_HAND = {
    ("08:00", 9): hour_row(available_s=600.0),  # 08:50-09:00
    ("09:00", 7): hour_row((2, 1, 1, 100.0, 1, 10.0, 1, 5.0, 30.0)),  # a1, a2's first leg
    ("09:00", 8): hour_row((1, 0, 1, 60.0, 1, 20.0, 0, 0.0, 0.0)),  # a2's last leg
    ("09:00", 9): hour_row(available_s=1200.0, not_ready_s=2400.0),  # to 09:20, to 10:00
    ("10:00", 8): hour_row((1, 0, 1, 40.0, 0, 0.0, 0, 0.0, 0.0)),  # a4
    ("10:00", 9): hour_row(available_s=1500.0, not_ready_s=300.0),  # 10:05-10:30, to 10:05
}
REASONS_BY_HAND = {("09:00", 9, "lunch"): 2400.0, ("10:00", 9, "lunch"): 300.0}


@pytest.fixture
def settings(any_database_url, redis_url, redis_prefix, tmp_path):
    return make_settings(any_database_url, redis_url, redis_prefix, tmp_path,
                         center_timezone=CENTER)


def change(hhmm: str) -> Insert:
    state, reason = CHANGES[hhmm]
    at = dt.datetime.combine(dt.date(2026, 3, 10), dt.time.fromisoformat(hhmm), dt.UTC)
    return Insert("agent_state_changes", {"agent_id": 9, "state": state, "reason": reason,
                                          "at": at})


async def write(engine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(Agent).values(id=9, username="nine", password_hash="-"))
    writer = RecordWriter(engine, hooks=[Rollups(zone=CENTER), AgentStates(CENTER)])
    await write_day(writer)
    for hhmm in ORDER:
        await writer.write([change(hhmm)])


async def hours(engine) -> tuple[dict, dict]:
    """The hour rows and the hour reasons, by UTC hour ("HH:MM") and agent."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(ReportAgentHour.__table__))).mappings().all()
        reasons = (await conn.execute(select(ReportAgentHourReason.__table__))).all()
    def hhmm(start: dt.datetime) -> str:
        return start.astimezone(dt.UTC).strftime("%H:%M")
    return ({(hhmm(r["start"]), r["agent_id"]): {c: r[c] for c in (*CALLS, *STATES)}
             for r in rows},
            {(hhmm(start), agent, reason): seconds for start, agent, reason, seconds in reasons})


async def quarter_hours_summed(engine) -> dict:
    """The 15-minute rows summed by UTC hour in Python: what the hour rows must equal."""
    summed: dict = defaultdict(lambda: hour_row())
    async with engine.connect() as conn:
        for r in (await conn.execute(select(ReportAgentInterval.__table__))).mappings():
            row = summed[(r["start"].astimezone(dt.UTC).strftime("%H:00"), r["agent_id"])]
            for c in CALLS:
                row[c] += r[c]
        for start, agent, state, _, seconds in (await conn.execute(select(
                ReportAgentState.start, ReportAgentState.agent_id, ReportAgentState.state,
                ReportAgentState.reason, ReportAgentState.seconds))):
            summed[(start.astimezone(dt.UTC).strftime("%H:00"), agent)][f"{state}_s"] += seconds
    return dict(summed)


async def reports(engine, shift: dt.timedelta = dt.timedelta()) -> list[list[dict]]:
    """The rows of the agent report of 2026-03-10 in Shanghai by hour, day, week and
    month; `shift`: the range starts that much earlier (a range not starting on a whole
    hour reads the 15-minute rows; nothing happened in the time added)."""
    since = dt.datetime(2026, 3, 10, tzinfo=SHANGHAI)
    out = []
    async with engine.connect() as conn:
        for interval in (Interval.hour, Interval.day, Interval.week, Interval.month):
            report = await conn.run_sync(agent_report, Range(
                since - shift, since + dt.timedelta(days=1), interval, SHANGHAI), CENTER)
            out.append(report["rows"])
    return out


async def test_hour_rows_are_the_quarter_hours_summed_and_give_the_same_report(
        settings, sessions):
    engine = sessions.kw["bind"]
    await write(engine)
    kept, kept_reasons = await hours(engine)
    if engine.dialect.name == "postgresql":
        assert (kept, kept_reasons) == (BY_HAND, REASONS_BY_HAND)
        assert kept == await quarter_hours_summed(engine)
    else:  # SQLite: the 15-minute rows only
        assert (kept, kept_reasons) == ({}, {})

    by_hours = await reports(engine)
    assert by_hours == await reports(engine, dt.timedelta(minutes=15))
    by_hour = {(r["period"][11:], r["agent_id"]): r for r in by_hours[0]}
    assert sorted(by_hour) == [("16:00", 9), ("17:00", 7), ("17:00", 8), ("17:00", 9),
                               ("18:00", 8), ("18:00", 9)]  # UTC+8
    seven, nine = by_hour[("17:00", 7)], by_hour[("17:00", 9)]
    assert (seven["handled"], seven["transfers_made"], seven["avg_talk_s"],
            seven["aht_s"]) == (2, 1, 70.0, 110.0)
    assert (nine["available_s"], nine["not_ready_s"], nine["not_ready_by_reason"],
            nine["signed_in_s"], nine["occupancy"]) == (1200.0, 2400.0, {"lunch": 2400.0},
                                                         3600.0, 0.0)
    [day] = [r for r in by_hours[1] if r["agent_id"] == 9]
    assert (day["available_s"], day["not_ready_by_reason"]) == (3300.0, {"lunch": 2700.0})


async def test_report_rebuild_reproduces_the_hour_rows(settings, sessions):
    """Through `callcenter report rebuild`'s function, a day per transaction, the days
    cut in the middle of 09:00 UTC: the second recomputes the hour the first cut."""
    engine = sessions.kw["bind"]
    await write(engine)
    before, report = await hours(engine), await reports(engine)
    async with engine.begin() as conn:
        for table in (ReportInterval, ReportCall, ReportAgentInterval, ReportCallAgent,
                      ReportAgentState, ReportAgentDay, ReportAgentDayReason,
                      ReportAgentHour, ReportAgentHourReason):
            await conn.execute(delete(table))
    assert await reports(engine) != report
    since = dt.datetime(2026, 3, 9, 9, 37, tzinfo=dt.UTC)
    days = await commands.rebuild(engine, settings, since, since + dt.timedelta(days=2),
                                  lambda _: None)
    assert days == 2
    assert await hours(engine) == before
    assert await reports(engine) == report
    if engine.dialect.name == "postgresql":  # the rewritten rollups have planner statistics
        async with engine.connect() as conn:
            analyzed = set(await conn.scalars(text(
                "SELECT relname FROM pg_stat_user_tables WHERE relname LIKE 'report_%' "
                "AND last_analyze IS NOT NULL")))
        assert {"report_agent_days", "report_agent_hours", "report_intervals"} <= analyzed
