"""One administrative change at a time, center-wide: taken under a Redis lock, stored
with its audit entry in one transaction, counted and announced to every node.

The lock makes "check, then write" safe across nodes for the checks that read other
rows (the last admin, a queue's members, skills in use).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin.exceptions import Busy
from admin.live import LiveConfig
from core import audit
from core.keys import Keys
from routing.admin_steps import AdminSteps

T = TypeVar("T")
LOCK_TTL_MS = 15_000
LOCK_WAIT_S = 10.0
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class Changes:
    maker: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    admin_steps: AdminSteps
    live: LiveConfig

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        key, token = self.keys.lock("admin"), secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT_S
        while not await self.redis.set(key, token, nx=True, px=LOCK_TTL_MS):
            if loop.time() > deadline:
                raise Busy()
            await asyncio.sleep(0.02)
        try:
            yield
        finally:
            await self.redis.eval(_RELEASE, 1, key, token)

    async def make(self, who: audit.Viewer, action: str, obj: tuple[str, str],
                   change: Callable[[AsyncSession], Awaitable[tuple[T, dict[str, Any]]]],
                   *, config: bool = True) -> T:
        """Run `change` (it raises to refuse; it returns its result and the audit detail:
        before and after) in a transaction with its audit entry; then, for a change of
        the configuration, count it, load it here and tell every other node."""
        async with self._locked():
            async with self.maker() as session, session.begin():
                result, detail = await change(session)
                audit.record(session, who, action, [obj], detail)
            if config:
                version = await self.admin_steps.bump()
                await self.live.reload()
                await self.live.announce(version)
        return result
