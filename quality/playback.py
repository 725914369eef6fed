"""Playing a recording in the browser: a ticket, then the audio with range requests.

`POST /api/v1/quality/calls/{interaction_id}/recording-ticket` (audited, action
`recording`) answers a ticket and the URL to give the `<audio>` element;
`GET /api/v1/quality/recordings/{interaction_id}?ticket=` serves the file with HTTP
range requests (206 with Content-Range, 416 for a range outside the file), which
aiohttp's FileResponse streams from the disk without loading it. A bearer token works
there too, for API clients (each such request is audited).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from core import appkeys, auth
from core.audit_views import viewed
from core.auth import Principal
from core.web import PRINCIPAL, authenticate, bearer
from quality.http import STAFF, actor, open_session, recording_roots, row_id
from quality.recordings import Tickets, Unauthorized, locate, visible_call

TICKETS = web.AppKey("quality_tickets", Tickets)


async def ticket(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    interaction_id = row_id(request, "interaction_id")
    async with open_session(request) as session:
        record, _ = await visible_call(session, actor(request, principal), interaction_id)
    locate(record.recording_path, recording_roots(request))
    tickets = request.app[TICKETS]
    issued = await tickets.issue(bearer(request) or "", interaction_id)
    await viewed(request, [("recording", str(interaction_id))], action="recording",
                 call_id=record.call_id)
    return web.json_response({
        "ticket": issued, "expires_in": tickets.ttl_s,
        "url": f"/api/v1/quality/recordings/{interaction_id}?ticket={issued}"}, status=201)


async def audio(request: web.Request) -> web.StreamResponse:
    interaction_id = row_id(request, "interaction_id")
    raw = request.query.get("ticket")
    by_ticket = raw is not None and not bearer(request)
    if by_ticket:
        found = await request.app[TICKETS].redeem(raw or "", interaction_id)
        principal = await _principal(request, found.token)
        if not principal.has(*STAFF):
            raise auth.Forbidden("this role hears no recordings")
    else:
        principal = await authenticate(request, *STAFF)
    async with open_session(request) as session:
        record, _ = await visible_call(session, actor(request, principal), interaction_id)
    path = locate(record.recording_path, recording_roots(request))
    if not by_ticket:  # a ticket's issue was audited; its range requests are not again
        await viewed(request, [("recording", str(interaction_id))], action="recording",
                     call_id=record.call_id)
    return web.FileResponse(path, headers={"X-Content-Type-Options": "nosniff"})


async def _principal(request: web.Request, token: str) -> Principal:
    """The signed-in user the ticket stands for, if still signed in."""
    async with open_session(request) as session:
        try:
            principal = await auth.verify_token(
                session, request.app[appkeys.SETTINGS].secret_key, token)
        except auth.AuthError as e:
            raise Unauthorized("the ticket's sign-in has ended: sign in again") from e
    request[PRINCIPAL] = principal
    return principal


async def tickets_ctx(app: web.Application) -> AsyncIterator[None]:
    """After `services_ctx`, which has the app's Redis and keys."""
    app[TICKETS] = Tickets(app[appkeys.REDIS], app[appkeys.KEYS],
                           app[appkeys.SETTINGS].recording_ticket_ttl_s)
    yield


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(tickets_ctx)
    app.router.add_post("/api/v1/quality/calls/{interaction_id}/recording-ticket", ticket)
    app.router.add_get("/api/v1/quality/recordings/{interaction_id}", audio)
