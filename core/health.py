"""`GET /healthz`: is this node able to serve: Redis and the database reachable, and
no required background task down (failed and waiting for its restart)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from core import appkeys, db


async def healthz(request: web.Request) -> web.Response:
    app = request.app
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(app[appkeys.REDIS].ping(), timeout=2)
        checks["redis"] = "ok"
    except Exception as e:
        checks["redis"] = f"error: {type(e).__name__}"
    try:
        await asyncio.wait_for(db.check(app[appkeys.ENGINE]), timeout=3)
        checks["database"] = "ok"
    except Exception as e:
        checks["database"] = f"error: {type(e).__name__}"
    supervisor = app.get(appkeys.SUPERVISOR)
    down = supervisor.down() if supervisor is not None else []
    checks["tasks"] = "ok" if not down else f"down: {', '.join(down)}"
    healthy = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ok" if healthy else "unhealthy", "checks": checks,
                              "tasks": supervisor.report() if supervisor is not None else {},
                              "down": down, "node": app[appkeys.SETTINGS].node_id},
                             status=200 if healthy else 503)


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
