"""The audit log at the HTTP and websocket edges.

`viewed` writes the entries for a REST view before its data is returned, so no
customer, transcript or complaint is shown without a record. Screen pops are
recorded right after they are handed to the agent's socket, with the next batch of the
call records (core/writer.py `write_later`, at most half a second later): a call is
never held up by the audit log. `GET /api/v1/audit` lets admins read the log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from core import appkeys, audit
from core.auth import Principal
from core.bus import Relay
from core.models import Role
from core.web import PRINCIPAL, Invalid, authenticate, client_address
from core.writer import Insert
from core.ws import Connection

log = logging.getLogger(__name__)

PAGE_DEFAULT = 100
PAGE_MAX = 1000


def viewer(request: web.Request, principal: Principal | None = None) -> audit.Viewer:
    principal = principal or request[PRINCIPAL]
    return audit.Viewer(principal.name, principal.role.value, client_address(request))


async def viewed(request: web.Request, objects: Iterable[tuple[str, str]],
                 action: str = "view", **detail: Any) -> None:
    """Record that the signed-in caller is being shown `objects` (type, id)."""
    objects = list(objects)
    if not objects:
        return
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        audit.record(session, viewer(request), action, objects, detail)


class ScreenPopAudit(Relay):
    """Wraps a websocket's connection: every screen pop with a customer sent on it is
    recorded."""

    def __init__(self, request: web.Request, principal: Principal, conn: Connection) -> None:
        self._writer = request.app[appkeys.WRITER]
        self._viewer = viewer(request, principal)
        self._conn = conn
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, message: dict[str, Any]) -> None:
        self._conn.send(message)
        self._audit(message)

    def relay(self, message: dict[str, Any], text: str) -> None:
        self._conn.relay(message, text)
        self._audit(message)

    def _audit(self, message: dict[str, Any]) -> None:
        customer = message.get("customer") if message.get("type") == "screen_pop" else None
        if isinstance(customer, dict) and customer.get("id"):
            task = asyncio.create_task(self._record(str(customer["id"]),
                                                    str(message.get("call_id"))))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _record(self, customer_id: str, call_id: str) -> None:
        try:
            # Through the group writer, with the next batch: a screen pop is on every
            # call, in the call's rush, and nothing waits for its audit row.
            await self._writer.write_later(Insert("audit_log", row) for row in audit.rows(
                self._viewer, "screen_pop", [("customer", customer_id)], {"call_id": call_id}))
        except Exception:
            log.exception("could not record the screen pop of %s in the audit log", call_id)

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


async def list_audit(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    filters, limit, before_id = _parse(request.query)
    async with request.app[appkeys.SESSIONS]() as session:
        entries = await audit.page(session, filters, limit=limit, before_id=before_id)
    more = len(entries) == limit
    return web.json_response({"entries": [audit.entry_dict(e) for e in entries],
                              "next_before_id": entries[-1].id if entries and more else None})


def _parse(query: Any) -> tuple[audit.Filters, int, int | None]:
    values = {name: query[name] for name in audit.FILTERS if query.get(name)}
    if any("\x00" in value for value in values.values()):
        raise Invalid("filters must not contain NUL characters")
    for name in ("since", "until"):
        if query.get(name):
            values[name] = parse_time(query[name], name)
    limit = _int(query.get("limit"), "limit", PAGE_DEFAULT)
    if not 1 <= limit <= PAGE_MAX:
        raise Invalid(f"limit must be between 1 and {PAGE_MAX}")
    before_id = _int(query.get("before_id"), "before_id", None)
    return audit.Filters(**values), limit, before_id


def _int(raw: str | None, name: str, default: int | None) -> Any:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise Invalid(f"{name} must be a whole number") from e
    if not 0 <= value < 2**63:  # a database integer
        raise Invalid(f"{name} is out of range")
    return value


def parse_time(raw: str, name: str) -> dt.datetime:
    try:
        return audit.parse_time(raw)
    except ValueError as e:
        raise Invalid(f"{name} must be an ISO 8601 date or time") from e


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/audit", list_audit)
