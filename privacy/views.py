"""Erasure and access over REST (admins)."""

from __future__ import annotations

from aiohttp import web

from core import appkeys
from core.audit_views import viewed, viewer
from core.models import Role, utcnow
from core.web import authenticate
from privacy import export
from privacy.erasure import Eraser


def eraser(app: web.Application) -> Eraser:
    return Eraser(app[appkeys.SESSIONS], app[appkeys.REDIS], app[appkeys.KEYS],
                  app[appkeys.SETTINGS].recordings_dir)


async def erase(request: web.Request) -> web.Response:
    principal = await authenticate(request, Role.admin)
    result = await eraser(request.app).erase(request.match_info["customer_id"],
                                             viewer(request, principal))
    return web.json_response({"customer_id": result.customer_id, "erased": result.summary()})


async def export_customer(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    customer_id = request.match_info["customer_id"]
    async with request.app[appkeys.SESSIONS]() as session:
        document = await export.export(session, customer_id, utcnow())
    await viewed(request, [("customer", customer_id)], "export")
    return web.json_response(document, headers={
        "Content-Disposition": 'attachment; filename="customer-export.json"'})


def setup(app: web.Application) -> None:
    app.router.add_delete("/api/v1/customers/{customer_id}", erase)
    app.router.add_get("/api/v1/customers/{customer_id}/export", export_customer)
