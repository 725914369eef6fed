"""Wiring of transcription and complaints into the app: their `cleanup_ctx` resources.

Every node queues a transcription job for each `recording.ready`. With
`transcribe_in_process` the node also runs a worker with its own decoder processes
(single-node use); otherwise `callcenter worker` processes take the jobs. Every node
sweeps overdue complaints: escalation is a conditional database update, so several
sweeping nodes escalate each complaint once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from core import appkeys
from core.models import Complaint
from transcripts import complaint_events, views
from transcripts.complaints import ComplaintService, run_sla_sweep
from transcripts.exceptions import ModelNotFound
from transcripts.jobs import JobQueue
from transcripts.worker import build_worker, sla_policy

log = logging.getLogger(__name__)


async def transcription_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, keys = app[appkeys.SETTINGS], app[appkeys.KEYS]
    queue = JobQueue(app[appkeys.REDIS], keys.transcribe_stream)
    app[appkeys.CALLS].on_recording = queue.enqueue
    app[appkeys.TRANSCRIPTION] = queue
    supervisor, task = app[appkeys.SUPERVISOR], None
    if settings.transcribe_in_process:
        try:
            # The demo's calls bring recordings within a minute: be ready for them.
            worker = build_worker(settings, app[appkeys.REDIS], app[appkeys.SESSIONS],
                                  settings.transcribe_concurrency,
                                  warm=settings.demo_calls_per_min > 0)
            task = supervisor.start("transcription-worker", worker.run)
        except ModelNotFound as e:
            # Jobs still queue up for a `callcenter worker` that has the model.
            log.error("no in-process transcription: %s (set CALLCENTER_VOSK_MODEL)", e)
    yield
    if task is not None:
        await supervisor.stop(task)


async def complaints_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, bus, keys = app[appkeys.SETTINGS], app[appkeys.BUS], app[appkeys.KEYS]

    async def to_wallboard(message: dict[str, Any]) -> None:
        await bus.publish(keys.wallboard_channel, message)

    async def to_webhooks(kind: str, complaint: Complaint) -> None:
        await complaint_events.announce(app[appkeys.REDIS], keys.webhook_events, kind,
                                        complaint)

    service = ComplaintService(app[appkeys.SESSIONS], sla_policy(settings),
                               notify=to_wallboard, webhooks=to_webhooks)
    app[appkeys.COMPLAINTS] = service
    supervisor = app[appkeys.SUPERVISOR]
    task = supervisor.start("complaint-sla",
                            lambda: run_sla_sweep(service, settings.complaint_sweep_s))
    yield
    await supervisor.stop(task)


def setup(app: web.Application) -> None:
    """After `services_ctx`: both contexts use the call service, bus and keys."""
    app.cleanup_ctx.extend([transcription_ctx, complaints_ctx])
    views.setup(app)
