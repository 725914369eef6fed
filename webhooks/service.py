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
    poll_s: float = 0.2
    # Due deliveries are looked for in the database at once after a fan-out or a send,
    # otherwise (retries coming due) this often: the database is shared with calls.
    db_poll_s: float = 1.0
    _polled: float = field(default=float("-inf"), init=False)

    async def observe(self, name: str, data: dict[str, Any]) -> None:
        converted = events.from_call_service(name, data)
        if converted is None:
            return
        kind, payload = converted
        await outbox.emit_quietly(self.redis, self.stream, kind, payload,
                                  order_key=str(payload.get("call_id") or ""))

    async def step(self) -> int:
        moved = await self.fanout.step()
        now = asyncio.get_running_loop().time()
        if not (moved or self.sender.finished.is_set() or now - self._polled >= self.db_poll_s):
            return 0
        self._polled = now
        self.sender.finished.clear()
        return moved + await self.sender.step(await self.fanout.watermark())

    async def run(self) -> None:
        await self.fanout.ensure_group()
        # redis-py can swallow a cancellation inside a command; look before each round.
        while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
            try:
                busy = await self.step()
            except Exception:  # Redis or the database away: try again shortly
                log.exception("webhook round failed")
                busy = 0
                await asyncio.sleep(1)
            if not busy:
                await asyncio.sleep(self.poll_s)

    async def close(self) -> None:
        await self.sender.drain()
