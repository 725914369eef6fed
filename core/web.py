"""HTTP edge helpers: who is calling, and domain errors as HTTP answers."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import WSCloseCode, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from sqlalchemy import any_, bindparam, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from core import appkeys, auth
from core.auth import AuthError, Forbidden, Principal
from core.models import ApiToken, Role, utcnow

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

PRINCIPAL = web.RequestKey("principal", Principal)
# Served to anyone: sign-in, health, static files, and the page shells (the same static
# HTML for everyone, holding no data: the API calls they make carry the token).
PUBLIC_ROUTES = frozenset({"/api/v1/login", "/login", "/healthz", "/static/{path}",
                           "/", "/console", "/wallboard", "/reports", "/quality", "/admin",
                           "/webhooks", "/forbidden"})
# Websockets that take a one-time `?ticket=` instead (browsers cannot set headers), and
# a recording's audio, which takes a short-lived one (its range requests reuse it);
# their handlers redeem it.
TICKET_ROUTES = frozenset({"/ws/agent", "/ws/wallboard",
                           "/api/v1/quality/recordings/{interaction_id}"})

# Domain errors by code -> HTTP status.
STATUS = {"unauthorized": 401, "forbidden": 403, "not_found": 404, "invalid": 400,
          "conflict": 409, "rate_limited": 429, "unknown_call": 404,
          "illegal_transition": 409, "wrong_agent": 409, "agent_busy": 409,
          # administration (admin/, docs/admin.md)
          "unknown_skill": 400,
          "queue_busy": 409, "last_admin": 409, "username_taken": 409,
          "queue_exists": 409, "skill_in_use": 409, "not_your_team": 403, "busy": 503,
          # call control (cti/control.py): refused before sending, or what the PBX did
          "not_your_call": 403, "command_pending": 409, "call_ended": 409,
          "control_failed": 502, "not_supported": 501, "pbx_unavailable": 503,
          "control_timeout": 504, "unknown_queue": 400, "unknown_agent": 400,
          "agent_unavailable": 409,
          # callbacks (cti/callbacks.py, cti/callback_desk.py)
          "unknown_callback": 404, "callback_finished": 409, "callback_dialling": 409,
          "invalid_number": 400, "invalid_not_before": 400, "no_integration": 400,
          "no_such_customer": 404,
          # PCI pause of a call's recording (cti/recording_pauses.py)
          "recording_not_running": 409, "recording_not_paused": 409,
          # live monitoring (cti/monitor.py)
          "monitored_by_other": 409, "not_monitoring": 409, "monitor_pending": 409,
          "no_extension": 400}


class NotFound(Exception):
    code = "not_found"


class Invalid(Exception):
    code = "invalid"


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token else None


async def authenticate(request: web.Request, *roles: Role) -> Principal:
    principal = request.get(PRINCIPAL)
    if principal is None:
        token = bearer(request)
        if token is None:
            raise AuthError("sign in first")
        async with request.app[appkeys.SESSIONS]() as session:
            principal = await auth.verify_token(
                session, request.app[appkeys.SETTINGS].secret_key, token)
        request[PRINCIPAL] = principal
    if roles and not principal.has(*roles):
        raise Forbidden(f"this needs one of the roles {', '.join(r.value for r in roles)}")
    return principal


@web.middleware
async def signed_in(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                    ) -> web.StreamResponse:
    """Deny by default: a route not listed as public needs a valid token, whatever its
    handler checks (which is the role), so a new route is never open by accident."""
    resource = request.match_info.route.resource
    pattern = resource.canonical if resource is not None else None
    ticket = pattern in TICKET_ROUTES and "ticket" in request.query and not bearer(request)
    if pattern not in PUBLIC_ROUTES and not ticket:
        await authenticate(request)
    return await handler(request)


def client_address(request: web.Request) -> str | None:
    """Where a request comes from, for the audit log and the per-address sign-in limit."""
    return forwarded_client(request.remote, request.headers.getall(hdrs.X_FORWARDED_FOR, []),
                            request.app[appkeys.SETTINGS].trusted_proxies)


def forwarded_client(peer: str | None, forwarded_for: Iterable[str],
                     trusted: Iterable[Network]) -> str | None:
    """The TCP peer, or, when the peer is a trusted proxy, the rightmost address of
    X-Forwarded-For that is not a trusted proxy.

    Each proxy appends the address it was connected from, so only the entries right of
    the first untrusted one are vouched for; anything left of it the client may have
    written. A malformed entry ends the walk at the last address a proxy vouched for.
    """
    trusted = tuple(trusted)
    chain = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    address = peer
    while _is_trusted(address, trusted) and chain:
        hop = chain.pop()
        ip = _parse(hop)
        if ip is None:
            break
        address = str(ip)
    return address


def _is_trusted(address: str | None, trusted: tuple[Network, ...]) -> bool:
    ip = _parse(address)
    return ip is not None and any(ip in network for network in trusted)


def _parse(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    # A dual-stack socket shows an IPv4 peer as ::ffff:a.b.c.d.
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return mapped or ip


class RedactCredentials(logging.Filter):
    """The access log prints each request line. A websocket's `?ticket=` is a credential,
    and a search's `?q=` or a phone number in a URL is personal data: each is written as
    `[redacted]`, in the message and in its extras."""

    _CREDENTIAL = re.compile(r"([?&](?:ticket|token|q|phone|ani|email)=)[^&\s\"]*")
    _NUMBER = re.compile(r"(?<=[/=])(?:%2B|\+)?\d{6,}")  # a phone number as a path or value

    def _redact(self, text: str) -> str:
        return self._NUMBER.sub("[redacted]", self._CREDENTIAL.sub(r"\1[redacted]", text))

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in vars(record).items():
            if isinstance(value, str) and ("=" in value or "/" in value):
                setattr(record, name, self._redact(value))
        if isinstance(record.args, tuple):
            record.args = tuple(self._redact(a) if isinstance(a, str) else a
                                for a in record.args)
        return True


class MalformedRequests(logging.Filter):
    """A request aiohttp cannot parse (a bare CR in a header, a bad request line) is the
    client's error: one INFO line with the reason, not an ERROR with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= (error.code or 0) < 500:
            said = record.getMessage()
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "%s: %s"
            record.args = (said, f"{type(error).__name__}: {error.message}"[:200])
            record.exc_info, record.exc_text = None, None
        return True


_REDACT = RedactCredentials()
_MALFORMED = MalformedRequests()


def redact_access_log() -> None:
    """Idempotent: a filter is added to a logger once however often this runs."""
    logging.getLogger("aiohttp.access").addFilter(_REDACT)
    logging.getLogger("aiohttp.server").addFilter(_MALFORMED)


SERVER = "callcenter"  # the Server header: no product versions for a scanner to match


async def response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: API answers carry personal data, so no cache may keep
    them, and the Server header names no versions."""
    response.headers[hdrs.SERVER] = SERVER
    if request.path.startswith("/api/"):
        response.headers[hdrs.CACHE_CONTROL] = "no-store"


# How often an open websocket's token is checked again: signing out, `token revoke`
# and expiry end open connections too, within this many seconds.
TOKEN_RECHECK_S = 30.0


def watch_token(app: web.Application, principal: Principal,
                ws: web.WebSocketResponse) -> Watched:
    """Close `ws` (1008, policy violation) once its token is revoked or expired; call
    `cancel()` on the result when the connection ends."""
    return app[appkeys.TOKEN_WATCH].watch(principal.token_id, ws)


class Watched:
    def __init__(self, sockets: set[web.WebSocketResponse], ws: web.WebSocketResponse) -> None:
        self._sockets, self._ws = sockets, ws

    def cancel(self) -> None:
        self._sockets.discard(self._ws)


class TokenWatch:
    """Every open websocket's token, checked again every TOKEN_RECHECK_S.

    One query per sweep for all the sockets a node holds: a thousand consoles cost
    the database one indexed lookup, not a thousand.
    """

    def __init__(self, maker: Callable[[], Any]) -> None:
        self._maker = maker
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}

    def watch(self, token_id: str, ws: web.WebSocketResponse) -> Watched:
        sockets = self._sockets.setdefault(token_id, set())
        sockets.add(ws)
        return Watched(sockets, ws)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        # redis-py and the database drivers can swallow a cancellation: look each round.
        while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
            await asyncio.sleep(min(TOKEN_RECHECK_S, 1.0))
            if loop.time() - last < TOKEN_RECHECK_S:
                continue
            last = loop.time()
            try:
                await self.sweep()
            except (DBAPIError, OSError, TimeoutError) as e:  # an outage ends no connection
                log.warning("could not check the open connections' tokens: %s", e)
            # Anything else is a fault: it reaches the supervisor, logged with its traceback.

    async def sweep(self) -> None:
        for token_id in [t for t, sockets in self._sockets.items() if not sockets]:
            del self._sockets[token_id]
        ids = list(self._sockets)
        valid: set[str] = set()
        async with self._maker() as session:
            statement = _valid_tokens(session.get_bind().dialect.name)
            for start in range(0, len(ids), 500):
                valid.update(await session.scalars(
                    statement, {"ids": ids[start:start + 500], "now": utcnow()}))
        for token_id in set(ids) - valid:
            sockets = self._sockets.pop(token_id, set())
            if sockets:
                log.info("closing %d connection(s): their token was revoked or expired",
                         len(sockets))
            for ws in list(sockets):
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"token revoked")


@functools.cache
def _valid_tokens(dialect: str) -> Any:
    """The tokens of `:ids` neither revoked nor expired at `:now`. On PostgreSQL the ids
    are one array: one SQL text (one prepared statement per pooled connection) whatever
    their number, where an `IN` list is a new text per count of connected tokens."""
    if dialect == "postgresql":
        listed = ApiToken.id == any_(bindparam("ids", type_=postgresql.ARRAY(ApiToken.id.type)))
    else:
        listed = ApiToken.id.in_(bindparam("ids", expanding=True))
    return select(ApiToken.id).where(
        listed, ApiToken.revoked_at.is_(None),
        or_(ApiToken.expires_at.is_(None),
            ApiToken.expires_at > bindparam("now", type_=ApiToken.expires_at.type)))


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def errors(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                 ) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as e:
        code = getattr(e, "code", None)
        if not isinstance(code, str) or code not in STATUS:
            raise
        return json_error(STATUS[code], code, str(e))
