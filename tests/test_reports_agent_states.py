"""The agent-state rollup: seconds per 15 minutes x agent x state x reason, kept as the
agent-log batches are stored, whatever their order, replays and concurrency.

One agent's changes (UTC, 2026-03-10):
  09:00:00 available, 09:10:00 ringing, 09:10:20 on_call, 09:20:00 wrap_up,
  09:21:00 available, 09:40:00 not_ready (lunch), 10:30:00 logged_out, 11:00:00 available
(the last one is open: not in the rollup).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest
from sqlalchemy import event, select

from core.models import ReportAgentDay, ReportAgentHourReason, ReportAgentState
from core.writer import Insert, RecordWriter
from reports.agent_states import AgentStates
from tests.conftest import make_settings

D = dt.date(2026, 3, 10)


@pytest.fixture
def settings(any_database_url, redis_url, redis_prefix, tmp_path):
    return make_settings(any_database_url, redis_url, redis_prefix, tmp_path)


CHANGES = [("09:00:00", "available", None), ("09:10:00", "ringing", None),
           ("09:10:20", "on_call", None), ("09:20:00", "wrap_up", None),
           ("09:21:00", "available", None), ("09:40:00", "not_ready", "lunch"),
           ("10:30:00", "logged_out", None), ("11:00:00", "available", None)]
BY_HAND = {
    ("09:00", "available", ""): 600.0, ("09:00", "ringing", ""): 20.0,
    ("09:00", "on_call", ""): 280.0, ("09:15", "on_call", ""): 300.0,
    ("09:15", "wrap_up", ""): 60.0, ("09:15", "available", ""): 540.0,
    ("09:30", "available", ""): 600.0, ("09:30", "not_ready", "lunch"): 300.0,
    ("09:45", "not_ready", "lunch"): 900.0, ("10:00", "not_ready", "lunch"): 900.0,
    ("10:15", "not_ready", "lunch"): 900.0}


def at(hhmmss: str) -> dt.datetime:
    return dt.datetime.combine(D, dt.time.fromisoformat(hhmmss), dt.UTC)


def change(agent: int, hhmmss: str, state: str, reason: str | None) -> Insert:
    return Insert("agent_state_changes", {"agent_id": agent, "state": state, "reason": reason,
                                          "at": at(hhmmss)})


async def stored(sessions) -> dict[tuple, float]:
    async with sessions() as session:
        rows = (await session.execute(select(
            ReportAgentState.start, ReportAgentState.agent_id, ReportAgentState.state,
            ReportAgentState.reason, ReportAgentState.seconds))).all()
    out: dict[tuple, float] = {}
    for start, agent, state, reason, seconds in rows:
        if abs(seconds) > 1e-6:
            key = (agent, start.astimezone(dt.UTC).strftime("%H:%M"), state, reason)
            out[key] = round(seconds, 3)
    return out


def expected(*agents: int) -> dict[tuple, float]:
    return {(a, *key): seconds for a in agents for key, seconds in BY_HAND.items()}


async def test_changes_in_order_give_the_seconds_worked_out_by_hand(sessions):
    writer = RecordWriter(sessions.kw["bind"], hooks=[AgentStates()])
    for hhmmss, state, reason in CHANGES:
        await writer.write([change(7, hhmmss, state, reason)])
    assert await stored(sessions) == expected(7)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_late_replayed_and_concurrent_batches_give_the_same_seconds(sessions, seed):
    """Three agents' changes in shuffled batches, some twice, written at once (on
    PostgreSQL in concurrent transactions); then a rebuild from the log agrees."""
    rnd = random.Random(seed)
    ops = [change(a, *c) for a in (1, 2, 3) for c in CHANGES]
    ops += rnd.sample(ops, 6)  # replays: the same change stored again
    rnd.shuffle(ops)
    batches = []
    while ops:
        size = rnd.randint(1, 4)
        batches.append(ops[:size])
        del ops[:size]
    writer = RecordWriter(sessions.kw["bind"], hooks=[AgentStates()])
    for k in range(0, len(batches), 3):
        await asyncio.gather(*(writer.write(b) for b in batches[k:k + 3]))
    assert await stored(sessions) == expected(1, 2, 3)

    async with sessions.kw["bind"].begin() as conn:
        await conn.run_sync(AgentStates().rebuild, at("08:00:00"), at("12:00:00"))
    assert await stored(sessions) == expected(1, 2, 3)


async def test_many_agents_changes_in_one_batch_are_one_statement_per_rollup_table(sessions):
    """A batch with many agents' changes gives each agent the seconds worked out by hand;
    on PostgreSQL (quarter hours, days, hours and their reasons) each table's rows go in
    one statement (arrays), not one execution per row."""
    engine = sessions.kw["bind"]
    inserts: list[tuple[str, bool]] = []  # (table, executemany) of each rollup INSERT

    def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().startswith("INSERT INTO report_agent"):
            inserts.append((statement.split()[2], executemany))

    agents = list(range(1, 13))
    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        writer = RecordWriter(engine, hooks=[AgentStates()])
        await writer.write([change(a, *c) for a in agents for c in CHANGES])
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)

    assert await stored(sessions) == expected(*agents)
    if engine.dialect.name != "postgresql":
        return
    assert sorted(inserts) == sorted(
        (table, False) for table in ("report_agent_states", "report_agent_days",
                                     "report_agent_hours", "report_agent_day_reasons",
                                     "report_agent_hour_reasons"))
    async with sessions() as session:
        days = (await session.execute(select(
            ReportAgentDay.agent_id, ReportAgentDay.available_s,
            ReportAgentDay.not_ready_s))).all()
        hours = (await session.execute(select(
            ReportAgentHourReason.agent_id, ReportAgentHourReason.start,
            ReportAgentHourReason.reason, ReportAgentHourReason.seconds))).all()
    assert sorted((a, round(av, 3), round(nr, 3)) for a, av, nr in days) == [
        (a, 1740.0, 3000.0) for a in agents]
    assert sorted((a, s.astimezone(dt.UTC).hour, r, round(v, 3)) for a, s, r, v in hours) == [
        (a, h, "lunch", v) for a in agents for h, v in ((9, 1200.0), (10, 1800.0))]
