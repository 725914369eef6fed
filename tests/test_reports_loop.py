"""A long agent report (PostgreSQL) leaves the event loop free while its rows are made.

A quarter's report by day for 800 agents is 72,800 rows, made in Python from the
agents' day rows: hundreds of milliseconds of CPU, which on the loop would stall every other
request of the node (a screen-pop) for as long. A ticker beside the report measures the
loop's longest gap; the bound is relative to the report's own duration, so a loaded host
slows both alike.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import time
from functools import partial
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from core import db, gctune
from reports.agents import agent_report
from reports.periods import Interval, Range
from tests.conftest import POSTGRES_URL, make_settings

CENTER = "Asia/Shanghai"
ZONE = ZoneInfo(CENTER)
SINCE = dt.datetime(2026, 1, 1, tzinfo=ZONE)
DAYS = 91
AGENTS = 800  # a quiet host builds it in well over 0.3 s

_AGENTS = """
INSERT INTO agents (id, username, display_name, password_hash, role, skills, level, active,
                    created_at, queues)
SELECT a, 'agent' || a, 'Agent ' || a, '-', 'agent', '[]', 1, true, now(), '[]'
FROM generate_series(1, :agents) a
"""
# Every figure of every agent's day, and a not-ready reason on every other day.
_DAYS = """
INSERT INTO report_agent_days (zone, day, agent_id, handled, transfers, talk_n, talk_sum,
    wrap_n, wrap_sum, csat_n, csat_sum, hold_sum, available_s, ringing_s, on_call_s,
    wrap_up_s, not_ready_s)
SELECT :zone, CAST(:first AS date) + d, a, 40 + a % 7, d % 3, 40, 12000.0 + a, 40, 1200.0,
       5, 21.0, 300.0, 9000.0, 1200.0, 16800.0, 3600.0, 1800.0
FROM generate_series(1, :agents) a, generate_series(0, :days - 1) d
"""
_REASONS = """
INSERT INTO report_agent_day_reasons (zone, day, agent_id, reason, seconds)
SELECT :zone, CAST(:first AS date) + d, a, 'lunch', 1800.0
FROM generate_series(1, :agents) a, generate_series(0, :days - 1) d WHERE d % 2 = 0
"""


async def ticker(stop: asyncio.Event, gaps: list[float]) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request, redis_url, redis_prefix, tmp_path):
    return make_settings(POSTGRES_URL, redis_url, redis_prefix, tmp_path)


async def test_a_long_agent_report_leaves_the_event_loop_free(sessions):
    maker = sessions
    params = {"agents": AGENTS, "days": DAYS, "zone": CENTER, "first": SINCE.date()}
    async with maker() as session, session.begin():
        for statement in (_AGENTS, _DAYS, _REASONS):
            await session.execute(text(statement), params)
        await session.execute(text("ANALYZE"))  # else a nested loop over the reasons
    rng = Range(SINCE, SINCE + dt.timedelta(days=DAYS), Interval.day, ZONE)
    read = db.session_reader(maker)
    await read(partial(agent_report, rng=rng, center=CENTER))  # warm: pool, statements

    # The heap frozen, as a node keeps it (core/gctune.py): in a whole suite's process a
    # full collection of the suite's own objects, set off by the report's allocations,
    # stopped the loop for 3.3-3.6 s (two clean-clone runs), the test's heap and not the
    # report's work.
    gctune.freeze_now()
    try:
        stop, gaps = asyncio.Event(), []
        ticking = asyncio.create_task(ticker(stop, gaps))
        await asyncio.sleep(0.05)  # the ticker is running
        gaps.clear()
        began = time.perf_counter()
        report = await read(partial(agent_report, rng=rng, center=CENTER))
        took = time.perf_counter() - began
        stop.set()
        await ticking
    finally:
        gc.unfreeze()

    assert len(report["rows"]) == AGENTS * DAYS
    assert report["rows"][0]["not_ready_by_reason"] == {"lunch": 1800.0}
    assert took >= 0.3, f"the report took {took:.3f} s: too little data to tell"
    assert max(gaps) < took / 2, f"loop stalled {max(gaps):.3f} s of a {took:.3f} s report"
