"""The webhook loop a node runs, and the observer that queues call events.

`Webhooks.observe` is a call-service observer: one XADD on the call path, nothing else.
`Webhooks.run` fans queued events out into deliveries and sends what is due.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from core import outbox
from webhooks import events
from webhooks.delivery import Sender
from webhooks.fanout import FanOut

log = logging.getLogger(__name__)


@dataclass
class Webhooks:
    redis: Redis
    stream: str
    fanout: FanOut
    sender: Sender
    # The longest a round waits for a new event (a blocked read on the stream, which
    # returns as soon as one comes): also how soon a finished send lets the next go.
    poll_s: float = 0.25
    # Due deliveries are looked for in the database at once after a fan-out or a send,
    # otherwise (retries coming due) this often: the database is shared with calls.
    db_poll_s: float = 1.0
    # What the subscriptions ask for, looked up this often: a call event nobody subscribed
    # to is not queued (the call path then costs nothing for webhooks). A new subscription
    # gets events from its node at once and from the others within this time.
    subscriptions_s: float = 2.0
    _polled: float = field(default=float("-inf"), init=False)
    _wanted: list[list[str]] | None = field(default=None, init=False)  # None: not known yet
    _looked: float = field(default=float("-inf"), init=False)

    def forget_subscriptions(self) -> None:
        """A subscription changed on this node: queue everything until looked up again."""
        self._wanted = None

    async def observe(self, name: str, data: dict[str, Any]) -> None:
        converted = events.from_call_service(name, data)
        if converted is None:
            return
        kind, payload = converted
        if self._wanted is not None and not any(events.matches(w, kind) for w in self._wanted):
            return
        await outbox.emit_quietly(self.redis, self.stream, kind, payload,
                                  order_key=str(payload.get("call_id") or ""))

    async def step(self, block: bool = False) -> int:
        now = asyncio.get_running_loop().time()
        if self._wanted is None or now - self._looked >= self.subscriptions_s:
            self._wanted, self._looked = await self.fanout.subscribed(), now
        waiting = block and not self.sender.finished.is_set()
        moved = await self.fanout.step(int(self.poll_s * 1000) if waiting else None)
        now = asyncio.get_running_loop().time()
        if not (moved or self.sender.finished.is_set() or now - self._polled >= self.db_poll_s):
            return 0
        self._polled = now
        self.sender.finished.clear()
        return moved + await self.sender.step(await self.fanout.watermark())

    async def run(self) -> None:
        await self.fanout.ensure_group()
        # redis-py can swallow a cancellation inside a command; look before each round.
        busy = 1
        while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
            try:
                busy = await self.step(block=not busy)
            except Exception:  # Redis or the database away: try again shortly
                log.exception("webhook round failed")
                busy = 0
                await asyncio.sleep(1)

    async def close(self) -> None:
        await self.sender.drain()
