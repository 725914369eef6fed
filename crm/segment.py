"""The segmentation batch: score every customer with the value model and store it.

Reads the base as columns (crm/segment_load.py), scores it in one call to the engine
(scores are relative to the base, so they cannot be computed a customer at a time),
writes the profiles back in batches (crm/segment_store.py) and records the run
(policy version, the base's lines and what it measured) in `value_runs`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tqdm import tqdm

from core.db import session_scope
from core.models import Complaint, Customer, ValueRun, utcnow
from core.models import Order as OrderRow
from crm.policy import ValuePolicy, default_policy
from crm.segment_load import load_facts, load_orders
from crm.segment_store import store
from crm.value_classes import Tier
from crm.value_columns import FactColumns, OrderColumns
from crm.value_engine import TIERS, score
from crm.value_extras import BaseSummary
from crm.value_lines import BaseLines
from crm.value_output import churn_warnings, summary

log = logging.getLogger(__name__)


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
    async with session_scope(maker) as session:
        mark = await _mark(session)
        facts = await load_facts(session, _window_start(today, policy), _until(today))
        orders = await load_orders(session, facts.ids, today, progress)
    return await _score_and_store(maker, facts, orders, today, policy, mark, "full", progress)


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
        ids = sorted(await _changed_since(session, last))
        facts = await load_facts(session, _window_start(today, policy), _until(today), ids)
        orders = await load_orders(session, facts.ids, today, False, subset=True)
    lines = BaseLines.from_json(last.summary["lines"])
    return await _score_and_store(maker, facts, orders, today, policy, mark, "incremental",
                                  progress, lines)


async def _score_and_store(
    maker: async_sessionmaker[AsyncSession], facts: FactColumns, orders: OrderColumns,
    today: dt.date, policy: ValuePolicy, mark: tuple[int, dt.datetime], kind: str,
    progress: bool, lines: BaseLines | None = None,
) -> SegmentReport:
    # Vectorised, but seconds of CPU over a large base: keep it off the event loop.
    with tqdm(total=2, unit="step", desc="score", disable=not progress) as bar:
        scored = await asyncio.to_thread(score, facts, orders, today, policy, lines)
        bar.update()
        warnings = await asyncio.to_thread(churn_warnings, scored, policy.churn)
        bar.update()
    await store(maker, scored, warnings, policy, progress)
    base = await asyncio.to_thread(summary, scored)
    customers = len(scored.facts)
    await _record_run(maker, base, scored.lines, customers, today, policy, len(orders), mark,
                      kind)
    tiers = Counter({t.value: int(c) for t, c in zip(
        TIERS, np.bincount(scored.tier, minlength=len(TIERS)).tolist(), strict=True) if c})
    report = SegmentReport(customers, len(orders), dict(tiers))
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


def _until(today: dt.date) -> dt.datetime:
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC)


async def _record_run(maker: async_sessionmaker[AsyncSession], base: BaseSummary,
                      lines: BaseLines, customers: int, today: dt.date, policy: ValuePolicy,
                      orders: int, mark: tuple[int, dt.datetime], kind: str) -> None:
    """The run, with the lines and the data mark the next incremental run starts from."""
    summary = {**dataclasses.asdict(base), "kind": kind,
               "lines": lines.to_json(), "max_order_id": mark[0],
               "started_at": mark[1].isoformat()}
    async with session_scope(maker) as session:
        session.add(ValueRun(as_of=today, policy_version=policy.version,
                             customers=customers, orders=orders,
                             summary=_jsonable(summary)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
