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
from sqlalchemy import select

from core.models import ReportAgentState
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
