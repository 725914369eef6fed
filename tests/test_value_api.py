"""The value model over REST and in the screen pop: satisfaction c = b/a from the IVR
survey, the churn warning list, win-back actions, churn rates and the run summary."""

from __future__ import annotations

import datetime as dt
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from core import db
from core.models import Customer, Interaction, Order, WinBackAction
from crm.segment import segment_all

TODAY = dt.date.today()


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    async def __call__(self, method: str, path: str, body: Any = None,
                       status: int = 200) -> Any:
        async with aiohttp.ClientSession() as http, http.request(
                method, self.base + path, json=body,
                headers={"Authorization": f"Bearer {self.token}"}) as resp:
            data = await resp.json()
            assert resp.status == status, data
            return data


@pytest.fixture
async def boss(center):
    return Api(center.url, await center.login_token("sue", role="supervisor"))


async def _add_orders(center, rows: list[tuple[str, int, float]]) -> None:
    """(customer id, days ago, amount) rows; customers are created as needed."""
    async with db.session_scope(center.sessions) as session:
        known = set(await session.scalars(select(Customer.id)))
        for cid in {r[0] for r in rows} - known:
            session.add(Customer(id=cid, name=cid))
        await session.flush()
        session.add_all(Order(customer_id=cid, ordered_on=TODAY - dt.timedelta(days=ago),
                              amount=amount, cost=amount * 0.5) for cid, ago, amount in rows)


async def test_survey_expectation_and_perception_give_c_per_agent_and_tier(center, boss):
    await center.add_customer("S1", "张伟", "+8613800000201", tier="gold")
    agent = await center.agent("amy")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("c-s1", "+8613800000201")
    await ivr.inbox.expect("route.connect", call_id="c-s1")
    await ivr.event("call.answered", "c-s1", agent_id=agent.agent_id)
    await ivr.event("call.ended", "c-s1", cause="normal")
    await agent.inbox.expect("call.ended", call_id="c-s1")
    await ivr.event("survey.result", "c-s1", score=4, expectation=4, perception=5)

    by_agent = await boss("GET", "/api/v1/value/satisfaction?by=agent")
    by_tier = await boss("GET", "/api/v1/value/satisfaction?by=tier")
    by_customer = await boss("GET", "/api/v1/value/satisfaction?by=customer")
    by_queue = await boss("GET", "/api/v1/value/satisfaction?by=queue")

    assert by_agent["rows"] == [{"agent": agent.agent_id, "c": 1.25, "surveys": 1}]
    assert by_tier["rows"] == [{"tier": "gold", "c": 1.25, "surveys": 1}]
    assert by_customer["rows"] == [{"customer": "S1", "c": 1.25, "surveys": 1}]
    assert [(r["c"], r["surveys"]) for r in by_queue["rows"]] == [(1.25, 1)]
    async with db.session_scope(center.sessions) as session:
        row = (await session.execute(
            Interaction.__table__.select().where(Interaction.call_id == "c-s1"))).one()
    assert (row.survey_score, row.survey_expectation, row.survey_perception) == (4, 4, 5)
    await boss("GET", "/api/v1/value/satisfaction?by=weather", status=400)


async def test_valuable_customer_whose_spend_fell_is_on_the_warning_list_and_screen_pop(
        center, boss):
    # 30 steady monthly buyers of 100, and "V9", a big monthly buyer (2000) whose spend
    # fell to 20 for the last three months.
    await center.add_customer("V9", "李强", "+8613800000202")
    rows = [(f"s{k:02d}", 30 * m + 5, 100.0) for k in range(30) for m in range(12)]
    rows += [("V9", 30 * m + 5, 2000.0 if m >= 3 else 20.0) for m in range(12)]
    await _add_orders(center, rows)

    report = await segment_all(center.sessions, TODAY, progress=False)

    assert report.customers == 31
    risky = await boss("GET", "/api/v1/value/at-risk")
    assert [c["customer_id"] for c in risky["customers"]] == ["V9"]
    assert risky["customers"][0]["reasons"][0].startswith("spend down 99% in 90 days")
    agent = await center.agent("amy")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("c-v9", "+8613800000202")
    pop = await agent.inbox.expect("screen_pop", call_id="c-v9")
    assert pop["customer"]["at_risk"].startswith("at risk: spend down 99% in 90 days")


async def test_supervisor_records_a_win_back_callback_with_the_reasons(center, boss):
    await _add_orders(center, [("W1", 10, 100.0)])
    action = await boss("POST", "/api/v1/customers/W1/win-back",
                        {"due_at": "2030-01-02T09:00:00+08:00", "note": "offer a voucher"},
                        status=201)
    assert action["customer_id"] == "W1" and action["state"] == "scheduled"
    await boss("POST", "/api/v1/customers/nobody/win-back", {}, status=404)
    await boss("POST", "/api/v1/customers/W1/win-back", {"due_at": "soon"}, status=400)
    agent = await center.agent("amy")
    await Api(center.url, agent.token)("POST", "/api/v1/customers/W1/win-back", {},
                                         status=403)
    async with db.session_scope(center.sessions) as session:
        stored = (await session.execute(WinBackAction.__table__.select())).all()
    assert [(r.customer_id, r.note) for r in stored] == [("W1", "offer a voucher")]


async def test_textbook_churn_rates_over_the_api(center, boss):
    # 1000 buyers last year; 100 of them (2,000 each: 200,000 of 1,000,000) bought
    # nothing this year: absolute 10 %, relative 10 % x 20 % = 2 %.
    rows = [(f"L{k:03d}", 500, 2000.0) for k in range(100)]
    rows += [(f"K{k:03d}", 500, 900.0 if k < 800 else 800.0) for k in range(900)]
    rows += [(f"K{k:03d}", 30, 50.0) for k in range(900)]
    await _add_orders(center, rows)

    rates = await boss("GET", f"/api/v1/value/churn-rates?period_days=365&end={TODAY}")

    assert (rates["customers_at_start"], rates["customers_lost"]) == (1000, 100)
    assert (rates["revenue_total"], rates["revenue_of_lost"]) == (1_000_000, 200_000)
    assert (rates["absolute"], rates["relative"]) == (0.1, 0.02)
    await boss("GET", "/api/v1/value/churn-rates?period_days=0", status=400)
    await boss("GET", "/api/v1/value/churn-rates?end=yesterday", status=400)


async def test_churn_rates_refuse_an_end_too_early_for_two_periods(center, boss):
    error = await boss("GET", "/api/v1/value/churn-rates?period_days=3660&end=0001-01-02",
                       status=400)
    assert error["error"]["code"] == "invalid"
    assert "end must be on or after 0021-01-16" in error["error"]["message"]
    await boss("GET", "/api/v1/value/churn-rates?period_days=1&end=0001-01-02", status=400)

    rates = await boss("GET", "/api/v1/value/churn-rates?period_days=1&end=0001-01-03")
    far = await boss("GET", "/api/v1/value/churn-rates?period_days=3660&end=9999-12-31")

    assert rates["absolute"] is None and far["absolute"] is None


async def test_summary_names_the_policy_and_the_last_run(center, boss):
    empty = await boss("GET", "/api/v1/value/summary")
    assert empty == {"policy_version": "2026.1-textbook", "last_run": None}
    await _add_orders(center, [("A1", 10, 100.0), ("A1", 40, 100.0), ("B1", 20, 50.0)])
    await segment_all(center.sessions, TODAY, progress=False)

    run = (await boss("GET", "/api/v1/value/summary"))["last_run"]

    assert run["policy_version"] == "2026.1-textbook" and run["customers"] == 2
    assert run["summary"]["repeat_purchase_rate"] == 0.5
    assert run["summary"]["retention"] == 0.8  # too few buyers to measure: the default
