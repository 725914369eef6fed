"""Wiring of the administration into the app: the live configuration (a `cleanup_ctx`
resource, after `services_ctx`) and the API routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from admin import agent_views, center_views, monitor_views
from admin.changes import Changes
from admin.http import PARTS, Parts
from admin.live import LiveConfig
from core import appkeys


async def admin_ctx(app: web.Application) -> AsyncIterator[None]:
    directory, calls = app[appkeys.DIRECTORY], app[appkeys.CALLS]
    live = LiveConfig(app[appkeys.SESSIONS], app[appkeys.SETTINGS], app[appkeys.KEYS],
                      app[appkeys.BUS], directory, app[appkeys.CODES], calls,
                      app[appkeys.WALLBOARD])
    await live.reload()
    changes = Changes(app[appkeys.SESSIONS], app[appkeys.REDIS], app[appkeys.KEYS],
                      directory.admin_steps, live)
    app[PARTS] = Parts(changes, directory, calls)
    supervisor = app[appkeys.SUPERVISOR]
    entry = supervisor.start("admin-config", live.run)
    yield
    await supervisor.stop(entry)


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(admin_ctx)
    agent_views.setup(app)
    center_views.setup(app)
    monitor_views.setup(app)
