"""The center's configuration, applied on every node at once.

A change is stored, counted (the version in Redis), and announced on the admin channel;
each node loads the configuration again (queues, tier boosts, the routing policy, the
codes agents pick, the wallboard's targets). A node that missed the announcement (a
pub/sub outage) notices the version moved within `CHECK_S`, and the version guard on
agents' pools (routing/admin_steps.py) keeps a node that has not reloaded yet from writing
old pools meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.bus import Bus
from core.codes import DISPOSITION, NOT_READY, Codes
from core.keys import Keys
from core.models import ReasonCode
from core.redisconn import OUTAGES
from core.settings import Settings
from routing.directory import AgentDirectory

log = logging.getLogger(__name__)
_OUTAGES: tuple[type[BaseException], ...] = (*OUTAGES, DBAPIError)

# How often a node compares its configuration's version with the latest.
CHECK_S = 5.0


async def load_codes(session: AsyncSession, settings: Settings) -> Codes:
    rows = (await session.scalars(select(ReasonCode).order_by(
        ReasonCode.kind, ReasonCode.position, ReasonCode.code))).all()
    lists: dict[str, list[str]] = {NOT_READY: [], DISPOSITION: []}
    for row in rows:
        lists.setdefault(row.kind, []).append(row.code)
    return Codes(tuple(lists[NOT_READY]) or settings.not_ready_reasons,
                 tuple(lists[DISPOSITION]) or settings.dispositions,
                 {(r.kind, r.code): r.label for r in rows if r.label})


@dataclass
class LiveConfig:
    maker: async_sessionmaker[AsyncSession]
    settings: Settings
    keys: Keys
    bus: Bus
    directory: AgentDirectory
    codes: Codes
    calls: Any  # CallService: its wrap-up time per queue
    wallboard: Any  # Wallboard: its service-level targets per queue
    _due: asyncio.Event = field(default_factory=asyncio.Event)

    async def reload(self) -> None:
        """Load everything again and apply it to this node's parts."""
        await self.directory.load_queues()
        async with self.maker() as session:
            codes = await load_codes(session, self.settings)
        self.codes.replace(codes)
        self.calls.wrap_up_by_queue = {q.name: float(q.wrap_up_s)
                                       for q in self.directory.queue_rows
                                       if q.wrap_up_s is not None}
        await self.wallboard.refresh()
        log.info("center configuration version %s loaded", self.directory.version)

    async def announce(self, version: str) -> None:
        await self.bus.publish(self.keys.admin_channel, {"version": version})

    def _heard(self, message: dict[str, Any]) -> None:
        if str(message.get("version")) != self.directory.version:
            self._due.set()

    async def _resubscribed(self) -> None:
        self._due.set()

    async def run(self) -> None:
        """Reload when told, or when the version moved without a word (a lost message)."""
        await self.bus.subscribe(self.keys.admin_channel, self._heard)
        self.bus.on_resubscribed(self._resubscribed)
        admin_steps = self.directory.admin_steps
        try:
            while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                try:
                    async with asyncio.timeout(CHECK_S):
                        await self._due.wait()
                except TimeoutError:
                    pass
                self._due.clear()
                try:
                    if admin_steps is None or await admin_steps.version() != self.directory.version:
                        await self.reload()
                except _OUTAGES as e:
                    log.warning("could not load the center's configuration: %s", e)
                    self._due.set()
                    await asyncio.sleep(1)
        finally:
            self.bus.forget(self._resubscribed)
            await self.bus.unsubscribe(self.keys.admin_channel, self._heard)
