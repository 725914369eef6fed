"""The application factory: one `create_app(settings)`, resources in `cleanup_ctx`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from agent_console import customer_views, pages, wallboard_ws
from agent_console import gateway as agent_gateway
from agent_console import views as agent_views
from agent_console.presence import Presence
from agent_console.wallboard import Wallboard
from callcenter import openapi
from core import appkeys, audit_views, db, gctune, health, metrics
from core.bus import Bus
from core.keys import Keys
from core.redisconn import open_redis
from core.settings import Settings
from core.timers import Timers
from core.web import TokenWatch, errors, redact_access_log, signed_in
from core.writer import RecordWriter
from cti import gateway as telephony_gateway
from cti.announce import announce_positions
from cti.ari import ari_ctx
from cti.recovery import Recovery
from cti.service import CallService
from privacy import plugin as privacy_plugin
from routing.directory import AgentDirectory
from routing.service import Router
from routing.store import RoutingStore
from transcripts import plugin as transcripts_plugin
from webhooks import plugin as webhooks_plugin

log = logging.getLogger(__name__)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    async with open_redis(settings.redis_url, settings.embedded_redis_path) as redis:
        app[appkeys.REDIS] = redis
        yield


async def db_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = db.create_engine(app[appkeys.SETTINGS].database_url)
    await db.check(engine)
    reader = db.create_read_engine(app[appkeys.SETTINGS].database_url)
    app[appkeys.ENGINE] = engine
    app[appkeys.SESSIONS] = db.sessionmaker(engine)
    app[appkeys.READER] = db.sessionmaker(reader or engine)
    sync_engine = db.create_sync_engine(app[appkeys.SETTINGS].database_url)
    app[appkeys.READ] = db.thread_reader(sync_engine) if sync_engine is not None \
        else db.session_reader(app[appkeys.READER])
    app[appkeys.WRITER] = RecordWriter(engine, sync_engine)
    app[appkeys.WRITER].start()
    yield
    await app[appkeys.WRITER].stop()
    await engine.dispose()
    if sync_engine is not None:
        sync_engine.dispose()
    if reader is not None:
        await reader.dispose()


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    """Wire the packages together: each is given what it uses."""
    settings, redis = app[appkeys.SETTINGS], app[appkeys.REDIS]
    keys = Keys(settings.redis_prefix)
    bus = Bus(redis, f"{keys.prefix}:ch:node:{settings.node_id}")
    timers = Timers(redis, keys.timers)
    router = Router(RoutingStore(redis, keys))
    console = AgentDirectory(app[appkeys.SESSIONS], router)
    await console.load_queues()
    calls = CallService(app[appkeys.SESSIONS], app[appkeys.WRITER], router, timers, bus, keys,
                        settings.node_id,
                        ring_timeout_s=settings.ring_timeout_s, wrap_up_s=settings.wrap_up_s,
                        reader=app[appkeys.READER], read=app[appkeys.READ])
    app[appkeys.KEYS], app[appkeys.BUS], app[appkeys.TIMERS] = keys, bus, timers
    app[appkeys.ROUTER], app[appkeys.CALLS], app[appkeys.DIRECTORY] = router, calls, console
    recovery = Recovery(calls, console, app[appkeys.SESSIONS])
    await recovery.check()
    app[appkeys.RECOVERY] = recovery
    app[appkeys.PRESENCE] = presence = Presence(timers, settings.agent_away_s,
                                                recovery.connected, clock=lambda: calls.clock())
    wallboard = Wallboard(redis, keys, app[appkeys.SESSIONS], router.store, bus,
                          settings.service_level_threshold_s, settings.service_level_target,
                          clock=lambda: calls.clock())
    calls.observers.append(wallboard.observe)
    app[appkeys.WALLBOARD] = wallboard
    app[appkeys.TOKEN_WATCH] = token_watch = TokenWatch(app[appkeys.SESSIONS])
    tasks = [asyncio.create_task(bus.run(), name="bus"),
             asyncio.create_task(run_timers(calls, timers), name="timers"),
             asyncio.create_task(calls.persist_agent_log(), name="agent-log"),
             asyncio.create_task(recovery.watch(), name="recovery"),
             asyncio.create_task(announce_positions(calls), name="announce"),
             asyncio.create_task(wallboard.run(), name="wallboard"),
             asyncio.create_task(token_watch.run(), name="token-watch"),
             asyncio.create_task(presence.run(), name="presence")]
    if settings.gc_freeze_s:
        tasks.append(asyncio.create_task(gctune.run(settings.gc_freeze_s, settings.gc_full_s),
                                         name="gc"))
    yield
    await stop(tasks)
    await wallboard.close()
    await bus.close()


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel background tasks and wait for them to end.

    redis-py's asyncio client can swallow a cancellation that lands mid-command, and
    a polling loop then runs on: a task that survives is cancelled again.
    """
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.2)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())


async def run_timers(calls: CallService, timers: Timers, interval: float = 0.1) -> None:
    """Fire due timers (ring-no-answer, wrap-up, ring widening) on whichever node polls."""
    # Not `while True`: the Redis client can swallow a cancellation mid-command, and the
    # loop would run on; checking `cancelling()` lets shutdown finish anyway.
    while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
        try:
            claimed_at = calls.clock()
            for timer in await timers.claim_due(claimed_at):
                try:
                    await calls.on_timer(timer)
                except Exception:
                    log.exception("timer %s failed; it fires again after its lease", timer.member)
                    continue
                await timers.done(timer, claimed_at)
        except Exception as e:  # Redis outage: keep polling, it comes back
            log.warning("timer poll failed: %s", e)
            await asyncio.sleep(1)
        await asyncio.sleep(interval)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[errors, signed_in], client_max_size=2 * 1024 * 1024)
    app[appkeys.SETTINGS] = settings
    redact_access_log()
    app.cleanup_ctx.extend([redis_ctx, db_ctx, services_ctx, ari_ctx])
    health.setup(app)
    metrics.setup(app)
    telephony_gateway.setup(app)
    agent_gateway.setup(app)
    agent_views.setup(app)
    customer_views.setup(app)
    wallboard_ws.setup(app)
    pages.setup(app)
    transcripts_plugin.setup(app)
    webhooks_plugin.setup(app)
    privacy_plugin.setup(app)
    audit_views.setup(app)
    openapi.setup(app)
    return app
