"""The application factory: one `create_app(settings)`, resources in `cleanup_ctx`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from admin import plugin as admin_plugin
from agent_console import (
    callback_views,
    control_views,
    customer_views,
    pages,
    transfer_views,
    value_views,
    wallboard_ws,
)
from agent_console import gateway as agent_gateway
from agent_console import views as agent_views
from agent_console.presence import Presence
from agent_console.wallboard import Wallboard
from callcenter import openapi
from core import appkeys, audit_views, db, gctune, health, metrics
from core.bus import Bus
from core.codes import Codes
from core.keys import Keys
from core.redisconn import open_redis
from core.settings import Settings
from core.supervise import Supervisor
from core.tickpipe import TickPipe
from core.timers import TimerLoop, Timers
from core.web import TokenWatch, errors, redact_access_log, response_headers, signed_in
from core.writer import Hook, RecordWriter
from core.ws_auth import ConnectionSlots
from cti import gateway as telephony_gateway
from cti.announce import announce_positions
from cti.ari import ari_ctx
from cti.callback_desk import CallbackDesk
from cti.commands import PbxCommands
from cti.control import ControlService
from cti.monitor import MonitorService
from cti.monitor_steps import MonitorSteps
from cti.once import Once
from cti.recovery import Recovery
from cti.service import CallService
from demo.center import DemoCenter
from privacy import plugin as privacy_plugin
from quality import plugin as quality_plugin
from reports import views as report_views
from reports.agent_states import AgentStates
from reports.rollup import Rollups
from routing.admin_steps import AdminSteps
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
    settings = app[appkeys.SETTINGS]
    engine = db.create_engine(settings.database_url, settings.db_pool_size,
                              settings.db_pool_overflow)
    await db.check(engine)
    reader = db.create_read_engine(settings.database_url, settings.db_read_pool_size,
                                   settings.db_read_pool_overflow)
    app[appkeys.ENGINE] = engine
    app[appkeys.SESSIONS] = db.sessionmaker(engine)
    app[appkeys.READER] = db.sessionmaker(reader)
    sync_engine = db.create_sync_engine(settings.database_url)
    app[appkeys.READ] = db.thread_reader(sync_engine) if sync_engine is not None \
        else db.session_reader(app[appkeys.READER])
    hooks: list[Hook] = [Rollups(settings.service_level_threshold_s, settings.short_abandon_s,
                                 settings.center_timezone),
                         AgentStates(settings.center_timezone)] if settings.report_rollups else []
    app[appkeys.WRITER] = RecordWriter(engine, sync_engine, hooks=hooks)
    app[appkeys.WRITER].start(app[appkeys.SUPERVISOR])
    yield
    await app[appkeys.WRITER].stop()
    await engine.dispose()
    if sync_engine is not None:
        sync_engine.dispose()
    await reader.dispose()


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    """Wire the packages together: each is given what it uses."""
    settings, redis = app[appkeys.SETTINGS], app[appkeys.REDIS]
    keys = Keys(settings.redis_prefix)
    bus = Bus(redis, f"{keys.prefix}:ch:node:{settings.node_id}")
    timers = Timers(redis, keys.timers)
    pipe = TickPipe.for_client(redis)  # the call path's commands, pipelined by loop turn
    router = Router(RoutingStore(redis, keys, pipe))
    admin_steps = AdminSteps(redis, keys)
    console = AgentDirectory(app[appkeys.SESSIONS], router, admin_steps)
    await console.load_queues()
    # The environment's codes until the admin's are loaded (admin/live.py).
    app[appkeys.CODES] = Codes(settings.not_ready_reasons, settings.dispositions)
    calls = CallService(app[appkeys.SESSIONS], app[appkeys.WRITER], router, timers, bus, keys,
                        settings.node_id,
                        ring_timeout_s=settings.ring_timeout_s, wrap_up_s=settings.wrap_up_s,
                        integration_handover=settings.integration_handover,
                        reader=app[appkeys.READER], read=app[appkeys.READ],
                        admin_steps=admin_steps,
                        callback_retry_s=settings.callback_retry_s,
                        callback_attempts=settings.callback_attempts,
                        callback_attempt_timeout_s=settings.callback_attempt_timeout_s,
                        callback_max_ahead_s=settings.callback_max_ahead_s)
    app[appkeys.CALLBACKS] = CallbackDesk(calls, app[appkeys.SESSIONS],
                                          settings.callback_integration)
    app[appkeys.KEYS], app[appkeys.BUS], app[appkeys.TIMERS] = keys, bus, timers
    app[appkeys.ROUTER], app[appkeys.CALLS], app[appkeys.DIRECTORY] = router, calls, console
    recovery = Recovery(calls, console, app[appkeys.SESSIONS])
    await recovery.check()
    app[appkeys.RECOVERY] = recovery
    app[appkeys.PRESENCE] = presence = Presence(timers, settings.agent_away_s,
                                                recovery.connected, clock=lambda: calls.clock())
    wallboard = Wallboard(redis, keys, app[appkeys.SESSIONS], router.store, bus,
                          settings.service_level_threshold_s, settings.service_level_target,
                          clock=lambda: calls.clock(), tz=settings.zone,
                          short_abandon_s=settings.short_abandon_s,
                          formula=settings.service_level_formula)
    calls.observers.append(wallboard.observe)
    app[appkeys.WALLBOARD] = wallboard
    commands = PbxCommands(redis, keys, bus, settings.node_id, settings.control_timeout_s,
                           clock=lambda: calls.clock())
    await commands.start()
    app[appkeys.COMMANDS] = commands
    app[appkeys.CONTROL] = control = ControlService(commands, router, calls)
    calls.observers.append(control.observe)
    app[appkeys.CONTROL_ONCE] = Once(redis, keys, settings.control_timeout_s + 5)
    app[appkeys.MONITOR] = monitor = MonitorService(
        MonitorSteps(redis, keys), commands, control, bus, keys, app[appkeys.SESSIONS])
    calls.observers.append(monitor.observe)
    app[appkeys.TOKEN_WATCH] = token_watch = TokenWatch(app[appkeys.SESSIONS])
    app[appkeys.WS_SLOTS] = ConnectionSlots(settings.ws_connections_per_token)
    supervisor = app[appkeys.SUPERVISOR]
    tasks = [supervisor.start("bus", bus.run),
             supervisor.start("timers", TimerLoop(timers, calls.on_timer,
                                                        lambda: calls.clock()).run),
             supervisor.start("agent-log", calls.persist_agent_log),
             supervisor.start("recovery", recovery.watch),
             supervisor.start("announce", lambda: announce_positions(calls)),
             supervisor.start("wallboard", wallboard.run),
             supervisor.start("token-watch", token_watch.run),
             supervisor.start("presence", presence.run)]
    if settings.gc_freeze_s:
        tasks.append(supervisor.start(
            "gc", lambda: gctune.run(settings.gc_freeze_s, settings.gc_full_s), required=False))
    yield
    await supervisor.stop(*tasks)
    await commands.stop()
    await wallboard.close()
    await bus.close()
    if pipe is not None:
        await pipe.close()


async def supervisor_ctx(app: web.Application) -> AsyncIterator[None]:
    """First in, last out: each context stops the tasks it started; this stops the rest."""
    app[appkeys.SUPERVISOR] = supervisor = Supervisor()
    yield
    await supervisor.stop()


async def demo_ctx(app: web.Application) -> AsyncIterator[None]:
    """The live demo center, when `serve --demo` asked for traffic."""
    settings = app[appkeys.SETTINGS]
    if settings.demo_calls_per_min <= 0:
        yield
        return
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    # Inside the recordings directory, where the transcription worker may read
    # (unset: ./recordings, as the worker has it), named relative to it.
    root = settings.recordings_dir or Path("recordings")
    center = DemoCenter(app[appkeys.SESSIONS], settings.secret_key,
                        f"http://{host}:{settings.port}", settings.demo_calls_per_min,
                        root / "demo", root)
    supervisor = app[appkeys.SUPERVISOR]
    entry = supervisor.start("demo", center.run, required=False)
    yield
    await supervisor.stop(entry)
    await center.stop()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[errors, signed_in], client_max_size=2 * 1024 * 1024)
    app[appkeys.SETTINGS] = settings
    redact_access_log()
    app.on_response_prepare.append(response_headers)
    app.cleanup_ctx.extend([supervisor_ctx, redis_ctx, db_ctx, services_ctx, ari_ctx,
                            demo_ctx])
    health.setup(app)
    metrics.setup(app)
    telephony_gateway.setup(app)
    agent_gateway.setup(app)
    agent_views.setup(app)
    control_views.setup(app)
    transfer_views.setup(app)
    callback_views.setup(app)
    customer_views.setup(app)
    value_views.setup(app)
    wallboard_ws.setup(app)
    pages.setup(app)
    transcripts_plugin.setup(app)
    webhooks_plugin.setup(app)
    privacy_plugin.setup(app)
    quality_plugin.setup(app)
    audit_views.setup(app)
    report_views.setup(app)
    admin_plugin.setup(app)
    openapi.setup(app)
    return app
