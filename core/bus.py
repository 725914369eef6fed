"""Events between nodes over Redis pub/sub.

A node subscribes to the channels of the connections it holds (an agent's
console, a PBX integration, the wallboards) and hands each message to the
local callbacks. Any node may publish; the node holding the socket delivers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.redisconn import log_failure
from core.subscription import Subscription, subscription_for

log = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], Awaitable[None] | None]
Resync = Callable[[], Awaitable[None]]


class Relay:
    """A subscriber that passes messages on as they came (a websocket's outbox): it gets
    the decoded message to look at and the text as published, to send without encoding
    it again. The bus still decodes every message first, so a malformed one is dropped
    before it reaches anyone."""

    def relay(self, message: dict[str, Any], text: str) -> None:
        raise NotImplementedError

    def __call__(self, message: dict[str, Any]) -> None:
        self.relay(message, orjson.dumps(message).decode())


class Bus:
    def __init__(self, redis: Redis, node_channel: str,
                 subscription: Subscription | None = None) -> None:
        self.redis = redis
        self._node_channel = node_channel
        self._callbacks: dict[str, set[Callback]] = defaultdict(set)
        self._subscription: Subscription = (
            subscription or subscription_for(redis, f"bus:{node_channel}"))
        self._ready = asyncio.Event()
        self._resync: set[Resync] = set()

    def on_resubscribed(self, resync: Resync) -> None:
        """Call `resync()` each time the bus subscribes again after an outage: messages
        published meanwhile are lost (pub/sub keeps nothing), so a holder of a connection
        sends it the state it may have missed."""
        self._resync.add(resync)

    def forget(self, resync: Resync) -> None:
        self._resync.discard(resync)

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        await self.redis.publish(channel, orjson.dumps(message))

    async def subscribe(self, channel: str, callback: Callback) -> None:
        first = not self._callbacks.get(channel)
        self._callbacks[channel].add(callback)
        if first:
            await self._subscription.subscribe(channel)

    async def unsubscribe(self, channel: str, callback: Callback) -> None:
        callbacks = self._callbacks.get(channel)
        if callbacks is None:
            return
        callbacks.discard(callback)
        if not callbacks:
            del self._callbacks[channel]
            try:
                await self._subscription.unsubscribe(channel)
            except RedisConnectionError:
                log.debug("unsubscribe from %s during a Redis outage", channel)

    async def run(self) -> None:
        """Deliver messages until cancelled, resubscribing after a Redis outage (or a
        connection gone silent: core/subscription.py)."""
        await self._subscription.subscribe(self._node_channel)
        self._ready.set()
        # redis-py can swallow a cancellation inside a command; look before each round.
        while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
            try:
                batch = await self._subscription.next()
            except (RedisConnectionError, OSError, RuntimeError) as e:
                log.warning("pub/sub connection lost (%s); reconnecting", e)
                await asyncio.sleep(0.5)
                await self._resubscribe()
                continue
            except UnicodeDecodeError as e:  # bytes no client of ours sends; the rest flows
                _drop_not_utf8(e.object)
                continue
            for channel, data in batch:
                await self._dispatch(channel, data)

    async def _resubscribe(self) -> None:
        try:
            await self._subscription.reconnect([self._node_channel, *self._callbacks])
        except (RedisConnectionError, RedisTimeoutError, OSError):
            log.debug("Redis still unreachable")
            return
        log.info("pub/sub subscribed again to %d channels", len(self._callbacks) + 1)
        for resync in list(self._resync):
            try:
                await resync()
            except Exception:
                log_failure(log, "resync after a pub/sub outage failed")

    async def _dispatch(self, channel: str, data: str | bytes) -> None:
        if isinstance(data, bytes):  # as read by the raw subscription (core/subscription.py)
            try:
                text = data.decode()
            except UnicodeDecodeError:
                _drop_not_utf8(data, channel)
                return
        else:
            text = data
        payload = decode(channel, text)
        if payload is None:
            return
        for callback in list(self._callbacks.get(channel, ())):
            try:
                if isinstance(callback, Relay):
                    callback.relay(payload, text)
                    continue
                result = callback(payload)
                if result is not None:
                    await result
            except Exception:
                log_failure(log, "bus callback for %s failed", channel)

    async def close(self) -> None:
        await self._subscription.close()


def decode(channel: str, data: str | bytes) -> dict[str, Any] | None:
    """The message as a JSON object, or None (logged) when it is not one: anyone who can
    publish to Redis can put anything on a channel, and one bad message must not stop
    the delivery of the next."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict):
        return payload
    log.warning("dropped a malformed message on %s: %r", channel, _truncated(data))
    return None


def _drop_not_utf8(data: bytes, channel: str = "unknown") -> None:
    log.warning("dropped a message that is not UTF-8 (channel %s): %r", channel,
                _truncated(data))


def _truncated(data: str | bytes, limit: int = 200) -> str | bytes:
    if len(data) <= limit:
        return data
    if isinstance(data, str):
        return data[:limit] + "..."
    return data[:limit] + b"..."
