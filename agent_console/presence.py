"""An agent whose console is gone stops being offered calls.

Each node holds a lease for every agent connected to it: an `away` timer in the
shared timer set (core/timers.py), pushed `away_s` into the future when the
agent connects and every third of `away_s` while it stays. A console that closes,
or a node that dies with its consoles, stops the pushing; the timer then fires on
whichever node polls, and the call service puts an available agent in not-ready
with reason `disconnected` (cti/service.py). Several consoles of one agent on
several nodes all push the same timer, so it fires only when the last one is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from core.timers import Timers
from cti.service import away_timer

log = logging.getLogger(__name__)


@dataclass
class Presence:
    timers: Timers
    away_s: float
    connected: Counter[int]  # consoles on this node, by agent (shared with recovery)
    clock: Callable[[], float]

    async def renew(self, agent_ids: Iterable[int]) -> None:
        due = self.clock() + self.away_s
        await self.timers.schedule_many({away_timer(agent_id): due for agent_id in agent_ids})

    async def run(self) -> None:
        """Renew the leases of the agents connected here until cancelled."""
        while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
            await asyncio.sleep(self.away_s / 3)
            try:
                await self.renew([a for a, n in self.connected.items() if n > 0])
            except Exception as e:  # a Redis outage: the next round tries again
                log.warning("console leases not renewed: %s", e)

