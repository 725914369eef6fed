"""The call path's Redis commands, pipelined by loop turn on one connection.

redis-py spends about 40 microseconds of Python per command around a round trip that
costs Redis a few (a pool checkout and release, retries, events, metrics hooks). The call
path's scripts and reads go through `TickPipe` instead: every command of one loop turn is
written in one system call on one connection, and replies are matched to callers in
order (Redis answers a connection's commands in the order it sent them). The protocol is
hiredis's, the same parser redis-py uses; errors are redis-py's exceptions.

Used for a plain Redis URL (or the embedded server's socket); behind Sentinel the service
keeps redis-py's client, which follows a failover (`for_client` answers None).

A Redis that stops answering (stopped, or its host gone without closing the connection)
fails the commands waiting on it after the client's socket timeout, as redis-py does: the
connection is dropped and the next command connects again. Without that a call path's
frame would wait for ever, and the PBX never hear that it was not served.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

Arg = str | bytes | int | float


class Commands(asyncio.Protocol):
    """The protocol of one connection to Redis: it sends a command (its reply, or None
    when the protocol does not answer replies to callers)."""

    def send(self, args: Sequence[Arg]) -> asyncio.Future[Any] | None:
        raise NotImplementedError


P = TypeVar("P", bound=Commands)


async def open_connection(where: dict[str, Any], protocol_factory: Callable[[], P],
                          timeout_s: float | None = None, *, select_db: bool = False) -> P:
    """A connection to the server `where` (`connect_args`: a Unix socket or host and port)
    made within `timeout_s` (None: no bound), authenticated when it has credentials and
    switched to its db when `select_db`. Failures are redis-py's exceptions."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            if "path" in where:
                transport, protocol = await loop.create_unix_connection(protocol_factory,
                                                                        where["path"])
            else:
                transport, protocol = await loop.create_connection(
                    protocol_factory, where["host"], where["port"])
    except TimeoutError as e:  # before OSError, of which it is one
        raise RedisTimeoutError(f"cannot connect to Redis within {timeout_s:g} s") from e
    except OSError as e:
        raise RedisConnectionError(f"cannot connect to Redis: {e}") from e
    try:
        for command in _handshake(where, select_db):
            reply = protocol.send(command)
            if reply is not None:
                await reply
    except BaseException:
        transport.close()
        raise
    return protocol


def _handshake(where: dict[str, Any], select_db: bool) -> list[list[Arg]]:
    commands: list[list[Arg]] = []
    if where["password"]:
        user = [where["username"]] if where["username"] else []
        commands.append(["AUTH", *user, where["password"]])
    if select_db and where["db"]:
        commands.append(["SELECT", where["db"]])
    return commands


class _Protocol(Commands):
    def __init__(self, timeout_s: float | None = None) -> None:
        # Made on the loop (the connection's factory): every command's future comes from
        # it, without asking asyncio for the running loop (a getpid system call each on
        # Python 3.11).
        self.loop = asyncio.get_running_loop()
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.sent_at: deque[float] = deque()  # when each waiting command was sent
        self.out: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.timeout_s = timeout_s
        self._watch: asyncio.TimerHandle | None = None
        self._overdue: asyncio.Future[Any] | None = None  # seen overdue by the last look

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.timeout_s is not None:
            self._watch = self.loop.call_later(self.timeout_s / 4, self._check)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            done = self.waiting.popleft()
            self.sent_at.popleft()
            if done.done():  # its caller was cancelled
                continue
            if isinstance(reply, hiredis.ReplyError):
                done.set_exception(_error(str(reply)))
            else:
                done.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc}"))

    def _check(self) -> None:
        """Give up on a Redis whose oldest reply is overdue, and still is at the next look:
        a loop held up (a full collection on a loaded host) between sending and writing a
        command, or before reading its reply, gets a turn to write and read first."""
        assert self.timeout_s is not None and self.transport is not None
        loop = self.loop
        oldest = self.waiting[0] if self.waiting else None
        if oldest is None or loop.time() - self.sent_at[0] <= self.timeout_s:
            self._overdue = None
        elif oldest is not self._overdue:
            self._overdue = oldest
        else:
            self._fail(RedisTimeoutError(f"no reply from Redis within {self.timeout_s:g} s"))
            self.transport.abort()
            return
        self._watch = loop.call_later(self.timeout_s / 4, self._check)

    def _fail(self, error: Exception) -> None:
        """No more commands on this connection; those waiting get `error`."""
        self.lost = self.lost or error
        self.sent_at.clear()
        while self.waiting:
            done = self.waiting.popleft()
            if not done.done():
                done.set_exception(error)

    def send(self, args: Sequence[Arg]) -> asyncio.Future[Any]:
        loop = self.loop
        done: asyncio.Future[Any] = loop.create_future()
        if self.lost is not None or self.transport is None:
            done.set_exception(self.lost or RedisConnectionError("not connected"))
            return done
        if not self.out:
            loop.call_soon(self._flush)
        self.out.append(hiredis.pack_command(tuple(args)))  # type: ignore[arg-type]
        self.waiting.append(done)
        self.sent_at.append(loop.time())
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

    def __init__(self, connect: dict[str, Any], timeout_s: float | None = None) -> None:
        self._connect = connect
        self.timeout_s = timeout_s  # for a reply, and to connect; None: no bound
        self._protocol: _Protocol | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def for_client(cls, redis: Redis) -> TickPipe | None:
        """A pipe to the server `redis` talks to; None unless it is one fixed server."""
        where = connect_args(redis)
        if where is None:
            return None
        return cls(where, redis.connection_pool.connection_kwargs.get("socket_timeout"))

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
            self._protocol = await open_connection(
                self._connect, lambda: _Protocol(self.timeout_s), self.timeout_s,
                select_db=True)
            return self._protocol


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
