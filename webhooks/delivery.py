"""Sending deliveries: signed POSTs, retried with exponential backoff, then dead-lettered.

Each node claims due deliveries (a lease in the database, one winner) and sends them
in tasks of their own, at most `concurrency` at once, so a slow receiver holds one
slot, never the loop, and never the call path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import WebhookDelivery, WebhookSubscription
from webhooks import signing, store, urls
from webhooks.exceptions import BadWebhook

log = logging.getLogger(__name__)

USER_AGENT = "callcenter-webhooks/1"


@dataclass(frozen=True)
class Policy:
    timeout_s: float = 10.0
    retry_for: dt.timedelta = dt.timedelta(hours=24)
    backoff_s: float = 10.0
    backoff_max_s: float = 3600.0
    concurrency: int = 8

    def delay(self, attempts: int) -> dt.timedelta:
        return dt.timedelta(seconds=min(self.backoff_s * 2 ** (attempts - 1),
                                        self.backoff_max_s))

    @property
    def lease(self) -> dt.timedelta:
        """Longer than any send: a lease that runs out means the sender died."""
        return dt.timedelta(seconds=self.timeout_s * 2 + 5)


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status: int | None = None
    error: str | None = None


@dataclass
class Sender:
    maker: async_sessionmaker[AsyncSession]
    http: aiohttp.ClientSession
    policy: Policy
    own: Iterable[tuple[str, int]] = ()
    clock: Callable[[], float] = time.time
    inflight: set[asyncio.Task[None]] = field(default_factory=set)
    on_finished: Callable[[], None] = lambda: None  # a send ended: look for the next

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    async def step(self, before_seq: str | None) -> int:
        """Claim what is due (as many as there are free slots) and start sending it."""
        free = self.policy.concurrency - len(self.inflight)
        if free <= 0:
            return 0
        now = self.now()
        async with self.maker() as session:
            due = list(await session.scalars(store.due(now, before_seq, free)))
        started = 0
        for delivery_id in due:
            async with self.maker() as session, session.begin():
                won = await store.claim(session, delivery_id, now, now + self.policy.lease)
            if won:
                task = asyncio.create_task(self.send(delivery_id), name="webhook-send")
                self.inflight.add(task)
                task.add_done_callback(self.inflight.discard)
                started += 1
        return started

    async def next_due(self) -> float | None:
        """When the next pending delivery of an active subscription may be sent (its
        retry time, or its lease's end), as a `clock()` time; None when there is none."""
        async with self.maker() as session:
            due: dt.datetime | None = await session.scalar(store.next_due())
        if due is None:
            return None
        if due.tzinfo is None:  # SQLite keeps no zone: the stored times are UTC
            due = due.replace(tzinfo=dt.UTC)
        return due.timestamp()

    async def send(self, delivery_id: int) -> None:
        try:
            async with self.maker() as session:
                row = (await session.execute(
                    select(WebhookDelivery, WebhookSubscription)
                    .join(WebhookSubscription,
                          WebhookSubscription.id == WebhookDelivery.subscription_id)
                    .where(WebhookDelivery.id == delivery_id))).first()
            if row is None:
                return  # the subscription was deleted meanwhile
            delivery, subscription = row
            attempt = await self.post(subscription, delivery)
            await self.record(delivery, attempt)
        except Exception:
            # The lease runs out and the delivery is sent again.
            log.exception("webhook delivery %d failed to run", delivery_id)
        finally:
            self.on_finished()

    async def post(self, subscription: WebhookSubscription,
                   delivery: WebhookDelivery) -> Attempt:
        body = delivery.body.encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   signing.ID_HEADER: delivery.event_id,
                   signing.TYPE_HEADER: delivery.event_type,
                   signing.HEADER: signing.header(subscription.secret, int(time.time()), body)}
        try:
            # Again at each send: a name may since resolve somewhere it must not.
            await urls.check(subscription.url, self.own)
            async with self.http.post(
                    subscription.url, data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.policy.timeout_s)) as response:
                await response.content.read(4096)
                if 200 <= response.status < 300:
                    return Attempt(True, response.status)
                return Attempt(False, response.status, f"HTTP {response.status}")
        except TimeoutError:
            return Attempt(False, None, f"no answer within {self.policy.timeout_s:g} s")
        except (aiohttp.ClientError, BadWebhook, OSError) as e:
            return Attempt(False, None, f"{type(e).__name__}: {e}"[:500])

    async def record(self, delivery: WebhookDelivery, attempt: Attempt) -> None:
        now, attempts = self.now(), delivery.attempts + 1
        values: dict[str, object] = {"attempts": attempts, "last_status": attempt.status,
                                     "last_error": attempt.error}
        if attempt.ok:
            values.update(status=store.DELIVERED, delivered_at=now)
        else:
            retry_at = now + self.policy.delay(attempts)
            if retry_at - delivery.created_at > self.policy.retry_for:
                values["status"] = store.DEAD
                log.warning("webhook %s to subscription %d dead after %d attempts: %s",
                            delivery.event_id, delivery.subscription_id, attempts, attempt.error)
            values["next_attempt_at"] = retry_at
        async with self.maker() as session, session.begin():
            await store.finish(session, delivery.id, **values)

    async def drain(self) -> None:
        """Cancel sends in flight (at shutdown): their leases run out, another node sends."""
        for task in list(self.inflight):
            task.cancel()
        if self.inflight:
            await asyncio.wait(self.inflight, timeout=2)
