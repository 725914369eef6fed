"""Wiring of privacy into the app: the erasure/export routes and the retention sweep."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from core import appkeys
from core.timers import Timers
from privacy import views
from privacy.retention import Policy, Retention


async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
    """After `services_ctx`: every node polls; the shared timer lets one sweep a day."""
    settings, keys, redis = app[appkeys.SETTINGS], app[appkeys.KEYS], app[appkeys.REDIS]
    calls = app[appkeys.CALLS]
    retention = Retention(app[appkeys.SESSIONS], Timers(redis, f"{keys.timers}:retention"),
                          Policy.of(settings), settings.recordings_dir,
                          clock=lambda: calls.clock())
    supervisor = app[appkeys.SUPERVISOR]
    entry = supervisor.start("retention", retention.run, required=False)
    yield
    await supervisor.stop(entry)


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(retention_ctx)
    views.setup(app)
