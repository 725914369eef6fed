"""Subscriptions and deliveries in the database.

A delivery is claimed by a conditional update of its lease (one winner across nodes);
a node that dies holding one loses the lease and another node sends it again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, and_, case, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.models import WebhookDelivery, WebhookSubscription
from webhooks.exceptions import NoSuchDelivery, NoSuchSubscription

D = WebhookDelivery
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


def subscription_dict(s: WebhookSubscription) -> dict[str, Any]:
    return {"id": s.id, "url": s.url, "events": list(s.events), "active": s.active,
            "description": s.description, "created_by": s.created_by,
            "created_at": s.created_at.isoformat()}


def delivery_dict(d: WebhookDelivery) -> dict[str, Any]:
    return {"id": d.id, "event_id": d.event_id, "event_type": d.event_type,
            "status": d.status, "attempts": d.attempts, "last_status": d.last_status,
            "last_error": d.last_error, "created_at": d.created_at.isoformat(),
            "next_attempt_at": d.next_attempt_at.isoformat() if d.status == PENDING else None,
            "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None}


async def get(session: AsyncSession, subscription_id: int) -> WebhookSubscription:
    found = await session.get(WebhookSubscription, subscription_id)
    if found is None:
        raise NoSuchSubscription(subscription_id)
    return found


async def active(session: AsyncSession) -> Sequence[WebhookSubscription]:
    """Subscriptions that take new events: paused ones do too, and hold them."""
    return (await session.scalars(select(WebhookSubscription))).all()


async def add_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert, skipping an event a subscription already has (a fan-out done twice)."""
    if not rows:
        return
    bind = session.bind
    assert bind is not None  # the app's sessions are always bound to its engine
    insert = pg_insert if bind.dialect.name == "postgresql" else sqlite_insert
    await session.execute(insert(D).values(rows).on_conflict_do_nothing(
        index_elements=["subscription_id", "event_id"]))


def _first_of_its_call() -> Any:
    """A pending delivery with no earlier pending one of its call for its subscription."""
    earlier = aliased(D)
    return ~exists().where(and_(earlier.subscription_id == D.subscription_id,
                                earlier.order_key == D.order_key, earlier.status == PENDING,
                                earlier.seq < D.seq))


def due(now: dt.datetime, before_seq: str | None, limit: int) -> Any:
    """Deliveries to send now: pending, due, not leased, of an active subscription, and
    the oldest pending one of their call (so a call's events arrive in order)."""
    stmt = select(D.id).join(WebhookSubscription, WebhookSubscription.id == D.subscription_id)
    stmt = stmt.where(
        D.status == PENDING, D.next_attempt_at <= now, WebhookSubscription.active.is_(True),
        (D.lease_until.is_(None)) | (D.lease_until < now), _first_of_its_call())
    if before_seq is not None:
        stmt = stmt.where(D.seq < before_seq)
    return stmt.order_by(D.next_attempt_at, D.seq).limit(limit)


def next_due() -> Any:
    """The earliest time a delivery `due` may return becomes due: its retry time, or the
    end of its lease when a sender holds it (a later event of a call waits for the
    earlier one, so only the first pending one of each call counts)."""
    at = case((D.lease_until > D.next_attempt_at, D.lease_until), else_=D.next_attempt_at)
    return select(func.min(at)).join(
        WebhookSubscription, WebhookSubscription.id == D.subscription_id).where(
        D.status == PENDING, WebhookSubscription.active.is_(True), _first_of_its_call())


async def claim(session: AsyncSession, delivery_id: int, now: dt.datetime,
                lease_until: dt.datetime) -> bool:
    result = cast(CursorResult[Any], await session.execute(
        update(D).where(D.id == delivery_id, D.status == PENDING,
                        (D.lease_until.is_(None)) | (D.lease_until < now))
        .values(lease_until=lease_until).execution_options(synchronize_session=False)))
    return result.rowcount == 1


async def finish(session: AsyncSession, delivery_id: int, **values: Any) -> None:
    await session.execute(update(D).where(D.id == delivery_id).values(
        lease_until=None, **values).execution_options(synchronize_session=False))


async def log(session: AsyncSession, subscription_id: int, status: str | None,
              limit: int, before_id: int | None) -> list[WebhookDelivery]:
    stmt = select(D).where(D.subscription_id == subscription_id)
    if status is not None:
        stmt = stmt.where(D.status == status)
    if before_id is not None:
        stmt = stmt.where(D.id < before_id)
    return list(await session.scalars(stmt.order_by(D.id.desc()).limit(limit)))


async def replay(session: AsyncSession, subscription_id: int, delivery_id: int | None,
                 now: dt.datetime) -> int:
    """Dead deliveries back to pending (one, or all of the subscription's); the count."""
    stmt = update(D).where(D.subscription_id == subscription_id, D.status == DEAD)
    if delivery_id is not None:
        stmt = stmt.where(D.id == delivery_id)
    result = cast(CursorResult[Any], await session.execute(stmt.values(
        status=PENDING, attempts=0, next_attempt_at=now, created_at=now, lease_until=None,
    ).execution_options(synchronize_session=False)))
    if delivery_id is not None and result.rowcount == 0:
        raise NoSuchDelivery(delivery_id)
    return result.rowcount
