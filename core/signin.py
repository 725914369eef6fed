"""Sign-in: a limit per user and per address that holds under a concurrent burst, and the
password checked off the event loop with no database session open.

Each attempt is reserved in Redis before its password is checked, in one script for
the user and the address together: failures in the window plus attempts still being
checked may not reach the limit. When the check ends the reservation becomes a failure
(wrong password or unknown user), or is dropped (right password: the user's failures
are cleared too; or no check was made).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import appkeys, auth
from core.auth import AuthError, PasswordVerifier
from core.keys import Keys
from core.models import Agent, Role
from core.settings import Settings

# A reservation never settled (its node died while checking) counts like a failure for
# the window, and at least this long: longer than a check waits in a node's queue.
PENDING_MIN_TTL_S = 120

# KEYS: (failures, pending) for the user, then for the address. ARGV: limit, pending TTL.
# Returns 0 when the attempt is reserved, else the seconds to wait.
_RESERVE = """
local limit = tonumber(ARGV[1])
local wait = 0
for i = 1, #KEYS, 2 do
  local failed = tonumber(redis.call('GET', KEYS[i]) or '0')
  local pending = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  if failed >= limit then
    wait = math.max(wait, redis.call('TTL', KEYS[i]), 1)
  elseif failed + pending >= limit then
    wait = math.max(wait, 1)
  end
end
if wait > 0 then return wait end
for i = 2, #KEYS, 2 do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return 0
"""

# KEYS as for _RESERVE. ARGV: outcome ('ok', 'failed' or 'none'), window in seconds.
_SETTLE = """
for i = 2, #KEYS, 2 do
  if redis.call('DECR', KEYS[i]) <= 0 then redis.call('DEL', KEYS[i]) end
end
if ARGV[1] == 'failed' then
  for i = 1, #KEYS, 2 do
    redis.call('INCR', KEYS[i])
    redis.call('EXPIRE', KEYS[i], ARGV[2])
  end
elseif ARGV[1] == 'ok' then
  redis.call('DEL', KEYS[1])
end
return 1
"""


class RateLimited(Exception):
    code = "rate_limited"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("too many failed sign-ins; try again later")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class SignedIn:
    token: str
    role: str
    agent_id: int
    name: str


class SignIn:
    """Checks a username and password and issues a token, within the limits."""

    def __init__(self, redis: Redis, keys: Keys, sessions: async_sessionmaker[AsyncSession],
                 reader: async_sessionmaker[AsyncSession], verifier: PasswordVerifier,
                 settings: Settings) -> None:
        self._keys, self._sessions, self._reader = keys, sessions, reader
        self.verifier = verifier
        self._settings = settings
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    async def __call__(self, username: str, password: str, address: str | None) -> SignedIn:
        counters = self._counters(username, address)
        pending_ttl_s = max(self._settings.signin_window_s, PENDING_MIN_TTL_S)
        wait = int(await self._reserve(keys=counters,
                                       args=[self._settings.signin_limit, pending_ttl_s]))
        if wait:
            raise RateLimited(wait)
        outcome, agent = "none", None
        try:
            agent = await self._check(username, password)
            outcome = "ok" if agent is not None else "failed"
        finally:
            await self._settle(keys=counters, args=[outcome, self._settings.signin_window_s])
        if agent is None:
            raise AuthError("wrong username or password")
        return await self._issue(agent)

    def _counters(self, username: str, address: str | None) -> list[str]:
        user, addr = f"user:{username}", f"addr:{address}"
        return [self._keys.login_failures(user), self._keys.login_pending(user),
                self._keys.login_failures(addr), self._keys.login_pending(addr)]

    async def _check(self, username: str, password: str) -> Agent | None:
        async with self._reader() as session:  # on SQLite, not the writers' connection
            agent = await auth.find_user(session, username)
        # The session is closed: no connection or transaction is held while Argon2 runs.
        # An unknown user is checked against a dummy hash, so it costs the same.
        ok = await self.verifier.verify(agent.password_hash if agent else None, password)
        return agent if ok and agent is not None and agent.active else None

    async def _issue(self, agent: Agent) -> SignedIn:
        settings = self._settings
        async with self._sessions() as session, session.begin():
            token = await auth.issue_token(session, settings.secret_key, role=Role(agent.role),
                                           name=agent.username, agent_id=agent.id,
                                           ttl=dt.timedelta(seconds=settings.token_ttl_s))
        return SignedIn(token, agent.role, agent.id, agent.display_name or agent.username)


async def signin_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    verifier = PasswordVerifier(settings.signin_concurrency, settings.signin_queue)
    app[appkeys.SIGN_IN] = SignIn(app[appkeys.REDIS], app[appkeys.KEYS],
                                  app[appkeys.SESSIONS], app[appkeys.READER], verifier,
                                  settings)
    yield
    verifier.close()
