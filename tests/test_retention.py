"""Retention: the daily sweep, run by one node through the shared timers, deletes what
is older than each setting, and says what it did. The clock is injected."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from core import db
from core.keys import Keys
from core.models import AuditEntry, Call, Complaint, Interaction
from core.settings import Settings
from core.timers import Timers
from privacy.retention import DAY_S, Policy, Retention
from tests.conftest import _database_params, _database_url

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        return self.now



@pytest.fixture(params=_database_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite and PostgreSQL: the claims and conflicts are database-specific SQL."""
    return _database_url(request.param, tmp_path)


def node(redis: Redis, settings: Settings, sessions: Any, clock: Clock,
         tmp_path: Path) -> Retention:
    timers = Timers(redis, f"{Keys(settings.redis_prefix).timers}:retention")
    return Retention(sessions, timers, Policy(recordings_days=30, transcripts_days=60,
                                              calls_days=365, audit_days=400),
                     tmp_path, clock=clock, first_run_s=60)


async def add_call(sessions: Any, tmp_path: Path, call_id: str, age_days: int) -> Path:
    at = NOW - dt.timedelta(days=age_days)
    path = tmp_path / f"{call_id}.wav"
    path.write_bytes(b"RIFF")
    async with db.session_scope(sessions) as session:
        session.add(Call(id=call_id, state="ended", offered_at=at))
        interaction = Interaction(call_id=call_id, offered_at=at, recording_path=path.name,
                                  transcript=[{"text": "hello"}], transcript_status="done")
        session.add(interaction)
        await session.flush()
        session.add(Complaint(customer_id="C1", interaction_id=interaction.id))
        session.add(AuditEntry(at=at, actor="a", role="admin", action="view",
                               object_type="customer", object_id=call_id))
    return path


async def test_the_daily_sweep_deletes_what_is_older_than_each_setting(
        redis: Redis, settings: Settings, sessions: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    fresh = await add_call(sessions, tmp_path, "fresh", 10)
    no_audio = await add_call(sessions, tmp_path, "month-old", 45)
    no_text = await add_call(sessions, tmp_path, "quarter-old", 90)
    gone = await add_call(sessions, tmp_path, "ancient", 500)
    clock = Clock()
    retention = node(redis, settings, sessions, clock, tmp_path)
    assert await retention.tick() is None  # the first sweep is a minute after start
    clock.now += 61
    with caplog.at_level(logging.INFO, logger="privacy.retention"):
        report = await retention.tick()
    assert report is not None
    assert (report.recordings, report.transcripts, report.interactions, report.calls,
            report.audit_entries) == (3, 2, 1, 1, 1)
    assert "retention sweep" in caplog.text
    assert fresh.exists() and not no_audio.exists() and not no_text.exists()
    assert not gone.exists()
    async with sessions() as session:
        rows = {i.call_id: i for i in await session.scalars(select(Interaction))}
        assert set(rows) == {"fresh", "month-old", "quarter-old"}
        assert rows["fresh"].recording_path == "fresh.wav" and rows["fresh"].transcript
        assert rows["month-old"].recording_path is None and rows["month-old"].transcript
        assert rows["quarter-old"].transcript is None
        assert rows["quarter-old"].transcript_status == "expired"
        assert await session.get(Call, "ancient") is None
        complaints = (await session.scalars(select(Complaint))).all()
        assert len(complaints) == 4  # a complaint outlives its call
        sweeps = (await session.scalars(select(AuditEntry).where(
            AuditEntry.action == "retention.sweep"))).all()
        assert len(sweeps) == 1 and sweeps[0].detail["interactions"] == 1
    # Not again the same day; again a day later.
    clock.now += 3600
    assert await retention.tick() is None
    clock.now += DAY_S
    assert await retention.tick() is not None


async def test_of_several_nodes_one_sweeps(
        redis: Redis, settings: Settings, sessions: Any, tmp_path: Path) -> None:
    await add_call(sessions, tmp_path, "ancient", 500)
    clock = Clock()
    nodes = [node(redis, settings, sessions, clock, tmp_path) for _ in range(4)]
    await nodes[0].tick()
    clock.now += 61
    reports = await asyncio.gather(*(n.tick() for n in nodes))
    assert sum(r is not None for r in reports) == 1


async def test_zero_days_keeps_everything(
        redis: Redis, settings: Settings, sessions: Any, tmp_path: Path) -> None:
    path = await add_call(sessions, tmp_path, "ancient", 5000)
    clock = Clock()
    retention = node(redis, settings, sessions, clock, tmp_path)
    retention.policy = Policy()
    report = await retention.sweep(NOW)
    assert (report.recordings, report.transcripts, report.interactions,
            report.audit_entries) == (0, 0, 0, 0)
    assert path.exists()
