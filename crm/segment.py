"""The segmentation batch: score every customer with the value model and store it.

Reads the whole base in a handful of grouped queries, scores it in one call to
`value_model` (scores are relative to the base, so they cannot be computed a
customer at a time), writes the profiles back in bulk UPDATE batches and records the
run (policy version and what it measured of the base) in `value_runs`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from sqlalchemy import Table, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tqdm import tqdm

from core.db import session_scope
from core.models import (
    Complaint,
    Customer,
    CustomerPhone,
    Interaction,
    UTCDateTime,
    ValueRun,
    utcnow,
)
from core.models import Order as OrderRow
from crm.open_complaints import is_open_complaint
from crm.policy import ValuePolicy, default_policy
from crm.satisfaction import customer_satisfaction_query
from crm.value import CustomerFacts, Order, Tier, ValueModel, ValueProfile, value_model
from crm.value_lines import BaseLines

log = logging.getLogger(__name__)

_BATCH = 1000
_STREAM_ROWS = 10_000
_IN_CHUNK = 5000  # ids per IN (...) query of an incremental run
# A Core executemany UPDATE, not the ORM's bulk UPDATE by primary key: that one
# fails the whole batch when a customer was deleted while we were scoring.
_customers: Table = Customer.__table__  # type: ignore[assignment]
_UPDATE = update(_customers).where(_customers.c.id == bindparam("customer_id"))
# A tier that changes is noted first, in the same transaction (reports: tier movements).
_TIER_CHANGE = text(
    "INSERT INTO customer_tier_changes (customer_id, at, from_tier, to_tier) "
    "SELECT id, :value_updated_at, tier, CAST(:tier AS VARCHAR(16)) FROM customers "
    "WHERE id = :customer_id AND tier <> CAST(:tier AS VARCHAR(16))"
).bindparams(bindparam("value_updated_at", type_=UTCDateTime()))


@dataclass(frozen=True)
class SegmentReport:
    customers: int
    orders: int
    tiers: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        tiers = ", ".join(f"{t.value} {self.tiers.get(t.value, 0)}" for t in Tier)
        return f"segmented {self.customers} customers ({self.orders} orders): {tiers}"


async def segment_all(
    maker: async_sessionmaker[AsyncSession], today: dt.date | None = None, progress: bool = True,
    policy: ValuePolicy | None = None,
) -> SegmentReport:
    today = today or dt.date.today()
    policy = policy or default_policy()
    since = _window_start(today, policy)
    until = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC)
    async with session_scope(maker) as session:
        mark = await _mark(session)
        facts = await _customer_facts(session, since, until)
        orders = await _orders(session, progress)
    # Pure Python over the whole base: keep it off the event loop.
    model = await asyncio.to_thread(value_model, facts, orders, today, policy)
    return await _finish(maker, model, today, policy, len(orders), mark, "full", progress)


async def segment_changed(
    maker: async_sessionmaker[AsyncSession], today: dt.date | None = None, progress: bool = True,
    policy: ValuePolicy | None = None,
) -> SegmentReport:
    """Re-score only the customers whose orders or complaints changed (or who are new)
    since the last run, against the lines of the last full run under this policy; a
    full run when there is none. Unchanged customers keep their stored profile."""
    today = today or dt.date.today()
    policy = policy or default_policy()
    async with session_scope(maker) as session:
        last = await _last_run_with_lines(session, policy.version)
    if last is None:
        return await segment_all(maker, today, progress, policy)
    async with session_scope(maker) as session:
        mark = await _mark(session)
        ids = await _changed_since(session, last)
        lines = BaseLines.from_json(last.summary["lines"])
        since = _window_start(today, policy)
        until = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC)
        facts, orders = [], []
        for chunk in _chunks(sorted(ids), _IN_CHUNK):
            facts += await _customer_facts(session, since, until, chunk)
            orders += await _orders(session, False, chunk)
    model = await asyncio.to_thread(value_model, facts, orders, today, policy, lines)
    return await _finish(maker, model, today, policy, len(orders), mark, "incremental", progress)


async def _finish(maker: async_sessionmaker[AsyncSession], model: ValueModel, today: dt.date,
                  policy: ValuePolicy, orders: int, mark: tuple[int, dt.datetime], kind: str,
                  progress: bool) -> SegmentReport:
    await _store(maker, list(model.profiles.values()), policy, progress)
    await _record_run(maker, model, today, policy, orders, mark, kind)
    tiers = Counter(p.tier.value for p in model.profiles.values())
    report = SegmentReport(len(model.profiles), orders, dict(tiers))
    log.info("segmented (%s) %d customers (%d orders): %s", kind, report.customers,
             report.orders, tiers)
    return report


async def _mark(session: AsyncSession) -> tuple[int, dt.datetime]:
    """Where the data stood when a run started: its newest order id and the time."""
    return int(await session.scalar(select(func.max(OrderRow.id))) or 0), utcnow()


async def _last_run_with_lines(session: AsyncSession, version: str) -> ValueRun | None:
    runs = await session.scalars(select(ValueRun).where(ValueRun.policy_version == version)
                                 .order_by(ValueRun.id.desc()).limit(50))
    return next((r for r in runs if "lines" in (r.summary or {})), None)


async def _changed_since(session: AsyncSession, run: ValueRun) -> set[str]:
    """Customers with an order added, a complaint opened or moved, or who are new."""
    started = dt.datetime.fromisoformat(run.summary["started_at"])
    max_order = int(run.summary["max_order_id"])
    ids = set(await session.scalars(select(OrderRow.customer_id).distinct()
                                    .where(OrderRow.id > max_order)))
    ids |= set(await session.scalars(select(Complaint.customer_id).distinct().where(
        (Complaint.updated_at >= started) | (Complaint.created_at >= started))))
    ids |= set(await session.scalars(select(Customer.id).where(Customer.created_at >= started)))
    return ids


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[k:k + size] for k in range(0, len(items), size)]


def _window_start(today: dt.date, policy: ValuePolicy) -> dt.datetime | None:
    if policy.analysis.whole_history:
        return None
    start = today - dt.timedelta(days=policy.analysis.period_days)
    return dt.datetime.combine(start, dt.time(), dt.UTC)


async def _customer_facts(session: AsyncSession, since: dt.datetime | None,
                          until: dt.datetime, ids: list[str] | None = None
                          ) -> list[CustomerFacts]:
    """Contact, open complaints, and the period's cost to serve and satisfaction; of
    every customer, or of `ids` only."""
    phones = select(CustomerPhone.customer_id).distinct()
    open_q = (select(Complaint.customer_id, func.count())
              .where(is_open_complaint()).group_by(Complaint.customer_id))
    handled = (select(Complaint.customer_id, func.count())
               .where(Complaint.created_at < until).group_by(Complaint.customer_id))
    talk = (select(Interaction.customer_id, func.sum(Interaction.talk_s))
            .where(Interaction.customer_id.is_not(None), Interaction.offered_at < until)
            .group_by(Interaction.customer_id))
    csat_q = customer_satisfaction_query(since, until)
    people = select(Customer.id, Customer.email)
    if since is not None:
        handled = handled.where(Complaint.created_at >= since)
        talk = talk.where(Interaction.offered_at >= since)
    if ids is not None:
        phones = phones.where(CustomerPhone.customer_id.in_(ids))
        open_q, handled = (q.where(Complaint.customer_id.in_(ids)) for q in (open_q, handled))
        talk, csat_q = (q.where(Interaction.customer_id.in_(ids)) for q in (talk, csat_q))
        people = people.where(Customer.id.in_(ids))
    with_phone = set(await session.scalars(phones))
    open_ = await _counts(session, open_q)
    complaints = await _counts(session, handled)
    seconds = await _counts(session, talk)
    csat = await _counts(session, csat_q)
    rows = await session.execute(people)
    return [
        CustomerFacts(cid, bool(email) or cid in with_phone, int(open_.get(cid, 0)),
                      float(seconds.get(cid) or 0.0) / 60, int(complaints.get(cid, 0)),
                      float(csat[cid]) if csat.get(cid) is not None else None)
        for cid, email in rows
    ]


async def _counts(session: AsyncSession, query: Any) -> dict[str, Any]:
    return {k: v for k, v in (await session.execute(query)).all()}


async def _orders(session: AsyncSession, progress: bool,
                  ids: list[str] | None = None) -> list[Order]:
    query = select(OrderRow.customer_id, OrderRow.ordered_on, OrderRow.amount, OrderRow.cost)
    if ids is not None:
        query = query.where(OrderRow.customer_id.in_(ids))
    total = 0 if not progress else (
        await session.scalar(select(func.count()).select_from(OrderRow)) or 0)
    result = await session.stream(query.execution_options(yield_per=_STREAM_ROWS))
    orders: list[Order] = []
    with tqdm(total=total, unit="order", desc="load", disable=not progress) as bar:
        async for rows in result.partitions():  # a row at a time costs a greenlet switch
            orders.extend(Order(cid, day, float(amt), float(cost))
                          for cid, day, amt, cost in rows)
            bar.update(len(rows))
    return orders


def _values(profile: ValueProfile, now: dt.datetime, version: str) -> dict[str, Any]:
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
        "current_value": profile.current_value,
        "service_cost": profile.service_cost,
        "value_cost_type": profile.value_cost_type or None,
        "relationship_days": profile.relationship_days,
        "satisfaction": profile.satisfaction,
        "churn_reasons": list(profile.churn_reasons),
        "value_policy_version": version,
        "value_updated_at": now,
    }


async def _store(
    maker: async_sessionmaker[AsyncSession], profiles: list[ValueProfile],
    policy: ValuePolicy, progress: bool,
) -> None:
    """Bulk UPDATE by primary key, a transaction per batch, so the live call path
    is never kept waiting on one long write."""
    now = utcnow()
    it = iter(profiles)
    with tqdm(total=len(profiles), unit="customer", desc="store", disable=not progress) as bar:
        while batch := list(islice(it, _BATCH)):
            async with session_scope(maker) as session:
                values = [_values(p, now, policy.version) for p in batch]
                await session.execute(_TIER_CHANGE, [
                    {k: v[k] for k in ("customer_id", "tier", "value_updated_at")}
                    for v in values])
                await session.execute(_UPDATE, values)
            bar.update(len(batch))


async def _record_run(maker: async_sessionmaker[AsyncSession], model: ValueModel,
                      today: dt.date, policy: ValuePolicy, orders: int,
                      mark: tuple[int, dt.datetime], kind: str) -> None:
    """The run, with the lines and the data mark the next incremental run starts from."""
    summary = {**dataclasses.asdict(model.summary), "kind": kind,
               "lines": model.lines.to_json(), "max_order_id": mark[0],
               "started_at": mark[1].isoformat()}
    async with session_scope(maker) as session:
        session.add(ValueRun(as_of=today, policy_version=policy.version,
                             customers=len(model.profiles), orders=orders,
                             summary=_jsonable(summary)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
