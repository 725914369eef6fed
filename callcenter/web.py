"""HTTP edge helpers: who is calling, and domain errors as HTTP answers."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import WSCloseCode, hdrs, web

from callcenter import appkeys, auth
from callcenter.auth import AuthError, Forbidden, Principal
from callcenter.models import ApiToken, Role, utcnow

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

PRINCIPAL = web.RequestKey("principal", Principal)
# Served to anyone: sign-in, health, static files, and the page shells (the same static
# HTML for everyone, holding no data: the API calls they make carry the token).
PUBLIC_ROUTES = frozenset({"/api/v1/login", "/login", "/healthz", "/static/{path}",
                           "/", "/console", "/wallboard", "/forbidden"})
# Websockets that take a one-time `?ticket=` instead (browsers cannot set headers);
# their handlers redeem it.
TICKET_ROUTES = frozenset({"/ws/agent", "/ws/wallboard"})

# Domain errors by code -> HTTP status.
STATUS = {"unauthorized": 401, "forbidden": 403, "not_found": 404, "invalid": 400,
          "conflict": 409, "rate_limited": 429, "unknown_call": 404,
          "illegal_transition": 409, "wrong_agent": 409, "agent_busy": 409}


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
    """The access log prints each request line, and a websocket's `?ticket=` is a
    credential: it is written as `[redacted]`, in the message and in its extras."""

    _CREDENTIAL = re.compile(r"([?&](?:ticket|token)=)[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in vars(record).items():
            if isinstance(value, str) and "=" in value:
                setattr(record, name, self._CREDENTIAL.sub(r"\1[redacted]", value))
        if isinstance(record.args, tuple):
            record.args = tuple(self._CREDENTIAL.sub(r"\1[redacted]", a)
                                if isinstance(a, str) else a for a in record.args)
        return True


_REDACT = RedactCredentials()


def redact_access_log() -> None:
    """Idempotent: a filter is added to a logger once however often this runs."""
    logging.getLogger("aiohttp.access").addFilter(_REDACT)


# How often an open websocket's token is checked again: signing out, `token revoke`
# and expiry end open connections too, within this many seconds.
TOKEN_RECHECK_S = 30.0


def watch_token(app: web.Application, principal: Principal,
                ws: web.WebSocketResponse) -> asyncio.Task[None]:
    """A task closing `ws` (1008, policy violation) once its token is revoked or expired;
    cancel it when the connection ends."""
    return asyncio.create_task(_watch_token(app, principal, ws),
                               name=f"token-watch {principal.name}")


async def _watch_token(app: web.Application, principal: Principal,
                       ws: web.WebSocketResponse) -> None:
    while not ws.closed:
        await asyncio.sleep(TOKEN_RECHECK_S)
        try:
            async with app[appkeys.SESSIONS]() as session:
                token = await session.get(ApiToken, principal.token_id)
        except Exception as e:  # a database outage ends no connection
            log.debug("could not check the token of %s: %s", principal.name, e)
            continue
        if token is None or token.revoked_at is not None or (
                token.expires_at is not None and token.expires_at <= utcnow()):
            log.info("closing the connection of %s: its token was revoked or expired",
                     principal.name)
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"token revoked")
            return


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
