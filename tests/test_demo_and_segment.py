import datetime as dt

import numpy as np
import pytest
from sqlalchemy import func, select

from core.auth import verify_password
from core.db import create_engine, session_scope, sessionmaker
from core.models import (
    Agent,
    Base,
    Complaint,
    Customer,
    CustomerPhone,
    Interaction,
    Order,
    Queue,
)
from crm import segment, segment_load, segment_store
from crm.demo import DemoCredentials, load_demo
from crm.segment import segment_all
from crm.store import customer_profile
from crm.value import CustomerFacts, compute_profiles, fact_columns
from crm.value import Order as ValueOrder
from crm.value_columns import FactColumns

TODAY = dt.date(2025, 3, 1)


async def scalars(maker, statement):
    async with session_scope(maker) as session:
        return (await session.scalars(statement)).all()


async def count(maker, model):
    async with session_scope(maker) as session:
        return await session.scalar(select(func.count()).select_from(model))


def orders(cid, amounts, *days_ago):
    return [Order(customer_id=cid, ordered_on=TODAY - dt.timedelta(days=d), amount=a,
                  cost=a / 2) for a, d in zip(amounts, days_ago, strict=True)]


# Demo data ----------------------------------------------------------------------------


async def test_demo_loads_and_every_tier_appears_after_segmentation(maker):
    credentials = await load_demo(maker)

    assert credentials.loaded
    tiers = await scalars(maker, select(Customer.tier).distinct())
    assert set(tiers) == {"vip", "gold", "standard", "low"}
    assert await count(maker, Customer) == 3000
    assert await scalars(maker, select(Customer.id).where(Customer.value_updated_at.is_(None))) \
        == []


async def test_demo_has_prospects_lapsed_customers_and_a_pareto_spend(maker):
    await load_demo(maker)

    stages = set(await scalars(maker, select(Customer.lifecycle_stage).distinct()))
    assert {"prospect", "inactive", "loyal", "first_time", "repeat"} <= stages
    spend = sorted(await scalars(maker, select(func.sum(Order.amount)).group_by(Order.customer_id)),
                   reverse=True)
    top_fifth = sum(spend[: len(spend) // 5])
    assert top_fifth > 0.5 * sum(spend)


async def test_demo_signs_in_agents_supervisor_and_admin_with_the_demo_password(maker):
    credentials = await load_demo(maker)

    async with session_scope(maker) as session:
        users = {a.username: a for a in await session.scalars(select(Agent))}
    assert set(users) == {*credentials.agents, "supervisor", "admin"}
    assert len(credentials.agents) == 12
    for username in ("agent1", "agent12", "supervisor", "admin"):
        assert verify_password(users[username].password_hash, credentials.password)
    assert (users["supervisor"].role, users["admin"].role) == ("supervisor", "admin")
    assert [users[f"agent{i}"].extension for i in (1, 12)] == ["1001", "1012"]
    assert {lvl for a in users.values() if a.role == "agent" for lvl in [a.level]} == {1, 2, 3}
    skills = {s for a in users.values() for s in a.skills}
    assert {"sales", "billing", "support", "complaints", "zh", "en", "vip"} <= skills
    assert credentials.password == "demo1234" and "demo1234" in str(credentials)


async def test_demo_has_queues_complaints_and_call_history_for_the_screen_pop(maker):
    await load_demo(maker)

    queues = {q.name: q for q in await scalars(maker, select(Queue))}
    assert set(queues) == {"default", "sales", "billing", "vip"}
    assert queues["vip"].skills == ["vip"]
    assert 20 <= await count(maker, Complaint) <= 60
    categories = set(await scalars(maker, select(Complaint.category).distinct()))
    assert categories == {"product_quality", "service_attitude", "delivery", "billing_refund"}
    called = await scalars(maker, select(Interaction.customer_id).distinct())
    assert len(called) > 100
    async with session_scope(maker) as session:
        profiles = [await customer_profile(session, cid) for cid in called[:30]]
    assert any(p["recent_interactions"] for p in profiles)
    assert any(p["last_agent_id"] is not None for p in profiles)


async def test_the_demo_starts_calm_complaints_in_every_state_none_overdue(maker):
    """A first start shows no escalation: every open complaint is within its SLA."""
    await load_demo(maker)
    complaints = await scalars(maker, select(Complaint))
    assert {c.state for c in complaints} == {"received", "validated", "resolving",
                                             "resolved", "closed", "rejected"}
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    unresolved = [c for c in complaints if c.state in ("received", "validated", "resolving")]
    assert unresolved and all(c.escalation_level == 0 for c in unresolved)
    assert min(_naive(c.sla_due_at) for c in unresolved) > now + dt.timedelta(hours=1)


def _naive(at):
    return at.replace(tzinfo=None) if at.tzinfo else at


async def test_loading_the_demo_twice_changes_nothing(maker):
    await load_demo(maker, customers=200)
    again = await load_demo(maker, customers=200)

    assert again == DemoCredentials(loaded=False)
    assert await count(maker, Customer) == 200
    assert await count(maker, Agent) == 14


async def test_the_same_seed_gives_the_same_customers(tmp_path):
    names = []
    for run in ("a", "b"):
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / run}.db")
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        await load_demo(sessionmaker(engine), seed=3, customers=100)
        async with engine.connect() as conn:
            names.append((await conn.execute(
                select(Customer.id, Customer.name, CustomerPhone.phone).join(CustomerPhone)
                .order_by(CustomerPhone.phone)
            )).all())
        await engine.dispose()
    assert names[0] == names[1]


# Segmentation -------------------------------------------------------------------------


@pytest.fixture
async def base(maker):
    """Five customers: one big recent spender, small and lapsed buyers, and prospects."""
    async with session_scope(maker) as session:
        session.add_all([
            Customer(id="big", name="王芳", phones=[CustomerPhone(phone="+8613800138000")]),
            Customer(id="small", name="Li Na", email="li@example.com"),
            Customer(id="lapsed", name="John Smith", email="js@example.com"),
            Customer(id="prospect", name="张伟", email="zw@example.com"),
            Customer(id="unknown", name="Nobody"),
        ])
        await session.flush()
        session.add_all(
            orders("big", [5000, 8000, 6000, 9000, 7000, 8000], 10, 40, 70, 100, 130, 160)
            + orders("small", [40, 20], 20, 200)
            + orders("lapsed", [300, 200], 500, 700)
        )
    return maker


async def test_segment_writes_every_value_field(base):
    report = await segment_all(base, today=TODAY, progress=False)

    assert (report.customers, report.orders) == (5, 10)
    async with session_scope(base) as session:
        big = await session.get(Customer, "big")
    assert (big.abc_class, big.lifecycle_stage, big.tier) == ("A", "loyal", "vip")
    assert big.rfm_score and big.rfm_segment and big.clv_class
    assert big.clv > 0 and 0 <= big.churn_risk <= 1
    assert big.value_updated_at is not None


def _facts(columns: FactColumns) -> list[CustomerFacts]:
    return [CustomerFacts(cid, bool(columns.has_contact[k]), int(columns.open_complaints[k]),
                          float(columns.handle_minutes[k]), int(columns.complaints_in_period[k]),
                          None if np.isnan(columns.satisfaction[k])
                          else float(columns.satisfaction[k]))
            for k, cid in enumerate(columns.ids)]


@pytest.fixture
def model_inputs(monkeypatch):
    """What segment_all hands the value model, as customer and order objects."""
    seen = {}
    real = segment.score

    def spy(facts, orders, today, policy, lines=None):
        seen.update(customers=_facts(facts), orders=[
            ValueOrder(facts.ids[c], dt.date.fromordinal(d), a / 100, cost / 100)
            for c, d, a, cost in zip(orders.customer.tolist(), orders.day.tolist(),
                                     orders.amount.tolist(), orders.cost.tolist(), strict=True)])
        return real(facts, orders, today, policy, lines)

    monkeypatch.setattr(segment, "score", spy)
    return seen


@pytest.mark.parametrize("hashes", ["distinct", "colliding"])
async def test_segment_results_match_the_value_model(base, model_inputs, monkeypatch, hashes):
    # On PostgreSQL orders name their customer by a hash of the id; should two ids
    # share one, the orders are joined to the customers' indexes instead.
    if hashes == "colliding":
        monkeypatch.setattr(segment_load, "_HASHES", "SELECT 7::int8 FROM unnest($1::text[])")
    report = await segment_all(base, today=TODAY, progress=False)

    seen = model_inputs
    expected = compute_profiles(seen["customers"], seen["orders"], TODAY)
    for customer in await scalars(base, select(Customer)):
        p = expected[customer.id]
        assert (customer.tier, customer.abc_class, customer.rfm_score, customer.rfm_segment,
                customer.clv_class, customer.lifecycle_stage) == (
            p.tier.value, p.abc_class, p.rfm_score, p.rfm_segment, p.clv_class, p.lifecycle_stage)
        assert customer.clv == pytest.approx(p.clv)
        assert customer.churn_risk == pytest.approx(p.churn_risk)
    assert ValueOrder("big", TODAY - dt.timedelta(days=10), 5000.0, 2500.0) in seen["orders"]
    assert report.orders == len(seen["orders"]) == 10


async def test_segment_reads_contact_and_open_complaints_per_customer(base, model_inputs):
    async with session_scope(base) as session:
        session.add_all([
            Complaint(customer_id="small", category="delivery"),
            Complaint(customer_id="small", category="billing_refund"),
            Complaint(customer_id="lapsed", category="delivery", state="closed",
                      closed_at=dt.datetime(2025, 2, 1, tzinfo=dt.UTC)),
        ])

    await segment_all(base, today=TODAY, progress=False)

    facts = {f.customer_id: f for f in model_inputs["customers"]}
    assert facts["small"] == CustomerFacts("small", has_contact=True, open_complaints=2)
    assert facts["lapsed"].open_complaints == 0
    assert facts["big"].has_contact and not facts["unknown"].has_contact
    async with session_scope(base) as session:
        stages = dict((await session.execute(select(Customer.id, Customer.lifecycle_stage))).all())
    assert stages["prospect"] == "prospect" and stages["unknown"] == "suspect"


async def test_segment_report_counts_customers_per_tier(base):
    report = await segment_all(base, today=TODAY, progress=False)

    stored = await scalars(base, select(Customer.tier))
    assert report.tiers == {t: stored.count(t) for t in set(stored)}
    assert sum(report.tiers.values()) == 5
    assert report.summary().startswith("segmented 5 customers (10 orders): vip ")


@pytest.mark.parametrize("batch", ["_BATCH", "_PG_BATCH"])
async def test_segment_writes_in_batches(base, monkeypatch, batch):
    # _PG_BATCH: on PostgreSQL, by COPY into a temporary table and UPDATE ... FROM it.
    monkeypatch.setattr(segment_store, batch, 2)

    await segment_all(base, today=TODAY, progress=False)

    assert await scalars(base, select(Customer.id).where(Customer.value_updated_at.is_(None))) \
        == []


@pytest.mark.parametrize("batch", [1000, 2])
async def test_a_customer_deleted_while_scoring_does_not_fail_the_batch(base, monkeypatch,
                                                                      batch):
    real = segment.score

    def with_ghost(facts, orders, today, policy, lines=None):
        return real(fact_columns([*_facts(facts), CustomerFacts("ghost")]), orders, today,
                    policy, lines)

    monkeypatch.setattr(segment, "score", with_ghost)
    monkeypatch.setattr(segment_store, "_PG_BATCH", batch)

    report = await segment_all(base, today=TODAY, progress=False)

    assert report.customers == 6
    assert await count(base, Customer) == 5


async def test_segment_of_an_empty_base_does_nothing(maker):
    report = await segment_all(maker, today=TODAY, progress=False)

    assert (report.customers, report.orders, report.tiers) == (0, 0, {})
