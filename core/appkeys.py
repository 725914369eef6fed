"""Typed application keys: every long-lived resource the app holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.bus import Bus
from core.codes import Codes
from core.keys import Keys
from core.settings import Settings
from core.supervise import Supervisor
from core.timers import Timers
from core.writer import RecordWriter

if TYPE_CHECKING:
    # Kernel modules that import this one: named for the checker only, to avoid a cycle.
    from core.db import Read
    from core.metrics import Metrics
    from core.signin import SignIn
    from core.web import TokenWatch
    from core.ws_auth import ConnectionSlots

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
# Reads that may run beside writes (a separate pool on SQLite; the same one elsewhere).
READER = web.AppKey("reader", async_sessionmaker[AsyncSession])
# Synchronous query functions run in one step (a worker thread on SQLite).
READ: web.AppKey[Read[Any]] = web.AppKey("read")
WRITER = web.AppKey("writer", RecordWriter)
TOKEN_WATCH: web.AppKey[TokenWatch] = web.AppKey("token_watch")
WS_SLOTS: web.AppKey[ConnectionSlots] = web.AppKey("ws_slots")
KEYS = web.AppKey("keys", Keys)
BUS = web.AppKey("bus", Bus)
TIMERS = web.AppKey("timers", Timers)
# The kernel may not import feature packages (tests/test_layers.py), so it cannot
# name these values' types: they are Any here (the type is named in a comment).
ROUTER: web.AppKey[Any] = web.AppKey("router")  # Router
CALLS: web.AppKey[Any] = web.AppKey("calls")  # CallService
DIRECTORY: web.AppKey[Any] = web.AppKey("directory")  # AgentDirectory
WALLBOARD: web.AppKey[Any] = web.AppKey("wallboard")  # Wallboard
ARI: web.AppKey[Any] = web.AppKey("ari")  # AriAdapter
COMPLAINTS: web.AppKey[Any] = web.AppKey("complaints")  # ComplaintService
TRANSCRIPTION: web.AppKey[Any] = web.AppKey("transcription")  # JobQueue
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
RECOVERY: web.AppKey[Any] = web.AppKey("recovery")  # Recovery
PRESENCE: web.AppKey[Any] = web.AppKey("presence")  # Presence
SIGN_IN: web.AppKey[SignIn] = web.AppKey("sign_in")
SUPERVISOR = web.AppKey("supervisor", Supervisor)
WEBHOOKS: web.AppKey[Any] = web.AppKey("webhooks")  # Webhooks
# The not-ready reasons and dispositions agents pick now (admin/ replaces them live).
CODES = web.AppKey("codes", Codes)
# Commands to the PBX and their awaited outcomes (send any command type through it).
COMMANDS: web.AppKey[Any] = web.AppKey("commands")  # cti.commands.PbxCommands
CONTROL: web.AppKey[Any] = web.AppKey("control")  # cti.control.ControlService
CALLBACKS: web.AppKey[Any] = web.AppKey("callbacks")  # cti.callback_desk.CallbackDesk
CONTROL_ONCE: web.AppKey[Any] = web.AppKey("control_once")  # cti.once.Once
# Supervisors' live monitoring of calls (listen, whisper, barge).
MONITOR: web.AppKey[Any] = web.AppKey("monitor")  # cti.monitor.MonitorService
