"""The call path's Redis commands, pipelined by loop turn on one connection.

redis-py spends about 40 microseconds of Python per command around a round trip that
costs Redis a few (a pool checkout and release, retries, events, metrics hooks). The call
path's scripts and reads go through `TickPipe` instead: every command of one loop turn is
written in one system call on one connection, and replies are matched to callers in
order (Redis answers a connection's commands in the order it sent them). The protocol is
hiredis's, the same parser redis-py uses; errors are redis-py's exceptions.

Used for a plain Redis URL (or the embedded server's socket); behind Sentinel the service
keeps redis-py's client, which follows a failover (`for_client` answers None).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

log = logging.getLogger(__name__)

Arg = str | bytes | int | float


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.out: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            done = self.waiting.popleft()
            if done.done():  # its caller was cancelled
                continue
            if isinstance(reply, hiredis.ReplyError):
                done.set_exception(_error(str(reply)))
            else:
                done.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = RedisConnectionError(f"connection to Redis lost: {exc}")
        while self.waiting:
            done = self.waiting.popleft()
            if not done.done():
                done.set_exception(self.lost)

    def send(self, args: Sequence[Arg]) -> asyncio.Future[Any]:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.lost is not None or self.transport is None:
            done.set_exception(self.lost or RedisConnectionError("not connected"))
            return done
        if not self.out:
            asyncio.get_running_loop().call_soon(self._flush)
        self.out.append(hiredis.pack_command(tuple(args)))  # type: ignore[arg-type]
        self.waiting.append(done)
        return done

    def _flush(self) -> None:
        out, self.out = self.out, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))


def _error(message: str) -> Exception:
    """The exception redis-py raises for this error reply (ResponseError, NoScriptError,
    ReadOnlyError...)."""
    return cast(Exception, BaseParser.parse_error(message))  # type: ignore[no-untyped-call]


def connect_args(redis: Redis) -> dict[str, Any] | None:
    """Where and how to connect to the one server `redis` talks to (a Unix socket or
    host and port, db, credentials); None unless it is one fixed server reached without
    TLS (Sentinel and TLS stay with redis-py)."""
    pool = redis.connection_pool
    kwargs = pool.connection_kwargs
    if pool.connection_class is UnixDomainSocketConnection:
        where: dict[str, Any] = {"path": kwargs["path"]}
    elif (type(pool).__name__ == "ConnectionPool" and pool.connection_class is Connection
          and "host" in kwargs):  # not TLS, not Sentinel
        where = {"host": kwargs["host"], "port": kwargs.get("port", 6379)}
    else:
        return None
    where.update(db=kwargs.get("db") or 0, username=kwargs.get("username"),
                 password=kwargs.get("password"))
    return where


class TickPipe:
    """Commands to one Redis server over one connection, pipelined by loop turn;
    connected on first use and again after a loss."""

    def __init__(self, connect: dict[str, Any]) -> None:
        self._connect = connect
        self._protocol: _Protocol | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def for_client(cls, redis: Redis) -> TickPipe | None:
        """A pipe to the server `redis` talks to; None unless it is one fixed server."""
        where = connect_args(redis)
        return cls(where) if where is not None else None

    async def execute(self, *args: Arg) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connected()
        return await protocol.send(args)

    async def execute_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands sent together, in order; their replies (the first error
        raised, after all were answered)."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connected()
        sent = [protocol.send(args) for args in commands]
        return list(await asyncio.gather(*sent))

    def register_script(self, text: str) -> Script:
        return Script(self, text)

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None

    async def _connected(self) -> _Protocol:
        async with self._lock:
            if self._protocol is not None and self._protocol.lost is None:
                return self._protocol
            loop = asyncio.get_running_loop()
            c = self._connect
            try:
                if "path" in c:
                    _, protocol = await loop.create_unix_connection(_Protocol, c["path"])
                else:
                    _, protocol = await loop.create_connection(_Protocol, c["host"], c["port"])
            except OSError as e:
                raise RedisConnectionError(f"cannot connect to Redis: {e}") from e
            if c["password"]:
                auth = [c["username"], c["password"]] if c["username"] else [c["password"]]
                await protocol.send(["AUTH", *auth])
            if c["db"]:
                await protocol.send(["SELECT", c["db"]])
            self._protocol = protocol
            return protocol


class Script:
    """A Lua script called by its digest (loaded on first NOSCRIPT), as redis-py's
    `AsyncScript` is called: `await script(keys=[...], args=[...])`."""

    def __init__(self, pipe: TickPipe, text: str) -> None:
        self.pipe = pipe
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        try:
            return await self.pipe.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.pipe.execute("SCRIPT", "LOAD", self.text)
            return await self.pipe.execute("EVALSHA", self.sha, len(keys), *keys, *args)
