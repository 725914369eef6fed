"""A long agent report (PostgreSQL) leaves the event loop free while its rows are made.

A quarter's report by day for 800 agents is 72,800 rows, made in Python from the
agents' day rows: hundreds of milliseconds of CPU, which on the loop would stall every other
request of the node (a screen-pop) for as long. A ticker beside the report measures the
loop's longest gap; the bound is relative to the report's own duration, so a loaded host
slows both alike. The report runs in a process of its own (tests/report_loop_probe.py)
with a node's heap: in a whole suite's process, full collections of the suite's own
objects stopped the loop for 3.3-3.6 s in the middle of it (two clean-clone runs).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from sqlalchemy import text

from tests.conftest import POSTGRES_URL, make_settings

ROOT = Path(__file__).resolve().parents[1]

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


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request, redis_url, redis_prefix, tmp_path):
    return make_settings(POSTGRES_URL, redis_url, redis_prefix, tmp_path)


async def test_a_long_agent_report_leaves_the_event_loop_free(settings, sessions):
    maker = sessions
    params = {"agents": AGENTS, "days": DAYS, "zone": CENTER, "first": SINCE.date()}
    async with maker() as session, session.begin():
        for statement in (_AGENTS, _DAYS, _REASONS):
            await session.execute(text(statement), params)
        await session.execute(text("ANALYZE"))  # else a nested loop over the reasons

    # Measured in a process of its own, as a node runs it (tests/report_loop_probe.py).
    probe = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "tests.report_loop_probe",
                         settings.database_url, CENTER, SINCE.isoformat(), str(DAYS)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    result = orjson.loads(probe.stdout.splitlines()[-1])
    took, stalled = result["took"], result["max_gap"]

    assert result["rows"] == AGENTS * DAYS
    assert result["first_reasons"] == {"lunch": 1800.0}
    assert took >= 0.3, f"the report took {took:.3f} s: too little data to tell"
    assert stalled < took / 2, f"loop stalled {stalled:.3f} s of a {took:.3f} s report"
