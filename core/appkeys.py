"""Typed application keys: every long-lived resource the app holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.bus import Bus
from core.keys import Keys
from core.settings import Settings
from core.supervise import Supervisor
from core.timers import Timers
from core.writer import RecordWriter

if TYPE_CHECKING:
    pass

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
# Reads that may run beside writes (a separate pool on SQLite; the same one elsewhere).
READER = web.AppKey("reader", async_sessionmaker[AsyncSession])
# Synchronous query functions run in one step (a worker thread on SQLite).
READ = web.AppKey("read", "Read[Any]")
WRITER = web.AppKey("writer", RecordWriter)
TOKEN_WATCH = web.AppKey("token_watch", "TokenWatch")
WS_SLOTS = web.AppKey("ws_slots", "ConnectionSlots")
KEYS = web.AppKey("keys", Keys)
BUS = web.AppKey("bus", Bus)
TIMERS = web.AppKey("timers", Timers)
ROUTER = web.AppKey("router", "Router")
CALLS = web.AppKey("calls", "CallService")
DIRECTORY = web.AppKey("directory", "AgentDirectory")
WALLBOARD = web.AppKey("wallboard", "Wallboard")
ARI = web.AppKey("ari", "AriAdapter")
COMPLAINTS = web.AppKey("complaints", "ComplaintService")
TRANSCRIPTION = web.AppKey("transcription", "JobQueue")
METRICS = web.AppKey("metrics", "Metrics")
RECOVERY = web.AppKey("recovery", "Recovery")
PRESENCE = web.AppKey("presence", "Presence")
SIGN_IN = web.AppKey("sign_in", "SignIn")
SUPERVISOR = web.AppKey("supervisor", Supervisor)
WEBHOOKS = web.AppKey("webhooks", "Webhooks")
