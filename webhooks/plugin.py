"""Wiring of webhooks into the app: one `cleanup_ctx` resource and the API routes.

Every node runs the loop: fan-out is shared through a consumer group and sending
through leases, so any number of nodes deliver each event to each subscription once
(at least once if a node dies mid-send). The nodes' loops speak on one bus channel
(a subscription changed; a node's senders are all busy) instead of polling.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from core import appkeys
from core.settings import Settings
from webhooks import views
from webhooks.delivery import Policy, Sender
from webhooks.fanout import FanOut
from webhooks.service import Webhooks


def policy(settings: Settings) -> Policy:
    return Policy(timeout_s=settings.webhook_timeout_s,
                  retry_for=dt.timedelta(hours=settings.webhook_retry_hours),
                  backoff_s=settings.webhook_backoff_s,
                  backoff_max_s=settings.webhook_backoff_max_s,
                  concurrency=settings.webhook_concurrency)


def own(settings: Settings) -> list[tuple[str, int]]:
    found = [(settings.host, settings.port)]
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        found.append((parts.hostname or "", parts.port or
                      (443 if parts.scheme == "https" else 80)))
    return found


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """After `services_ctx`: call events reach the webhooks as a call-service observer."""
    settings, redis, keys = app[appkeys.SETTINGS], app[appkeys.REDIS], app[appkeys.KEYS]
    async with aiohttp.ClientSession() as http:
        calls = app[appkeys.CALLS]
        fanout = FanOut(redis, keys.webhook_events, app[appkeys.SESSIONS], settings.node_id)
        sender = Sender(app[appkeys.SESSIONS], http, policy(settings), own(settings),
                        clock=lambda: calls.clock())
        bus = app[appkeys.BUS]

        async def announce(message: dict[str, Any]) -> None:
            await bus.publish(keys.webhooks_channel, message)

        async def resubscribed() -> None:  # words may have been lost meanwhile
            hooks.forget_subscriptions()

        hooks = Webhooks(redis, keys.webhook_events, fanout, sender, announce=announce)
        calls.observers.append(hooks.observe)
        app[appkeys.WEBHOOKS] = hooks
        await bus.subscribe(keys.webhooks_channel, hooks.heard)
        bus.on_resubscribed(resubscribed)
        supervisor = app[appkeys.SUPERVISOR]
        entry = supervisor.start("webhooks", hooks.run, required=False)
        yield
        await supervisor.stop(entry)
        bus.forget(resubscribed)
        await bus.unsubscribe(keys.webhooks_channel, hooks.heard)
        await hooks.close()


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(webhooks_ctx)
    views.setup(app)
