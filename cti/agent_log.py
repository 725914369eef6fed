"""The agent-log consumer: moves logged agent state changes from a Redis stream into the
database, a batch at a time, for reports.

A consumer group shares the work between nodes; entries are acknowledged and deleted only
after they are stored. It survives Redis errors (a failover's READONLY, a restart): it
logs them and tries again on the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from core import writer
from cti import records

log = logging.getLogger(__name__)

GROUP = "persist"

Entry = tuple[str, dict[str, str]]


@dataclass
class AgentLogConsumer:
    redis: Redis
    stream: str
    writer: writer.RecordWriter
    consumer: str  # this node's name in the group
    claim_idle_ms: int = 30_000  # an entry taken this long ago and not stored is claimed
    _claimed: float = field(default=float("-inf"), init=False)

    async def run(self, interval: float = 1.0, batch: int = 500) -> None:
        # redis-py can swallow a cancellation inside a command; look before each round.
        while not _cancelling():
            try:
                await self.persist_batch(batch)
            except ResponseError as e:
                if "NOGROUP" in str(e):
                    await self._create_group()
                    continue
                log.warning("agent state log not persisted yet: %s", e)
            except Exception as e:
                log.warning("agent state log not persisted yet: %s", e)
            await asyncio.sleep(interval)

    async def _create_group(self) -> None:
        """First run, or Redis came back empty: (re)create the group."""
        with contextlib.suppress(ResponseError):
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)

    async def persist_batch(self, batch: int = 500) -> int:
        """Store one batch; returns how many entries were stored."""
        claimed = await self._claim(batch)
        fresh = cast(list[tuple[str, list[Entry]]], await self.redis.xreadgroup(
            GROUP, self.consumer, {self.stream: ">"}, count=batch))
        entries = list(claimed) + [e for _, items in fresh for e in items]
        if not entries:
            return 0
        await self.writer.write([_insert(fields) for _, fields in entries])
        ids = [entry_id for entry_id, _ in entries]
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.xack(self.stream, GROUP, *ids)
            pipe.xdel(self.stream, *ids)
            await pipe.execute()
        return len(entries)


    async def _claim(self, batch: int) -> list[Entry]:
        """Entries a node took and never stored (it died). They are claimable only after
        `claim_idle_ms`, so looking twice in that time is enough (not every round: each
        look is a round trip per node, idle or not)."""
        now = time.monotonic()
        if now - self._claimed < self.claim_idle_ms / 2000:
            return []
        self._claimed = now
        # Redis 6 answers two fields, 7 three.
        return list((await self.redis.xautoclaim(self.stream, GROUP, self.consumer,
                                                 self.claim_idle_ms, "0-0", count=batch))[1])


def _insert(f: dict[str, Any]) -> writer.Op:
    return writer.Insert("agent_state_changes", {
        "agent_id": int(f["agent_id"]), "state": f["state"], "reason": f["reason"] or None,
        "at": records.at(float(f["at"]))})


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
