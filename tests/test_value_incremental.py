"""Incremental re-segmentation: only customers whose orders or complaints changed since
the last run are re-scored, against the lines of the last full run."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from core import db
from core.models import Complaint, Customer, ValueRun
from core.models import Order as OrderRow
from crm.segment import segment_all, segment_changed
from crm.value import CustomerFacts, Order, value_model

TODAY = dt.date(2025, 3, 1)


async def _fill(sessions, n: int = 40) -> None:
    async with db.session_scope(sessions) as session:
        session.add_all(Customer(id=f"c{k:02d}", name=f"c{k:02d}") for k in range(n))
        await session.flush()
        session.add_all(OrderRow(customer_id=f"c{k:02d}",
                                 ordered_on=TODAY - dt.timedelta(days=10 + 30 * j),
                                 amount=100.0 * (k + 1), cost=50.0 * (k + 1))
                        for k in range(n) for j in range(k % 5 + 1))


async def _stamps(sessions) -> dict[str, dt.datetime]:
    async with db.session_scope(sessions) as session:
        rows = await session.execute(select(Customer.id, Customer.value_updated_at))
        return dict(rows.all())


async def test_nightly_run_rescores_only_changed_customers(sessions):
    await _fill(sessions)
    await segment_all(sessions, TODAY, progress=False)
    before = await _stamps(sessions)
    async with db.session_scope(sessions) as session:
        session.add(OrderRow(customer_id="c00", ordered_on=TODAY, amount=9000.0, cost=100.0))
        session.add(Complaint(customer_id="c05", category="delivery"))
        session.add(Customer(id="new", name="new"))

    report = await segment_changed(sessions, TODAY, progress=False)

    after = await _stamps(sessions)
    changed = {c for c in after if after[c] != before.get(c)}
    assert changed == {"c00", "c05", "new"}
    assert report.customers == 3
    async with db.session_scope(sessions) as session:
        c00 = await session.get(Customer, "c00")
        kinds = [r.summary["kind"] for r in await session.scalars(
            select(ValueRun).order_by(ValueRun.id))]
    assert c00.abc_class == "A"  # 9,000 profit is above the last full run's A line
    assert kinds == ["full", "incremental"]
    assert (await segment_changed(sessions, TODAY, progress=False)).customers == 0


async def test_without_a_full_run_the_first_nightly_run_is_a_full_one(sessions):
    await _fill(sessions, 5)
    report = await segment_changed(sessions, TODAY, progress=False)
    assert report.customers == 5


def test_scoring_against_the_base_lines_reproduces_the_full_runs_classes():
    orders = [Order(f"c{k:02d}", TODAY - dt.timedelta(days=10 + 30 * j), 100.0 * (k + 1),
                    50.0 * (k + 1)) for k in range(40) for j in range(k % 5 + 1)]
    full = value_model([], orders, TODAY)
    for cid in ("c00", "c17", "c39"):
        alone = value_model([CustomerFacts(cid)], [o for o in orders if o.customer_id == cid],
                            TODAY, lines=full.lines).profiles[cid]
        expected = full.profiles[cid]
        assert (alone.abc_class, alone.rfm_score, alone.clv_class, alone.tier, alone.clv) == (
            expected.abc_class, expected.rfm_score, expected.clv_class, expected.tier,
            expected.clv)
