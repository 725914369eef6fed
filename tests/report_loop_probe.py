"""The measured half of tests/test_reports_loop.py, in a process of its own: a node's
heap (small, and frozen as a node keeps it), not a whole test suite's, whose own full
collections stopped the loop for seconds in the middle of the report.

    python -m tests.report_loop_probe DATABASE_URL ZONE SINCE DAYS   # one JSON line
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from core import db, gctune
from reports.agents import agent_report
from reports.periods import Interval, Range


async def ticker(stop: asyncio.Event, gaps: list[float]) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def measure(url: str, center: str, since: dt.datetime, days: int) -> dict[str, Any]:
    """The report by day over `days` from `since`, with the loop's longest gap meanwhile."""
    engine = db.create_engine(url)
    read = db.session_reader(db.sessionmaker(engine))
    rng = Range(since, since + dt.timedelta(days=days), Interval.day, ZoneInfo(center))
    try:
        await read(partial(agent_report, rng=rng, center=center))  # warm: pool, statements
        gctune.freeze_now()
        stop, gaps = asyncio.Event(), []
        ticking = asyncio.create_task(ticker(stop, gaps))
        await asyncio.sleep(0.05)  # the ticker is running
        gaps.clear()
        began = time.perf_counter()
        report = await read(partial(agent_report, rng=rng, center=center))
        took = time.perf_counter() - began
        stop.set()
        await ticking
    finally:
        await engine.dispose()
    return {"took": took, "max_gap": max(gaps), "rows": len(report["rows"]),
            "first_reasons": report["rows"][0]["not_ready_by_reason"]}


if __name__ == "__main__":
    url, center, since, days = sys.argv[1:5]
    result = asyncio.run(measure(url, center, dt.datetime.fromisoformat(since), int(days)))
    print(orjson.dumps(result).decode())
