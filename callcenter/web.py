"""HTTP edge helpers: who is calling, and domain errors as HTTP answers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from callcenter import appkeys, auth
from callcenter.auth import AuthError, Forbidden, Principal
from callcenter.models import Role

log = logging.getLogger(__name__)

PRINCIPAL = web.RequestKey("principal", Principal)

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
    token = bearer(request)
    if token is None:
        raise AuthError("sign in first")
    async with request.app[appkeys.SESSIONS]() as session:
        principal = await auth.verify_token(session, request.app[appkeys.SETTINGS].secret_key,
                                            token)
    if roles and not principal.has(*roles):
        raise Forbidden(f"this needs one of the roles {', '.join(r.value for r in roles)}")
    request[PRINCIPAL] = principal
    return principal


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
