"""Durable transcription jobs: a Redis stream, a consumer group, and a process pool.

`recording.ready` adds a job ``{call_id, path}`` to the stream. Workers read it with
XREADGROUP and decode in a process pool (the Vosk model is loaded once per process; no
decoding on the event loop). A job is acknowledged only after its outcome is stored on the
interaction, so a worker that dies holding a job leaves it pending; any worker reclaims it
with XAUTOCLAIM once it has been idle `claim_idle_s`. While a job is being decoded its
worker touches it (XCLAIM JUSTID), so a long recording is not mistaken for a dead worker.

Storing is a conditional update (`transcript_status != 'done'`), so a recording decoded
twice stores one transcript and opens at most one complaint. Bad audio fails the job at
once with its reason; other errors are retried with exponential backoff through a sorted
set of delayed jobs, up to `max_attempts`, and then fail with the last reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis
from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import outbox
from core.keys import Keys
from core.models import Interaction, utcnow
from core.settings import Settings
from transcripts import complaint_events, complaints
from transcripts.complaints import SlaPolicy
from transcripts.decode import DecodeRequest, DecodeResult, decode_recording, process_pool
from transcripts.exceptions import Unreadable
from transcripts.jobs import Job, JobQueue
from transcripts.models import LanguageModels
from transcripts.pauses import with_markers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    model: str  # the default: for calls whose IVR language has no model of its own
    concurrency: int = 1
    agent_channel: int = 0
    customer_channel: int = 1
    claim_idle_s: float = 120.0
    max_attempts: int = 3
    retry_base_s: float = 10.0
    retry_max_s: float = 600.0
    block_ms: int = 1000
    recordings_dir: Path | None = None  # where recordings are; unset, ./recordings
    also_dirs: tuple[Path, ...] = ()  # other directories recordings may be in (ARI's)
    max_bytes: int | None = None
    max_seconds: float | None = None
    models: dict[str, str] = field(default_factory=dict)  # IVR language -> model
    # Start the decoder processes (each loads its model) with the worker, not with the
    # first recording: the demo's first transcript comes half a minute sooner.
    warm: bool = False

    def model_for(self, language: str | None) -> str:
        return LanguageModels(self.model, self.models).for_language(language)

    def locate(self, path: str) -> str:
        """The real path of a recording, which must be inside one of the recordings
        directories once `..` and symbolic links are resolved; relative paths are read
        from `recordings_dir`.

        Raises `Unreadable`, the same for any path outside, whether a file is there or not.
        """
        roots = [(self.recordings_dir or Path("recordings")), *self.also_dirs]
        try:
            real = (roots[0] / path).resolve()
            for root in roots:
                if real.is_relative_to(root.resolve()):
                    return str(real)
        except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte
            pass
        raise Unreadable("recording", "the recording cannot be read")

    def backoff(self, attempt: int) -> float:
        delay: float = self.retry_base_s * 2 ** (attempt - 1)
        return min(delay, self.retry_max_s)


class TransientError(Exception):
    """Worth another attempt later: the pool broke, the database was away."""


@dataclass
class TranscriptionWorker:
    queue: JobQueue
    maker: async_sessionmaker[AsyncSession]
    executor_factory: Callable[[], Executor]
    config: WorkerConfig
    consumer: str
    policy: SlaPolicy = field(default_factory=SlaPolicy)
    clock: Callable[[], float] = time.time
    decode: Callable[[DecodeRequest], DecodeResult] = decode_recording
    patterns: tuple[str, ...] = ()
    events: str | None = None  # the webhooks' stream: `transcript.ready` goes there
    outcomes: dict[str, int] = field(default_factory=dict)
    _executor: Executor | None = field(default=None, init=False)
    _inflight: dict[str, asyncio.Task[str]] = field(default_factory=dict, init=False)

    async def run(self) -> None:
        """Take jobs until cancelled; unfinished jobs stay pending for another worker."""
        await self.queue.ensure_group()
        if self.config.warm:
            self._warm()
        slots = asyncio.Semaphore(self.config.concurrency)
        upkeep = asyncio.create_task(self._upkeep(), name="transcribe-upkeep")
        try:
            while not cancelling():
                await slots.acquire()
                try:
                    jobs = await self._next()
                except Exception as e:  # Redis away: wait and try again
                    log.warning("transcription queue unavailable: %s", e)
                    jobs = []
                    await asyncio.sleep(1)
                if not jobs:
                    slots.release()
                for job, delivered in jobs:
                    self._start(job, delivered, slots)
            raise asyncio.CancelledError
        finally:
            upkeep.cancel()
            for task in [upkeep, *self._inflight.values()]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.close()

    def _warm(self) -> None:
        """Spawn the decoder processes now; each loads its model as it starts (the pool's
        initializer). A model that fails to load breaks the pool, as on a first job."""
        self._executor = self._executor or self.executor_factory()
        for _ in range(self.config.concurrency):
            self._executor.submit(os.getpid)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:  # lets a running decode finish; its job stays pending
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def _next(self) -> list[tuple[Job, int]]:
        for job, delivered in await self.queue.reclaim(self.consumer, self.config.claim_idle_s):
            if job.entry_id not in self._inflight:
                log.info("call %s: reclaimed job %s (delivery %d)", job.call_id, job.entry_id,
                         delivered)
                return [(job, delivered)]
        return [(job, 1) for job in await self.queue.read(self.consumer, self.config.block_ms)]

    def _start(self, job: Job, delivered: int, slots: asyncio.Semaphore) -> None:
        task = asyncio.create_task(self.handle(job, delivered), name=f"job-{job.entry_id}")
        self._inflight[job.entry_id] = task

        def done(_: asyncio.Task[str]) -> None:
            self._inflight.pop(job.entry_id, None)
            slots.release()

        task.add_done_callback(done)

    async def _upkeep(self) -> None:
        """Keep our jobs looking alive, and put due retries back on the stream."""
        interval = max(0.05, min(self.config.claim_idle_s / 3, 5.0))
        while not cancelling():
            await asyncio.sleep(interval)
            try:
                await self.queue.touch(self.consumer, list(self._inflight))
                await self.queue.release_due(self.clock())
            except Exception as e:
                log.warning("transcription upkeep failed: %s", e)

    async def handle(self, job: Job, delivered: int = 1) -> str:
        """Run one job to an outcome, store it, then acknowledge it."""
        attempt = job.attempt + delivered - 1
        if attempt > self.config.max_attempts:
            outcome = await self._fail(job, f"gave up after {attempt - 1} attempts: "
                                            "the worker died decoding this recording")
        else:
            try:
                outcome = await self._process(job)
            except Exception as e:  # anything but bad audio may pass: try again later
                log.warning("call %s: attempt %d failed: %s", job.call_id, attempt, e)
                outcome = await self._retry(job, attempt, f"{type(e).__name__}: {e}")
        if outcome != "retry":
            await self.queue.ack(job)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        return outcome

    async def _process(self, job: Job) -> str:
        async with self.maker() as session:
            record = await session.scalar(select(Interaction).where(
                Interaction.call_id == job.call_id))
        if record is None:
            log.warning("call %s: no interaction record; dropping job %s", job.call_id,
                        job.entry_id)
            return "unknown_call"
        if record.recording_path not in (None, job.path):
            return "stale"  # a newer recording of this call replaced this one
        if record.transcript_status == "done":
            return "duplicate"
        language = (record.ivr or {}).get("language")
        try:
            located = self.config.locate(job.path)
        except Unreadable as e:
            return await self._fail(job, f"{e.code}: {e.reason}")
        result = await self._decode(DecodeRequest(
            located, self.config.model_for(language), self.config.agent_channel,
            self.config.customer_channel, language, self.patterns,
            self.config.max_bytes, self.config.max_seconds))
        if result.error is not None:
            return await self._fail(job, result.error)
        marked = with_markers(result.utterances, record.recording_pauses, record.talk_s)
        return await self._store(job, replace(result, utterances=marked))

    async def _decode(self, request: DecodeRequest) -> DecodeResult:
        if self._executor is None:
            self._executor = self.executor_factory()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self.decode, request)
        except BrokenProcessPool as e:
            # A decoder process died (out of memory, a crash in Kaldi): start a fresh pool.
            broken, self._executor = self._executor, None
            broken.shutdown(wait=False, cancel_futures=True)
            raise TransientError("a decoder process died") from e

    async def _store(self, job: Job, result: DecodeResult) -> str:
        detection = result.detection or {}
        now = utcnow()
        async with self.maker() as session, session.begin():
            stored = cast(CursorResult[Any], await session.execute(
                _unfinished(job).values(transcript=result.utterances, transcript_status="done",
                                        transcript_error=None, recording_path=job.path)
                .execution_options(synchronize_session=False)))
            if stored.rowcount != 1:
                return "duplicate"
            record = await session.scalar(select(Interaction).where(
                Interaction.call_id == job.call_id))
            assert record is not None
            opened = None
            if detection.get("is_complaint"):
                record.complaint_flag = True
                opened = await complaints.open_detected(
                    session, record, category=detection.get("category") or "other",
                    score=float(detection.get("score") or 0), now=now, policy=self.policy,
                    evidence=detection.get("evidence") or [])
        log.info("call %s: transcript stored (%d utterances, %.1f s of audio%s)", job.call_id,
                 len(result.utterances), result.duration_s,
                 ", complaint detected" if detection.get("is_complaint") else "")
        if self.events is not None:
            await outbox.emit_quietly(self.queue.redis, self.events, "transcript.ready", {
                "call_id": job.call_id, "utterances": len(result.utterances),
                "complaint": bool(detection.get("is_complaint"))}, order_key=job.call_id)
            if opened is not None:
                await complaint_events.announce(self.queue.redis, self.events, opened.state,
                                                opened)
        return "stored"

    async def _retry(self, job: Job, attempt: int, reason: str) -> str:
        if attempt >= self.config.max_attempts:
            return await self._fail(job, f"gave up after {attempt} attempts: {reason}")
        delay = self.config.backoff(attempt)
        async with self.maker() as session, session.begin():
            await session.execute(_unfinished(job).values(
                transcript_error=f"attempt {attempt} failed, retrying in {delay:.0f} s: "
                                 f"{reason}"[:2000]))
        await self.queue.retry_later(Job(job.entry_id, job.call_id, job.path, attempt),
                                     self.clock() + delay)
        return "retry"

    async def _fail(self, job: Job, reason: str) -> str:
        log.warning("call %s: transcription failed: %s", job.call_id, reason)
        async with self.maker() as session, session.begin():
            await session.execute(_unfinished(job).values(
                transcript_status="failed", transcript_error=reason[:2000]))
        return "failed"


def cancelling() -> bool:
    """Whether this task was asked to stop, even if a Redis call swallowed the cancellation.

    redis-py 8 sends every command under ``asyncio.wait_for`` (its default socket timeout),
    which on Python 3.11 can swallow a CancelledError (CPython gh-86296): a loop that only
    waits for the exception may never end.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _unfinished(job: Job) -> Any:
    """The job's interaction, unless it is done or now holds another recording."""
    return update(Interaction).where(
        Interaction.call_id == job.call_id, Interaction.transcript_status != "done",
        (Interaction.recording_path == job.path) | Interaction.recording_path.is_(None))


def config_from(settings: Settings, concurrency: int,
                models: LanguageModels, warm: bool = False) -> WorkerConfig:
    return WorkerConfig(
        model=models.default, models=models.by_language, concurrency=concurrency,
        agent_channel=settings.agent_channel,
        customer_channel=settings.customer_channel,
        claim_idle_s=settings.transcribe_claim_idle_s,
        max_attempts=settings.transcribe_max_attempts, retry_base_s=settings.transcribe_retry_s,
        recordings_dir=settings.recordings_dir,
        also_dirs=(settings.ari_recordings_dir,) if settings.ari_url else (),
        max_bytes=settings.recording_max_bytes, max_seconds=settings.recording_max_s,
        warm=warm)


def build_worker(settings: Settings, redis: Redis, maker: async_sessionmaker[AsyncSession],
                 concurrency: int, warm: bool = False) -> TranscriptionWorker:
    """A worker with `concurrency` decoder processes, as this node's consumer (started
    with it when `warm`)."""
    # Every model located now: a bad setting fails here, not per job.
    models = LanguageModels.locate(settings.vosk_model, settings.vosk_models)
    return TranscriptionWorker(
        JobQueue(redis, Keys(settings.redis_prefix).transcribe_stream), maker,
        lambda: process_pool(models.default, concurrency),
        config_from(settings, concurrency, models, warm),
        consumer=f"{settings.node_id}-{os.getpid()}", policy=sla_policy(settings),
        patterns=settings.redaction_patterns,
        events=Keys(settings.redis_prefix).webhook_events)


def sla_policy(settings: Settings) -> SlaPolicy:
    return SlaPolicy(hours=dict(settings.complaint_sla_hours),
                     level2_factor=settings.complaint_level2_factor)


async def serve_worker(settings: Settings, concurrency: int) -> None:
    """`callcenter worker`: transcribe until SIGINT or SIGTERM."""
    from core import db
    from core.redisconn import open_redis

    engine = db.create_engine(settings.database_url, settings.db_pool_size,
                              settings.db_pool_overflow)
    async with db.first_start(engine):  # after any node starting beside it has migrated
        pass
    try:
        async with open_redis(settings.redis_url, settings.embedded_redis_path) as redis:
            worker = build_worker(settings, redis, db.sessionmaker(engine), concurrency)
            task = asyncio.create_task(worker.run(), name="transcription-worker")
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, task.cancel)
            log.info("transcription worker %s: %d decoder processes", worker.consumer,
                     concurrency)
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await engine.dispose()
