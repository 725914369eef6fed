"""The one authentication prologue of every websocket (`/ws/telephony`, `/ws/agent`,
`/ws/wallboard`), run before the upgrade so a refusal is a plain HTTP answer.

In order: who is calling (a one-time browser `?ticket=` where the gate takes them, else
`Authorization: Bearer`), within `ws_auth_timeout_s`; whether that role may use this
socket; whether a browser's `Origin` is the service's own; and a connection slot for the
token, at most `ws_connections_per_token` open at once on this node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from core import appkeys, auth
from core.auth import AuthError, Principal
from core.web import bearer, json_error

log = logging.getLogger(__name__)


class Refused(Exception):
    """The connection is not upgraded; `response()` is what the client gets instead."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        return json_error(self.status, self.code, self.message)


@dataclass(frozen=True)
class Gate:
    """Who may open one kind of websocket."""

    allows: Callable[[Principal], bool]
    refusal: str  # the 403 message for a role that may not
    # A browser socket: takes a one-time `?ticket=` (browsers cannot set headers) and
    # checks Origin. The telephony socket takes only a bearer header, which browsers
    # cannot send, so it needs neither.
    browser: bool = True


class ConnectionSlots:
    """Open websockets per token on this node, so one token cannot hold without end."""

    def __init__(self, per_token: int) -> None:
        self.per_token = per_token
        self._open: dict[str, int] = {}

    def take(self, token_id: str) -> bool:
        held = self._open.get(token_id, 0)
        if held >= self.per_token:
            return False
        self._open[token_id] = held + 1
        return True

    def give_back(self, token_id: str) -> None:
        held = self._open.get(token_id, 0) - 1
        if held > 0:
            self._open[token_id] = held
        else:
            self._open.pop(token_id, None)


async def admit(request: web.Request, gate: Gate) -> Principal:
    """The caller, with a connection slot taken; `release` it when the socket ends.

    Raises `Refused` (401, 403, 429 or 503) and then holds no slot.
    """
    app = request.app
    timeout = app[appkeys.SETTINGS].ws_auth_timeout_s
    try:
        async with asyncio.timeout(timeout):
            principal = await _principal(request, gate)
    except AuthError as e:
        raise Refused(401, "unauthorized", str(e)) from e
    except TimeoutError as e:
        log.warning("websocket sign-in took over %.1f s; refused", timeout)
        raise Refused(503, "unavailable", "sign-in is slow right now; try again") from e
    if not gate.allows(principal):
        raise Refused(403, "forbidden", gate.refusal)
    if gate.browser and not origin_allowed(request):
        raise Refused(403, "forbidden", "origin not allowed")
    if not app[appkeys.WS_SLOTS].take(principal.token_id):
        raise Refused(429, "rate_limited", "too many open connections for this token")
    return principal


def release(app: web.Application, principal: Principal) -> None:
    app[appkeys.WS_SLOTS].give_back(principal.token_id)


Connected = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


async def serve(request: web.Request, gate: Gate, connected: Connected) -> web.StreamResponse:
    """The prologue every websocket shares: admit (or refuse with an HTTP answer), run
    `connected`, give the token's connection slot back however it ends."""
    try:
        principal = await admit(request, gate)
    except Refused as e:
        return e.response()
    try:
        return await connected(request, principal)
    finally:
        release(request.app, principal)


async def _principal(request: web.Request, gate: Gate) -> Principal:
    app = request.app
    token = await _redeem_ticket(request) if gate.browser else None
    token = token or bearer(request)
    if token is None:
        raise AuthError("send a bearer token or a ?ticket=" if gate.browser
                        else "send Authorization: Bearer <token>")
    async with app[appkeys.SESSIONS]() as session:
        return await auth.verify_token(session, app[appkeys.SETTINGS].secret_key, token)


async def _redeem_ticket(request: web.Request) -> str | None:
    ticket = request.query.get("ticket")
    if not ticket:
        return None
    redis, keys = request.app[appkeys.REDIS], request.app[appkeys.KEYS]
    token = await redis.getdel(keys.ws_ticket(ticket))
    if token is None:
        raise AuthError("the ticket is unknown, used or expired")
    return str(token)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def origin_allowed(request: web.Request) -> bool:
    """Browsers send Origin; only the service's own pages (or configured ones) may connect.

    "Own" is `public_url` when it is set; unset, it is the address the browser reached
    this node's socket on (never the request's Host header, which the client writes),
    and `localhost` for a loopback address.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser
    normal = _normal(origin)
    return bool(normal) and normal in own_origins(request)


def own_origins(request: web.Request) -> frozenset[str]:
    settings = request.app[appkeys.SETTINGS]
    origins = {_normal(o) for o in settings.allowed_origins} - {""}
    if settings.public_url:
        origins.add(_normal(settings.public_url))
        return frozenset(origins - {""})
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = str(sockname[0]), int(sockname[1])
        scheme = "https" if request.secure else "http"
        hosts = LOOPBACK if host in LOOPBACK else (host,)
        origins.update(_normal(f"{scheme}://{_bracket(h)}:{port}") for h in hosts)
    return frozenset(origins)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _normal(url: str) -> str:
    """`scheme://host[:port]`, lower case, the default port left out."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        return ""
    if scheme not in ("http", "https") or not host:
        return ""  # `null` (a sandboxed page, a file) and garbage are no one's origin
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = _bracket(host) if port in (None, default) else f"{_bracket(host)}:{port}"
    return f"{scheme}://{netloc}"
