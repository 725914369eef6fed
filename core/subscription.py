"""The bus's subscriber connection: pub/sub messages in batches, as they arrive.

`RawSubscription` reads a plain Redis server's pub/sub connection with hiredis's parser
itself: every message that one socket read holds is parsed in C and handed over in one
batch. redis-py's `PubSub.get_message` costs a timeout, a lock and a parse call of
Python per message (about 4% of a node's CPU at 50 calls/s). Behind Sentinel the bus
keeps `RedisPySubscription`, whose connection pool follows a failover.

Both answer `next()` with a list of `(channel, data)` (possibly empty: the caller looks
whether it was cancelled) and raise redis-py's `ConnectionError` when the connection is
lost; `reconnect()` subscribes again to the channels given.

A connection can die without a word (its host gone, a network path dropped): TCP alone
would notice only after minutes, the node deaf to the bus meanwhile. So both PING a
connection that was silent for `Liveness.idle_s` (legal while subscribed: the reply is a
pong) and give it up as lost when nothing came back within `Liveness.reply_s`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Liveness:
    """A subscribed connection silent for `idle_s` is sent a PING; one that then stays
    silent for `reply_s` more is lost: a dead one is noticed within their sum."""

    idle_s: float = 5.0
    reply_s: float = 5.0


class _Heartbeat:
    """When to PING a connection, and when to give it up."""

    def __init__(self, liveness: Liveness, now: float) -> None:
        self.liveness = liveness
        self.heard_at = now
        self.pinged_at: float | None = None

    def heard(self, now: float) -> None:
        self.heard_at, self.pinged_at = now, None

    def ping_due(self, now: float) -> bool:
        return self.pinged_at is None and now - self.heard_at >= self.liveness.idle_s

    def pinged(self, now: float) -> None:
        self.pinged_at = now

    def dead(self, now: float) -> bool:
        return self.pinged_at is not None and now - self.pinged_at >= self.liveness.reply_s

    def next_look(self) -> float:
        if self.pinged_at is None:
            return self.heard_at + self.liveness.idle_s
        return self.pinged_at + self.liveness.reply_s

    def silence(self) -> RedisConnectionError:
        return RedisConnectionError(
            f"no reply from Redis to a PING within {self.liveness.reply_s:g} s")


def subscription_for(redis: Redis, name: str, liveness: Liveness = Liveness()) -> Subscription:
    """The subscription for `redis`'s server; `name` is its connection's name in Redis's
    CLIENT LIST (raw subscription only)."""
    where = connect_args(redis)
    if where is None:
        return RedisPySubscription(redis, liveness)
    timeout_s = redis.connection_pool.connection_kwargs.get("socket_connect_timeout")
    return RawSubscription(where, name, liveness, timeout_s)


class RedisPySubscription:
    def __init__(self, redis: Redis, liveness: Liveness = Liveness()) -> None:
        self._redis, self._liveness = redis, liveness
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._beat: _Heartbeat | None = None

    async def subscribe(self, *channels: str) -> None:
        await self._pubsub.subscribe(*channels)

    async def unsubscribe(self, channel: str) -> None:
        await self._pubsub.unsubscribe(channel)

    async def next(self) -> list[Message]:
        clock = asyncio.get_running_loop().time
        beat = self._beat = self._beat or _Heartbeat(self._liveness, clock())
        if beat.dead(clock()):
            raise beat.silence()
        if beat.ping_due(clock()):
            await self._pubsub.ping()
            beat.pinged(clock())
        # What get_message does, but any reply counts as heard: the reply to our PING is
        # "pong" or, on a Redis 6.2 with decoded responses, a bare "PONG" that redis-py's
        # get_message answers None for, as when nothing came.
        response = await self._pubsub.parse_response(block=False, timeout=1.0)
        if response is None:
            return []
        beat.heard(clock())
        message = await self._pubsub.handle_message(  # type: ignore[no-untyped-call]
            response, ignore_subscribe_messages=True)
        if message is None or message["type"] != "message":
            return []
        return [(message["channel"], message["data"])]

    async def reconnect(self, channels: Sequence[str]) -> None:
        await self.close()
        self._beat = None
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(*channels)

    async def close(self) -> None:
        # PubSub.aclose is unannotated in redis-py.
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]


class _Reading(Commands):
    """Messages parsed as the socket delivers them, queued for the bus's task; the
    connection PINGed when silent, and given up when the PING is not answered."""

    def __init__(self, liveness: Liveness) -> None:
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.queued: list[Message] = []
        self.wake = asyncio.Event()
        self.lost: Exception | None = None
        self._loop = asyncio.get_running_loop()
        self._beat = _Heartbeat(liveness, self._loop.time())
        self._watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._beat.heard(self._loop.time())
        self._watch = self._loop.call_at(self._beat.next_look(), self._look)

    def _look(self) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return
        now = self._loop.time()
        if self._beat.dead(now):
            # Anything received meanwhile (data read after a stall of the loop comes
            # before this timer) would have counted: the connection is silent.
            self.lost = self.lost or self._beat.silence()
            self.wake.set()
            self.transport.abort()
            return
        if self._beat.ping_due(now):
            self.send(("PING",))
            self._beat.pinged(now)
        self._watch = self._loop.call_at(self._beat.next_look(), self._look)

    def data_received(self, data: bytes) -> None:
        self._beat.heard(self._loop.time())
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
        if self._watch is not None:
            self._watch.cancel()
        self.lost = self.lost or RedisConnectionError(f"pub/sub connection to Redis lost: {exc}")
        self.wake.set()

    def send(self, args: Sequence[Arg]) -> None:
        if self.transport is None or self.transport.is_closing():
            raise self.lost or RedisConnectionError("pub/sub connection is closed")
        self.transport.write(hiredis.pack_command(tuple(args)))  # type: ignore[arg-type]


class RawSubscription:
    """One subscribed connection to a fixed Redis server (`connect_args`), connected
    within `timeout_s`. Each new connection subscribes to every channel subscribed so far,
    as redis-py's `PubSub` does: one made after a failed reconnection is not deaf."""

    def __init__(self, where: dict[str, Any], name: str, liveness: Liveness = Liveness(),
                 timeout_s: float | None = None) -> None:
        self._where, self._name = where, name
        self._liveness, self._timeout_s = liveness, timeout_s
        self._channels: set[str] = set()
        self._reading: _Reading | None = None
        self._connecting = asyncio.Lock()

    async def subscribe(self, *channels: str) -> None:
        self._channels.update(channels)
        reading = self._reading
        if reading is None:
            await self._connected()  # which subscribes to them all
        elif reading.lost is None:  # else the bus's next round reconnects to them all
            reading.send(("SUBSCRIBE", *channels))

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
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
        self._channels = set(channels)
        await self._connected()

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
        reading = await open_connection(  # a subscriber needs no db
            self._where, lambda: _Reading(self._liveness), self._timeout_s)
        reading.send(("CLIENT", "SETNAME", self._name))
        if self._channels:
            reading.send(("SUBSCRIBE", *self._channels))
        return reading
