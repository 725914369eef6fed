"""`GET /metrics`: one node's Prometheus metrics.

Each app has its own `CollectorRegistry` (not the process-wide one), so tests can build
many apps in one process. Counters and the routing histogram count what *this node*
handled: sum them across nodes. The transcription gauges are read at scrape time from
the shared Redis and database, so every node reports the same deployment-wide value:
aggregate those with `max`, not `sum`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Sized
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from core import appkeys
from core.models import Interaction
from core.supervise import Supervisor

log = logging.getLogger(__name__)

CALL_LABELS = ("queue", "tier")
# From an agent free at once (milliseconds) to a long wait in queue (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60,
                   120, 300, 600)
# Counting failed jobs scans the interactions table; scrapes in between reuse the count.
FAILED_COUNT_TTL_S = 30.0


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.offered = Counter("callcenter_calls_offered", "Calls offered to this node.",
                               CALL_LABELS, registry=registry)
        self.answered = Counter("callcenter_calls_answered", "Calls answered by an agent.",
                                CALL_LABELS, registry=registry)
        self.abandoned = Counter("callcenter_calls_abandoned",
                                 "Calls the caller left before an agent answered.",
                                 CALL_LABELS, registry=registry)
        self.failed = Counter("callcenter_calls_failed", "Calls that ended with cause failed.",
                              CALL_LABELS, registry=registry)
        self.routing_latency = Histogram(
            "callcenter_routing_latency_seconds",
            "From call.offered to the agent's reservation (includes time waiting in queue).",
            CALL_LABELS, buckets=LATENCY_BUCKETS, registry=registry)
        self.websockets = Gauge("callcenter_websocket_connections",
                                "Open websocket connections on this node.", ("kind",),
                                registry=registry)
        self.transcription_pending = Gauge(
            "callcenter_transcription_jobs_pending",
            "Transcription jobs not finished: waiting (not yet taken by a worker), "
            "in_progress (taken, not acknowledged) or retry (waiting for a retry).",
            ("state",), registry=registry)
        self.transcription_failed = Gauge(
            "callcenter_transcription_jobs_failed",
            "Recordings whose transcription failed for good (interaction records).",
            registry=registry)
        for kind in ("telephony", "agent"):
            self.websockets.labels(kind)  # present at zero before the first connection
        self._failed_at = 0.0

    def count_viewers(self, viewers: Sized) -> None:
        """Wallboard viewers are a set the wallboard keeps; read its size at scrape time."""
        self.websockets.labels("wallboard").set_function(lambda: len(viewers))

    async def observe(self, name: str, data: dict[str, Any]) -> None:
        """A `CallService` observer: count call events as they happen on this node."""
        labels = (data.get("queue") or "default", data.get("tier") or "standard")
        if name == "call.offered":
            self.offered.labels(*labels).inc()
        elif name == "call.answered":
            self.answered.labels(*labels).inc()
        elif name == "call.ended" and data.get("outcome") == "abandoned":
            self.abandoned.labels(*labels).inc()
        elif name == "call.ended" and data.get("outcome") == "failed":
            self.failed.labels(*labels).inc()
        elif name == "call.routed" and data.get("offered_at") and data.get("ring_started"):
            waited = float(data["ring_started"]) - float(data["offered_at"])
            self.routing_latency.labels(*labels).observe(max(0.0, waited))

    async def refresh(self, app: web.Application) -> None:
        """Read the gauges that live in Redis and the database."""
        queue = app.get(appkeys.TRANSCRIPTION)
        if queue is not None:
            waiting, in_progress = await _stream_backlog(app[appkeys.REDIS], queue.stream,
                                                         queue.group)
            retry = await app[appkeys.REDIS].zcard(queue.delayed)
            for state, value in (("waiting", waiting), ("in_progress", in_progress),
                                 ("retry", retry)):
                self.transcription_pending.labels(state).set(value)
        if time.monotonic() - self._failed_at > FAILED_COUNT_TTL_S:
            async with app[appkeys.READER]() as session:
                failed = await session.scalar(select(func.count()).select_from(Interaction)
                                              .where(Interaction.transcript_status == "failed"))
            self.transcription_failed.set(failed or 0)
            self._failed_at = time.monotonic()


async def _stream_backlog(redis: Any, stream: str, group: str) -> tuple[int, int]:
    """(entries no worker has taken yet, entries taken and not acknowledged)."""
    if not await redis.exists(stream):
        return 0, 0
    info = next((g for g in await redis.xinfo_groups(stream) if g["name"] == group), None)
    if info is None:  # no worker has read yet: every entry waits
        return await redis.xlen(stream), 0
    lag = info.get("lag")
    if lag is None:  # Redis < 7, or entries deleted: count past the group's cursor
        lag = len(await redis.xrange(stream, f"({info['last-delivered-id']}", "+",
                                     count=10_000))
    return int(lag), int(info["pending"])


async def metrics_view(request: web.Request) -> web.Response:
    metrics = request.app[appkeys.METRICS]
    try:
        await metrics.refresh(request.app)
    except Exception as e:  # an outage must not hide the node's own counters
        log.warning("metrics from Redis or the database not refreshed: %s", e)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(metrics.registry), headers={"Content-Type": content_type})


class TaskCollector(Collector):
    """The supervisor's background tasks, read at scrape time."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def collect(self) -> Iterable[Metric]:
        restarts = CounterMetricFamily(
            "callcenter_background_task_restarts",
            "Restarts of a background task after it failed.", labels=["task"])
        for name, entry in sorted(self._supervisor.tasks.items()):
            restarts.add_metric([name], entry.restarts)
        yield restarts
        yield GaugeMetricFamily("callcenter_background_tasks_up",
                                "Background tasks running on this node.",
                                value=self._supervisor.up())
        yield GaugeMetricFamily("callcenter_background_tasks_down",
                                "Required background tasks failed and waiting to restart.",
                                value=len(self._supervisor.down()))


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """After `services_ctx`: observe the call service, the wallboard and the tasks."""
    metrics = app[appkeys.METRICS]
    metrics.registry.register(TaskCollector(app[appkeys.SUPERVISOR]))
    app[appkeys.CALLS].observers.append(metrics.observe)
    metrics.count_viewers(app[appkeys.WALLBOARD].viewers)
    yield


def setup(app: web.Application) -> None:
    app[appkeys.METRICS] = Metrics()
    app.cleanup_ctx.append(metrics_ctx)
    app.router.add_get("/metrics", metrics_view)
