"""`GET /ws/wallboard`: the supervisors' live stream of wallboard snapshots.

Browsers pass a one-time `?ticket=` (from `POST /api/v1/ws-ticket`), other
clients `Authorization: Bearer`. Only supervisors and admins are served, and only
while their token stands: signing out, revoking or expiry closes the socket (1008).
"""

from __future__ import annotations

import logging

from aiohttp import web

from core import appkeys, ws_auth
from core.auth import Principal
from core.models import Role
from core.web import watch_token
from core.ws import Connection

log = logging.getLogger(__name__)

VIEWERS = (Role.supervisor, Role.admin)


GATE = ws_auth.Gate(lambda p: p.has(*VIEWERS), "the wallboard is for supervisors and admins")


async def wallboard_ws(request: web.Request) -> web.StreamResponse:
    return await ws_auth.serve(request, GATE, _connected)


async def _connected(request: web.Request, principal: Principal) -> web.WebSocketResponse:
    app = request.app
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4096)
    await ws.prepare(request)
    wallboard = app[appkeys.WALLBOARD]
    conn = Connection(ws, f"wallboard {principal.name}")
    conn.start()
    watch = watch_token(app, principal, ws)
    try:
        conn.send(await wallboard.snapshot())
        await wallboard.watch(conn)
        async for _ in ws:
            pass  # nothing to say to us; reading keeps the heartbeat going
    finally:
        watch.cancel()
        await wallboard.unwatch(conn)
        await conn.close()
    return ws


def setup(app: web.Application) -> None:
    app.router.add_get("/ws/wallboard", wallboard_ws)
