"""The customer report: churn, tier movements, complaints against their SLA, and the
complaints in the center, queue and tier reports. Every figure is worked out by hand.

The range is March 2026 in UTC (31 days); the period before it is 29 January to 28
February. The textbook's churn: 1,000 customers bought 1,000,000 in the period before;
100 of them, who had bought 200,000, buy nothing in March: 10% absolute, 2% relative.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from core import db
from core.models import (
    Complaint,
    ComplaintEvent,
    Customer,
    CustomerTierChange,
    Interaction,
    Order,
)
from crm import segment_store
from crm.segment import segment_all
from tests.conftest import make_settings
from tests.rest import request

UTC = dt.UTC


@pytest.fixture
def settings(any_database_url, redis_url, redis_prefix, tmp_path):
    return make_settings(any_database_url, redis_url, redis_prefix, tmp_path)
MARCH = {"from": "2026-03-01", "to": "2026-03-31", "timezone": "UTC"}


def t(day: int, hour: int = 9, month: int = 3) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=UTC)


async def textbook_base(sessions) -> None:
    created = t(1, 0, 1)
    lost = [(f"l{k:03d}", 2000.0) for k in range(100)]
    kept = [(f"k{k:03d}", 900.0 if k < 800 else 800.0) for k in range(900)]
    async with db.session_scope(sessions) as session:
        session.add_all(Customer(id=cid, name=cid, created_at=created) for cid, _ in lost + kept)
        await session.flush()
        session.add_all(Order(customer_id=cid, ordered_on=dt.date(2026, 2, 10), amount=amount)
                        for cid, amount in lost + kept)
        session.add_all(Order(customer_id=cid, ordered_on=dt.date(2026, 3, 20), amount=50.0)
                        for cid, _ in kept)
        # Bought before the period before: neither at start nor lost.
        session.add(Order(customer_id="l000", ordered_on=dt.date(2026, 1, 28), amount=10.0))


async def tier_history(sessions) -> None:
    """k000 standard -> gold in March; k001 gold -> vip -> gold (back where it was);
    k002 silver -> gold in February (before the range); new joined in March."""
    async with db.session_scope(sessions) as session:
        session.add(Customer(id="new", name="new", created_at=t(5)))
        await session.flush()
        session.add_all([
            CustomerTierChange(customer_id="k000", at=t(3), from_tier="standard", to_tier="gold"),
            CustomerTierChange(customer_id="k001", at=t(4), from_tier="gold", to_tier="vip"),
            CustomerTierChange(customer_id="k001", at=t(9), from_tier="vip", to_tier="gold"),
            CustomerTierChange(customer_id="k002", at=t(20, month=2), from_tier="silver",
                               to_tier="gold"),
            CustomerTierChange(customer_id="new", at=t(6), from_tier="standard", to_tier="vip"),
            CustomerTierChange(customer_id="k003", at=t(2), from_tier="standard",
                               to_tier="silver"),
            CustomerTierChange(customer_id="k004", at=t(2), from_tier="standard",
                               to_tier="silver")])


async def complaints(sessions) -> None:
    """Opened in March: a billing one resolved in 10 h of a 24 h SLA (via a call of queue
    sales), a billing one resolved in 30 h (late), a delivery one still open and past its
    SLA, a delivery one rejected; one opened in February does not count."""
    async with db.session_scope(sessions) as session:
        session.add(Interaction(call_id="call-1", queue="sales", tier="gold",
                                offered_at=t(2, 8)))
        await session.flush()
        call = await session.scalar(select(Interaction.id).where(Interaction.call_id == "call-1"))
        rows = [
            Complaint(customer_id="k000", category="billing_refund", state="resolved",
                      tier="gold", created_at=t(2), sla_due_at=t(3), interaction_id=call,
                      queue="sales"),
            Complaint(customer_id="k001", category="billing_refund", state="closed",
                      created_at=t(10), sla_due_at=t(11)),
            Complaint(customer_id="k002", category="delivery", state="resolving",
                      created_at=t(15), sla_due_at=t(16)),
            Complaint(customer_id="k003", category="delivery", state="rejected",
                      created_at=t(16), sla_due_at=t(17)),
            Complaint(customer_id="k004", category="delivery", state="resolved",
                      created_at=t(27, month=2), sla_due_at=t(28, month=2))]
        session.add_all(rows)
        await session.flush()
        resolved = {0: t(2, 19), 1: t(11, 15), 4: t(27, 12, month=2)}
        session.add_all(ComplaintEvent(complaint_id=rows[k].id, from_state="resolving",
                                       to_state="resolved", actor="sue", at=when)
                        for k, when in resolved.items())
        # Closed after it was resolved: the first resolution is the one that counts.
        session.add(ComplaintEvent(complaint_id=rows[1].id, from_state="follow_up_done",
                                   to_state="closed", actor="sue", at=t(12)))


async def test_customer_report_gives_churn_tier_moves_and_complaints_worked_out_by_hand(
        center):
    await textbook_base(center.sessions)
    await tier_history(center.sessions)
    await complaints(center.sessions)
    token = await center.login_token("sue")

    status, body = await request(center, "GET", "/api/v1/reports/customers", token,
                                 params=MARCH)
    assert status == 200, body
    churn = body["churn"]
    assert (churn["customers_at_start"], churn["customers_lost"], churn["revenue_total"],
            churn["revenue_of_lost"], churn["absolute"], churn["relative"]) == (
        1000, 100, 1_000_000.0, 200_000.0, 0.1, 0.02)
    assert (churn["period_start"], churn["period_end"]) == ("2026-03-01", "2026-04-01")

    assert body["tier_moves"] == [
        {"from_tier": "standard", "to_tier": "gold", "customers": 1},
        {"from_tier": "standard", "to_tier": "silver", "customers": 2}]

    categories = {c["category"]: c for c in body["complaints_by_category"]}
    assert categories["billing_refund"] == {
        "category": "billing_refund", "opened": 2, "resolved": 2, "resolved_within_sla": 1,
        "resolved_late": 1, "within_sla_rate": 0.5, "rejected": 0, "open": 0,
        "open_overdue": 0, "avg_hours_to_resolve": 20.0, "max_hours_to_resolve": 30.0}
    assert categories["delivery"] == {
        "category": "delivery", "opened": 2, "resolved": 0, "resolved_within_sla": 0,
        "resolved_late": 0, "within_sla_rate": None, "rejected": 1, "open": 1,
        "open_overdue": 1, "avg_hours_to_resolve": None, "max_hours_to_resolve": None}

    trend = {r["period"]: r for r in body["rows"]}
    assert {p: (r["complaints_opened"], r["complaints_resolved_within_sla"])
            for p, r in trend.items()} == {"2026-03-02": (1, 1), "2026-03-10": (1, 0),
                                           "2026-03-15": (1, 0), "2026-03-16": (1, 0)}

    # The same complaints in the center, queue and tier reports.
    for scope, group, expected in (("center", "center", (4, 1)), ("queues", "sales", (1, 1)),
                                   ("tiers", "gold", (1, 1)), ("tiers", "standard", (3, 0))):
        status, body = await request(center, "GET", f"/api/v1/reports/{scope}", token,
                                     params=MARCH)
        assert status == 200, body
        label = {"center": "scope", "queues": "queue", "tiers": "tier"}[scope]
        total = next(r for r in body["totals"] if r[label] == group)
        assert (total["complaints_opened"], total["complaints_resolved_within_sla"]) == \
            expected, (scope, group)

    status, body = await request(center, "GET", "/api/v1/reports/customers", token,
                                 params={**MARCH, "format": "csv"})
    assert status == 200
    assert body.decode().splitlines()[0] == "period," + ",".join((
        "csat_responses", "csat_average", "csat_satisfied", "complaints_opened",
        "complaints_resolved_within_sla"))


async def test_customer_report_without_earlier_buyers_has_no_churn_rate(center):
    token = await center.login_token("sue")
    status, body = await request(center, "GET", "/api/v1/reports/customers", token,
                                 params=MARCH)
    assert status == 200, body
    assert (body["churn"]["absolute"], body["churn"]["relative"]) == (None, None)
    assert body["tier_moves"] == [] and body["complaints_by_category"] == []
    status, _ = await request(center, "GET", "/api/v1/reports/customers",
                              await center.login_token("amy", role="agent"), params=MARCH)
    assert status == 403


@pytest.mark.parametrize("batch", ["_BATCH", "_PG_BATCH"])
async def test_a_segmentation_run_notes_each_tier_it_changes(sessions, monkeypatch, batch):
    # _PG_BATCH: on PostgreSQL by COPY into a temporary table and one UPDATE ... FROM it.
    monkeypatch.setattr(segment_store, batch, 2)
    async with db.session_scope(sessions) as session:
        session.add_all(Customer(id=f"c{k:02d}", name=f"c{k:02d}") for k in range(20))
        await session.flush()
        session.add_all(Order(customer_id=f"c{k:02d}", ordered_on=dt.date(2026, 2, 1),
                              amount=100.0 * (k + 1) ** 2) for k in range(20))
    await segment_all(sessions, dt.date(2026, 3, 1), progress=False)
    async with sessions() as session:
        tiers = dict((await session.execute(select(Customer.id, Customer.tier))).all())
        changes = (await session.execute(select(
            CustomerTierChange.customer_id, CustomerTierChange.from_tier,
            CustomerTierChange.to_tier))).all()
    moved = {cid for cid, tier in tiers.items() if tier != "standard"}
    assert moved, tiers
    assert sorted(changes) == sorted((cid, "standard", tiers[cid]) for cid in moved)

    await segment_all(sessions, dt.date(2026, 3, 1), progress=False)  # the same tiers again
    async with sessions() as session:
        again = (await session.execute(select(CustomerTierChange.id))).all()
    assert len(again) == len(changes)
