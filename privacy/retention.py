"""Retention: recordings, transcripts, call records and audit entries older than their
setting are deleted, once a day, by one node.

The day's sweep is a timer in its own sorted set, claimed through `core.timers` (one
node wins the claim; if it dies mid-sweep the lease runs out and another node sweeps
again: every step is a delete of what is older than the cutoff, safe to repeat). The
sweep logs what it did and leaves a count-only entry in the audit log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit
from core.models import (
    AuditEntry,
    Call,
    Complaint,
    Interaction,
    ProcessedEvent,
    QualityEvaluation,
)
from core.redisconn import log_failure
from core.settings import Settings
from core.timers import Timer, Timers

log = logging.getLogger(__name__)

DAY_S = 86400.0
TIMER = Timer("retention", "daily")
SWEEPER = audit.Viewer("retention", "system", None)


@dataclass(frozen=True)
class Policy:
    """Days each kind of data is kept; 0 keeps it for ever."""

    recordings_days: int = 0
    transcripts_days: int = 0
    calls_days: int = 0
    audit_days: int = 0

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(settings.retention_recordings_days, settings.retention_transcripts_days,
                   settings.retention_calls_days, settings.retention_audit_days)

    def cutoff(self, days: int, now: dt.datetime) -> dt.datetime | None:
        return now - dt.timedelta(days=days) if days else None


@dataclass
class Report:
    recordings: int = 0
    transcripts: int = 0
    calls: int = 0
    interactions: int = 0
    audit_entries: int = 0
    files_failed: list[str] = field(default_factory=list)


@dataclass
class Retention:
    maker: async_sessionmaker[AsyncSession]
    timers: Timers
    policy: Policy
    recordings_dir: Path | None = None
    clock: Callable[[], float] = time.time
    first_run_s: float = 60.0
    poll_s: float = 30.0

    async def tick(self) -> Report | None:
        """Sweep if the day's timer is due and this node won it; the report, or None."""
        now = self.clock()
        await self.timers.redis.zadd(self.timers.key, {TIMER.member: now + self.first_run_s},
                                     nx=True)
        for timer in await self.timers.claim_due(now):
            report = await self.sweep(dt.datetime.fromtimestamp(now, dt.UTC))
            await self.timers.schedule(timer, now + DAY_S)
            await self.timers.done(timer, now)
            return report
        return None

    async def run(self) -> None:
        while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
            try:
                await self.tick()
            except Exception:  # the timer stays due: the next poll (here or elsewhere) retries
                log_failure(log, "retention sweep failed")
            await asyncio.sleep(self.poll_s)

    async def sweep(self, now: dt.datetime) -> Report:
        report, paths = Report(), []
        async with self.maker() as session, session.begin():
            paths += await self._recordings(session, now, report)
            await self._transcripts(session, now, report)
            paths += await self._calls(session, now, report)
            await self._audit(session, now, report)
            audit.record(session, SWEEPER, "retention.sweep", [("retention", now.date()
                                                                 .isoformat())],
                         {k: v for k, v in asdict(report).items() if k != "files_failed"})
        await self._remove(paths, report)
        log.info("retention sweep at %s: %s", now.isoformat(), asdict(report))
        return report

    async def _recordings(self, session: AsyncSession, now: dt.datetime,
                          report: Report) -> list[str]:
        cutoff = self.policy.cutoff(self.policy.recordings_days, now)
        if cutoff is None:
            return []
        old = Interaction.offered_at < cutoff, Interaction.recording_path.is_not(None)
        paths = cast(list[str], list(await session.scalars(
            select(Interaction.recording_path).where(*old))))
        await session.execute(update(Interaction).where(*old).values(recording_path=None))
        report.recordings = len(paths)
        return paths

    async def _transcripts(self, session: AsyncSession, now: dt.datetime,
                           report: Report) -> None:
        cutoff = self.policy.cutoff(self.policy.transcripts_days, now)
        if cutoff is None:
            return
        result = await session.execute(update(Interaction).where(
            Interaction.offered_at < cutoff, Interaction.transcript.is_not(None),
        ).values(transcript=None, transcript_status="expired", transcript_error=None))
        report.transcripts = cast(CursorResult[Any], result).rowcount

    async def _calls(self, session: AsyncSession, now: dt.datetime,
                     report: Report) -> list[str]:
        cutoff = self.policy.cutoff(self.policy.calls_days, now)
        if cutoff is None:
            return []
        old = Interaction.offered_at < cutoff
        rows = (await session.execute(select(Interaction.id, Interaction.recording_path)
                                      .where(old))).all()
        ids = [r.id for r in rows]
        # A complaint outlives the call it came from; it no longer points at it.
        await session.execute(update(Complaint).where(Complaint.interaction_id.in_(ids))
                              .values(interaction_id=None))
        # So does a quality evaluation: its score stays in the statistics.
        await session.execute(update(QualityEvaluation)
                              .where(QualityEvaluation.interaction_id.in_(ids))
                              .values(interaction_id=None))
        report.interactions = cast(CursorResult[Any], await session.execute(
            delete(Interaction).where(old))).rowcount
        report.calls = cast(CursorResult[Any], await session.execute(delete(Call).where(
            Call.offered_at < cutoff, Call.state.in_(("ended", "abandoned"))))).rowcount
        await session.execute(delete(ProcessedEvent).where(ProcessedEvent.received_at < cutoff))
        return [r.recording_path for r in rows if r.recording_path]

    async def _audit(self, session: AsyncSession, now: dt.datetime, report: Report) -> None:
        cutoff = self.policy.cutoff(self.policy.audit_days, now)
        if cutoff is not None:
            report.audit_entries = cast(CursorResult[Any], await session.execute(
                delete(AuditEntry).where(AuditEntry.at < cutoff))).rowcount

    async def _remove(self, paths: list[str], report: Report) -> None:
        for path in paths:
            full = self.recordings_dir / path if self.recordings_dir else Path(path)
            try:
                await asyncio.to_thread(os.remove, full)
            except FileNotFoundError:
                continue
            except OSError as e:
                log.error("expired recording %s not removed: %s", full, e)
                report.files_failed.append(path)


