"""The bus's subscriber connection: pub/sub messages in batches, as they arrive.

`RawSubscription` reads a plain Redis server's pub/sub connection with hiredis's parser
itself: every message that one socket read holds is parsed in C and handed over in one
batch. redis-py's `PubSub.get_message` costs a timeout, a lock and a parse call of
Python per message (about 4% of a node's CPU at 50 calls/s). Behind Sentinel the bus
keeps `RedisPySubscription`, whose connection pool follows a failover.

Both answer `next()` with a list of `(channel, data)` (possibly empty: the caller looks
whether it was cancelled) and raise redis-py's `ConnectionError` when the connection is
lost; `reconnect()` subscribes again to the channels given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import hiredis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from core.tickpipe import Arg, Commands, connect_args, open_connection

Message = tuple[str, str | bytes]


class Subscription(Protocol):
    async def subscribe(self, *channels: str) -> None: ...
    async def unsubscribe(self, channel: str) -> None: ...
    async def next(self) -> list[Message]: ...
    async def reconnect(self, channels: Sequence[str]) -> None: ...
    async def close(self) -> None: ...


def subscription_for(redis: Redis, name: str) -> Subscription:
    """The subscription for `redis`'s server; `name` is its connection's name in Redis's
    CLIENT LIST (raw subscription only)."""
    where = connect_args(redis)
    return RawSubscription(where, name) if where is not None else RedisPySubscription(redis)


class RedisPySubscription:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)

    async def subscribe(self, *channels: str) -> None:
        await self._pubsub.subscribe(*channels)

    async def unsubscribe(self, channel: str) -> None:
        await self._pubsub.unsubscribe(channel)

    async def next(self) -> list[Message]:
        message = await self._pubsub.get_message(timeout=1.0)
        return [] if message is None else [(message["channel"], message["data"])]

    async def reconnect(self, channels: Sequence[str]) -> None:
        await self.close()
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(*channels)

    async def close(self) -> None:
        # PubSub.aclose is unannotated in redis-py.
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]


class _Reading(Commands):
    """Messages parsed as the socket delivers them, queued for the bus's task."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.queued: list[Message] = []
        self.wake = asyncio.Event()
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                self.queued.append((reply[1].decode(errors="replace"), reply[2]))
            elif isinstance(reply, hiredis.ReplyError):  # a refused SUBSCRIBE (auth, ACL)
                self.lost = RedisConnectionError(f"Redis refused a subscription: {reply}")
                self.wake.set()
        if self.queued:
            self.wake.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = RedisConnectionError(f"pub/sub connection to Redis lost: {exc}")
        self.wake.set()

    def send(self, args: Sequence[Arg]) -> None:
        if self.transport is None or self.transport.is_closing():
            raise self.lost or RedisConnectionError("pub/sub connection is closed")
        self.transport.write(hiredis.pack_command(tuple(args)))  # type: ignore[arg-type]


class RawSubscription:
    """One subscribed connection to a fixed Redis server (`connect_args`)."""

    def __init__(self, where: dict[str, Any], name: str) -> None:
        self._where, self._name = where, name
        self._reading: _Reading | None = None
        self._connecting = asyncio.Lock()

    async def subscribe(self, *channels: str) -> None:
        reading = self._reading or await self._connected()
        if reading.lost is None:  # else the bus's next round reconnects to them all
            reading.send(("SUBSCRIBE", *channels))

    async def unsubscribe(self, channel: str) -> None:
        reading = self._reading
        if reading is not None and reading.lost is None:
            reading.send(("UNSUBSCRIBE", channel))

    async def next(self) -> list[Message]:
        reading = self._reading or await self._connected()
        while not reading.queued:
            if reading.lost is not None:
                raise reading.lost
            reading.wake.clear()
            await reading.wake.wait()
        batch, reading.queued = reading.queued, []
        return batch

    async def reconnect(self, channels: Sequence[str]) -> None:
        await self.close()
        reading = await self._connected()
        reading.send(("SUBSCRIBE", *channels))

    async def close(self) -> None:
        if self._reading is not None and self._reading.transport is not None:
            self._reading.transport.close()
        self._reading = None

    async def _connected(self) -> _Reading:
        async with self._connecting:
            if self._reading is None:
                self._reading = await self._connect()
            return self._reading

    async def _connect(self) -> _Reading:
        reading = await open_connection(self._where, _Reading)  # a subscriber needs no db
        reading.send(("CLIENT", "SETNAME", self._name))
        return reading
