"""The segmentation batch: score every customer with the value model and store it.

Reads the whole base in a handful of grouped queries, scores it in one call to
`compute_profiles` (scores are relative to the base, so they cannot be computed a
customer at a time), and writes the profiles back in bulk UPDATE batches.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tqdm import tqdm

from core.db import session_scope
from core.models import Complaint, Customer, CustomerPhone, utcnow
from core.models import Order as OrderRow
from crm.value import CustomerFacts, Order, Tier, ValueProfile, compute_profiles

log = logging.getLogger(__name__)

_BATCH = 1000
_STREAM_ROWS = 2000
# A Core executemany UPDATE, not the ORM's bulk UPDATE by primary key: that one
# fails the whole batch when a customer was deleted while we were scoring.
_customers = Customer.__table__
_UPDATE = update(_customers).where(_customers.c.id == bindparam("customer_id"))


@dataclass(frozen=True)
class SegmentReport:
    customers: int
    orders: int
    tiers: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        tiers = ", ".join(f"{t.value} {self.tiers.get(t.value, 0)}" for t in Tier)
        return f"segmented {self.customers} customers ({self.orders} orders): {tiers}"


async def segment_all(
    maker: async_sessionmaker[AsyncSession], today: dt.date | None = None, progress: bool = True
) -> SegmentReport:
    today = today or dt.date.today()
    async with session_scope(maker) as session:
        facts = await _customer_facts(session)
        orders = await _orders(session)
    # About a second of pure Python per 100k orders: keep it off the event loop.
    profiles = await asyncio.to_thread(compute_profiles, facts, orders, today)
    await _store(maker, list(profiles.values()), progress)
    tiers = Counter(p.tier.value for p in profiles.values())
    report = SegmentReport(len(profiles), len(orders), dict(tiers))
    log.info("segmented %d customers (%d orders): %s", report.customers, report.orders, tiers)
    return report


async def _customer_facts(session: AsyncSession) -> list[CustomerFacts]:
    with_phone = set(await session.scalars(select(CustomerPhone.customer_id).distinct()))
    complaints = dict((await session.execute(
        select(Complaint.customer_id, func.count())
        .where(Complaint.closed_at.is_(None))
        .group_by(Complaint.customer_id)
    )).all())
    rows = await session.execute(select(Customer.id, Customer.email))
    return [
        CustomerFacts(cid, bool(email) or cid in with_phone, complaints.get(cid, 0))
        for cid, email in rows
    ]


async def _orders(session: AsyncSession) -> list[Order]:
    result = await session.stream(
        select(OrderRow.customer_id, OrderRow.ordered_on, OrderRow.amount, OrderRow.cost)
        .execution_options(yield_per=_STREAM_ROWS)
    )
    orders = []
    async for rows in result.partitions():  # a row at a time costs a greenlet switch each
        orders.extend(Order(cid, day, float(amt), float(cost)) for cid, day, amt, cost in rows)
    return orders


def _values(profile: ValueProfile, now: dt.datetime) -> dict[str, Any]:
    return {
        "customer_id": profile.customer_id,
        "tier": profile.tier.value,
        "abc_class": profile.abc_class,
        "rfm_score": profile.rfm_score,
        "rfm_segment": profile.rfm_segment,
        "clv": profile.clv,
        "clv_class": profile.clv_class,
        "lifecycle_stage": profile.lifecycle_stage,
        "churn_risk": profile.churn_risk,
        "value_updated_at": now,
    }


async def _store(
    maker: async_sessionmaker[AsyncSession], profiles: list[ValueProfile], progress: bool
) -> None:
    """Bulk UPDATE by primary key, a transaction per batch, so the live call path
    is never kept waiting on one long write."""
    now = utcnow()
    it = iter(profiles)
    with tqdm(total=len(profiles), unit="customer", desc="segment", disable=not progress) as bar:
        while batch := list(islice(it, _BATCH)):
            async with session_scope(maker) as session:
                await session.execute(_UPDATE, [_values(p, now) for p in batch])
            bar.update(len(batch))
