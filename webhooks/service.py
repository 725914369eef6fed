"""The webhook loop a node runs, and the observer that queues call events.

`Webhooks.observe` is a call-service observer: one XADD on the call path, nothing else.
`Webhooks.run` fans queued events out into deliveries and sends what is due.

An idle node costs almost nothing: the fan-out waits on a long blocked read of the
stream (it returns as soon as an entry comes), and the sender sleeps until the next
pending delivery is due, woken sooner by a send that ended, by deliveries this node
stored, and by a word from another node (a subscription changed, or its senders are all
busy). Deliveries are sent by the node that stored them unless it asks for help. With
nothing heard the sender looks in the database every `idle_poll_s`, which bounds what a
lost word (or a node that died between storing deliveries and sending them) can delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from core import outbox
from core.redisconn import OUTAGES
from webhooks import events
from webhooks.delivery import Sender
from webhooks.fanout import FanOut

log = logging.getLogger(__name__)

# A word to every node on the webhooks channel: `{"subscriptions": true}` a subscription
# changed (look them up again), `{"due": true}` a node's senders are all busy (help).
Announce = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Webhooks:
    redis: Redis
    stream: str
    fanout: FanOut
    sender: Sender
    # The longest one blocked read of the stream waits; it returns as soon as an entry
    # comes, so this only bounds how often an idle node asks Redis. Well below the
    # client's socket timeout (redis-py's default, 5 s), which a blocked read also obeys.
    block_s: float = 2.0
    # Due deliveries are looked for in the database at once after a fan-out, a finished
    # send or a word from another node; while sends are in flight or a due delivery waits
    # behind another (a call's earlier event, an entry still being fanned out), this often.
    db_poll_s: float = 1.0
    # With nothing due and no word, the longest the sender sleeps (a word lost while
    # Redis was away, deliveries stored by a node that died before it sent them).
    idle_poll_s: float = 30.0
    # The most often this node asks the others for help with due deliveries.
    announce_every_s: float = 1.0
    announce: Announce | None = None
    _wanted: list[list[str]] | None = field(default=None, init=False)  # None: not known yet
    _generation: int = field(default=0, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _announced: float = field(default=float("-inf"), init=False)
    looks: int = field(default=0, init=False)  # rounds of the sender (each a database look)

    def forget_subscriptions(self) -> None:
        """A subscription changed: queue every event until they are looked up again."""
        self._wanted = None
        self._generation += 1
        self.wake()

    def wake(self) -> None:
        """Look for due deliveries now."""
        self._wake.set()

    def heard(self, message: dict[str, Any]) -> None:
        """A word on the webhooks channel from some node."""
        if message.get("subscriptions"):
            self.forget_subscriptions()
        self.wake()

    async def changed(self) -> None:
        """After a subscription change is committed: every node looks them up again."""
        self.forget_subscriptions()
        if self.announce is None:
            return
        try:
            await self.announce({"subscriptions": True})
        except Exception as e:  # the change stands; the others see it on their next look
            log.warning("could not tell the other nodes of a webhook change: %s", e)

    def wants(self, kind: str) -> bool:
        """Whether an event of this type is queued (while unknown, every one is)."""
        return self._wanted is None or any(events.matches(w, kind) for w in self._wanted)

    async def observe(self, name: str, data: dict[str, Any]) -> None:
        # Whether anybody wants it first: the payload is built only then (every event of
        # the call path comes through here).
        kind = events.webhook_type(name)
        if kind is None or not self.wants(kind):
            return
        converted = events.from_call_service(name, data)
        if converted is None:
            return
        _, payload = converted
        await outbox.emit_quietly(self.redis, self.stream, kind, payload,
                                  order_key=str(payload.get("call_id") or ""))

    async def step(self) -> int:
        """One round without waiting: fan out what is queued, start what is due."""
        await self._look_up_subscriptions()
        moved = await self.fanout.step()
        return moved + await self.sender.step(await self.fanout.watermark())

    async def run(self) -> None:
        await self.fanout.ensure_group()
        self.sender.on_finished = self.wake
        async with asyncio.TaskGroup() as group:
            group.create_task(self._rounds("fan-out", self._fan_out), name="webhook-fanout")
            group.create_task(self._rounds("send", self._send), name="webhook-send-loop")

    async def _rounds(self, what: str, one: Callable[[float], Awaitable[float]]) -> None:
        wait = 0.0
        # redis-py can swallow a cancellation inside a command; look before each round.
        while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
            try:
                wait = await one(wait)
            except OUTAGES as e:
                # Redis away, or a reply later than the socket timeout: the fan-out's read
                # blocks for `block_s` of it, so a loop held up for seconds on a loaded host
                # times it out. The next round reads again.
                log.warning("webhook %s round: Redis unavailable (%s); again in 1 s", what, e)
                wait = 1.0
                await asyncio.sleep(1)
            except Exception:  # the database away, or a fault of ours: try again shortly
                log.exception("webhook %s round failed", what)
                wait = 1.0
                await asyncio.sleep(1)

    async def _fan_out(self, _wait: float) -> float:
        moved = await self.fanout.step(int(self.block_s * 1000))
        if moved:
            self.wake()
        return 0.0

    async def _send(self, wait: float) -> float:
        """Sleep up to `wait` unless woken, start what is due; the next round's wait."""
        # Nothing heard for long: the subscriptions are looked up again too.
        await self._look_up_subscriptions(again=not await self._woken(wait))
        self.looks += 1
        started = await self.sender.step(await self.fanout.watermark())
        if started and len(self.sender.inflight) >= self.sender.policy.concurrency:
            await self._ask_for_help()
        if self.sender.inflight:
            return self.db_poll_s  # their ends wake this loop; retries of others come due
        return await self._until_due()

    async def _woken(self, wait: float) -> bool:
        """Wait up to `wait` seconds for a wake-up; False when none came."""
        woken = True
        if wait > 0 and not self._wake.is_set():
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                woken = False
        self._wake.clear()
        return woken

    async def _until_due(self) -> float:
        due = await self.sender.next_due()
        if due is None:
            return self.idle_poll_s
        left = due - self.sender.clock()
        # In the past: due, yet not started (held behind an entry still being fanned out
        # elsewhere, whose end wakes nobody here).
        return self.db_poll_s if left <= 0 else min(left, self.idle_poll_s)

    async def _ask_for_help(self) -> None:
        """Every slot here is busy and more may be due: the other nodes look too."""
        now = time.monotonic()
        if self.announce is None or now - self._announced < self.announce_every_s:
            return
        self._announced = now
        try:
            await self.announce({"due": True})
        except Exception as e:  # they find them on their next look
            log.debug("could not tell the other nodes about due deliveries: %s", e)

    async def _look_up_subscriptions(self, again: bool = False) -> None:
        if self._wanted is not None and not again:
            return
        generation = self._generation
        wanted = await self.fanout.subscribed()
        if generation == self._generation:  # no change announced meanwhile
            self._wanted = wanted

    async def close(self) -> None:
        await self.sender.drain()
