"""`GET /ws/wallboard`: the supervisors' live stream of wallboard snapshots.

Browsers pass a one-time `?ticket=` (from `POST /api/v1/ws-ticket`), other
clients `Authorization: Bearer`. Only supervisors and admins are served, and only
while their token stands: signing out, revoking or expiry closes the socket (1008).
"""

from __future__ import annotations

import logging

from aiohttp import web

from agent_console.gateway import origin_allowed, ticket_principal
from core import appkeys, auth
from core.auth import AuthError
from core.models import Role
from core.web import bearer, json_error, watch_token
from core.ws import Connection

log = logging.getLogger(__name__)

VIEWERS = (Role.supervisor, Role.admin)


async def wallboard_ws(request: web.Request) -> web.StreamResponse:
    app = request.app
    try:
        principal = await ticket_principal(request)
        if principal is None:
            token = bearer(request)
            if token is None:
                raise AuthError("send a bearer token or a ?ticket=")
            async with app[appkeys.SESSIONS]() as session:
                principal = await auth.verify_token(session, app[appkeys.SETTINGS].secret_key,
                                                    token)
    except AuthError as e:
        return json_error(401, "unauthorized", str(e))
    if not principal.has(*VIEWERS):
        return json_error(403, "forbidden", "the wallboard is for supervisors and admins")
    if not origin_allowed(request):
        return json_error(403, "forbidden", "origin not allowed")

    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4096)
    await ws.prepare(request)
    wallboard = app[appkeys.WALLBOARD]
    conn = Connection(ws, f"wallboard {principal.name}")
    conn.start()
    watch = watch_token(app, principal, ws)
    try:
        conn.send(await wallboard.snapshot())
        wallboard.viewers.add(conn)
        async for _ in ws:
            pass  # nothing to say to us; reading keeps the heartbeat going
    finally:
        watch.cancel()
        wallboard.viewers.discard(conn)
        await conn.close()
    return ws


def setup(app: web.Application) -> None:
    app.router.add_get("/ws/wallboard", wallboard_ws)
