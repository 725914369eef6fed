"""From the event stream to delivery rows: one per subscription that wants the event.

Every node reads the stream in one consumer group; an entry is acknowledged only
after its deliveries are committed, and an entry a dead node read and never stored
is claimed by another (XAUTOCLAIM). Storing twice is harmless: (subscription, event)
is unique.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import Interaction, WebhookSubscription
from webhooks import events, store

log = logging.getLogger(__name__)

GROUP = "webhooks"


@dataclass(frozen=True)
class Event:
    entry_id: str
    id: str
    type: str
    at: float
    key: str
    data: dict[str, Any]

    @classmethod
    def decode(cls, entry_id: str, fields: dict[str, str]) -> Event:
        data = orjson.loads(fields["data"])
        if not isinstance(data, dict) or fields["type"] not in events.EVENT_TYPES:
            raise ValueError(f"not a webhook event: {fields.get('type')!r}")
        return cls(entry_id, fields["id"], fields["type"], float(fields["at"]),
                   fields.get("key") or fields["id"], data)

    def body(self) -> str:
        created = dt.datetime.fromtimestamp(self.at, dt.UTC).isoformat()
        return orjson.dumps({"id": self.id, "type": self.type, "created_at": created,
                             "data": self.data}).decode()


def seq(entry_id: str) -> str:
    """A stream id as a string that sorts like the id: `1700000000000-3` ->
    `01700000000000-0000000003`."""
    ms, _, n = entry_id.partition("-")
    return f"{int(ms):014d}-{int(n or 0):010d}"


def group_gone(error: ResponseError) -> bool:
    """Redis lost the stream (a flush, a failover to an empty replica): a read finds no
    group (NOGROUP), and a read blocked at that moment is let go (UNBLOCKED)."""
    return any(word in str(error) for word in ("NOGROUP", "UNBLOCKED"))


@dataclass
class FanOut:
    redis: Redis
    stream: str
    maker: async_sessionmaker[AsyncSession]
    consumer: str
    claim_idle_ms: int = 30_000
    batch: int = 200
    _claimed: float = field(default=float("-inf"), init=False)

    async def ensure_group(self) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)

    async def subscribed(self) -> list[list[str]]:
        """The event types each subscription takes."""
        async with self.maker() as session:
            return [list(s.events or []) for s in await store.active(session)]

    async def watermark(self) -> str | None:
        """Deliveries from entries before this one are all stored: a later entry's
        rows may be sent. None when no entry is in flight."""
        try:
            info = await self.redis.xpending(self.stream, GROUP)
        except ResponseError as e:
            if not group_gone(e):
                raise
            await self.ensure_group()  # Redis came back empty: nothing is in flight
            return None
        return seq(info["min"]) if info and info.get("pending") else None

    async def step(self, block_ms: int | None = None) -> int:
        """Fan out one batch; the number of entries handled. With `block_ms`, wait that
        long for a new entry when none is there (one blocked read, not a poll)."""
        try:
            entries = await self._read(block_ms)
        except ResponseError as e:
            if not group_gone(e):
                raise
            await self.ensure_group()  # Redis came back empty
            return 0
        if not entries:
            return 0
        await self._store(self._decode(entries))
        ids = [entry_id for entry_id, _ in entries]
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.xack(self.stream, GROUP, *ids)
            pipe.xdel(self.stream, *ids)
            await pipe.execute()
        return len(ids)

    async def _read(self, block_ms: int | None) -> list[tuple[str, dict[str, str]]]:
        claimed = await self._claim()
        # RESP2 with decode_responses: a list of [stream, entries] pairs.
        fresh = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]],
                     await self.redis.xreadgroup(GROUP, self.consumer, {self.stream: ">"},
                                                 count=self.batch,
                                                 block=None if claimed else block_ms))
        # A claimed entry without fields was deleted after its deliveries were stored: it is
        # acknowledged like the others.
        return list(claimed) + [e for _, items in fresh for e in items]

    async def _claim(self) -> list[tuple[str, dict[str, str]]]:
        """Entries a dead node read and never stored: they are idle for `claim_idle_ms`
        before they can be claimed, so looking twice in that time is enough."""
        now = time.monotonic()
        if now - self._claimed < self.claim_idle_ms / 2000:
            return []
        self._claimed = now
        return list((await self.redis.xautoclaim(self.stream, GROUP, self.consumer,
                                                 self.claim_idle_ms, "0-0",
                                                 count=self.batch))[1])

    def _decode(self, entries: list[tuple[str, dict[str, str]]]) -> list[Event]:
        decoded = []
        for entry_id, fields in entries:
            if not fields:
                continue
            try:
                decoded.append(Event.decode(entry_id, fields))
            except (KeyError, ValueError, orjson.JSONDecodeError) as e:
                log.warning("dropping webhook event %s: %s", entry_id, e)
        return decoded

    async def _store(self, batch: list[Event]) -> None:
        async with self.maker() as session, session.begin():
            subscriptions = await store.active(session)
            rows = []
            for event in batch:
                wanted = [s for s in subscriptions if events.matches(s.events, event.type)]
                if wanted:
                    event = await _complete(session, event)
                    rows.extend(_rows(event, wanted))
            await store.add_deliveries(session, rows)


def _rows(event: Event, subscriptions: Sequence[WebhookSubscription]) -> list[dict[str, Any]]:
    body, at = event.body(), dt.datetime.fromtimestamp(event.at, dt.UTC)
    return [{"subscription_id": s.id, "event_id": event.id, "event_type": event.type,
             "order_key": event.key[:160], "seq": seq(event.entry_id), "body": body,
             "status": store.PENDING, "attempts": 0, "next_attempt_at": at,
             "created_at": at} for s in subscriptions]


async def _complete(session: AsyncSession, event: Event) -> Event:
    """Wrap-up's disposition and notes are in the record, not the call-path event: they
    are read here, off the call path."""
    if event.type != "wrapup.done" or "call_id" not in event.data:
        return event
    row = (await session.execute(select(Interaction.disposition, Interaction.notes).where(
        Interaction.call_id == event.data["call_id"]))).first()
    if row is None:
        return event
    data = {**event.data, "disposition": row.disposition, "notes": row.notes}
    return Event(event.entry_id, event.id, event.type, event.at, event.key, data)
