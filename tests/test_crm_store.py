import datetime as dt
import json

import pytest
from sqlalchemy import event

from core.db import session_scope
from core.models import Complaint, Customer, CustomerPhone, Interaction
from crm.store import (
    NoSuchCustomer,
    customer_profile,
    find_customer_by_phone,
    last_good_agent,
    normalise_phone,
    open_complaints,
    profile_by_phone,
    recent_interactions,
    search_customers,
)

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def session(maker):
    async with session_scope(maker) as session:
        session.add_all([
            customer("C1", "张伟", "+8613800138000", "+12125550123"),
            customer("C2", "John Smith", "+447911123456"),
            customer("C3", "王芳", "+8613900139000"),
            customer("C4", "100% Cotton Ltd", "+8615000150000"),
        ])
        await session.flush()
        yield session


def customer(cid, name, *phones):
    return Customer(id=cid, name=name, tags=["vip"], phones=[
        CustomerPhone(phone=p, position=i) for i, p in enumerate(phones)
    ])


def call(n, agent_id, minutes_ago, *, outcome="answered", score=None, flagged=False, cid="C1"):
    return Interaction(
        call_id=f"call-{n}", customer_id=cid, agent_id=agent_id, outcome=outcome,
        offered_at=NOW - dt.timedelta(minutes=minutes_ago), survey_score=score,
        complaint_flag=flagged,
    )


@pytest.mark.parametrize("ani", [
    "+8613800138000", "13800138000", "138 0013 8000", "+86 138-0013-8000",
    "008613800138000", "8613800138000", "tel:+8613800138000",
])
async def test_a_cn_number_is_found_in_any_common_format(session, ani):
    found = await find_customer_by_phone(session, ani)
    assert found is not None and found.id == "C1"


async def test_an_international_number_whose_trunk_dropped_the_plus_is_found(session):
    assert (await find_customer_by_phone(session, "12125550123")).id == "C1"
    assert (await find_customer_by_phone(session, "447911123456")).id == "C2"


async def test_a_national_number_is_read_in_the_given_default_region(session):
    assert (await find_customer_by_phone(session, "(212) 555-0123", "US")).id == "C1"
    assert (await find_customer_by_phone(session, "07911 123456", "GB")).id == "C2"


@pytest.mark.parametrize("ani", ["", "anonymous", "123", "+8613700137000"])
async def test_unknown_or_unparseable_numbers_find_nobody(session, ani):
    assert await find_customer_by_phone(session, ani) is None


def test_normalise_phone_gives_e164_or_none():
    assert normalise_phone("138 0013 8000", "CN") == "+8613800138000"
    assert normalise_phone("+1 (212) 555-0123", "CN") == "+12125550123"
    assert normalise_phone("12345", "CN") is None
    assert normalise_phone("not a number", "CN") is None


async def test_search_finds_chinese_names_by_substring(session):
    assert [c.id for c in await search_customers(session, "张")] == ["C1"]
    assert [c.id for c in await search_customers(session, "王芳")] == ["C3"]


async def test_search_by_name_ignores_case(session):
    assert [c.id for c in await search_customers(session, "smith")] == ["C2"]


async def test_search_finds_a_whole_phone_number_in_any_format_but_not_part_of_one(session):
    assert {c.id for c in await search_customers(session, "138 0013 8000")} == {"C1"}
    assert {c.id for c in await search_customers(session, "+1 (212) 555-0123")} == {"C1"}
    assert await search_customers(session, "38001") == []
    assert await search_customers(session, "+861380013800") == []


async def test_search_treats_like_wildcards_literally_and_respects_the_limit(session):
    assert [c.id for c in await search_customers(session, "100%")] == ["C4"]
    assert await search_customers(session, "_") == []
    assert len(await search_customers(session, "+", limit=2)) == 0
    assert len(await search_customers(session, "o", limit=2)) == 2


async def test_open_complaints_leave_out_closed_ones(session):
    session.add_all([
        Complaint(customer_id="C1", category="delivery", created_at=NOW),
        Complaint(customer_id="C1", category="billing_refund", state="closed", closed_at=NOW),
        Complaint(customer_id="C2", category="delivery"),
    ])
    await session.flush()

    assert [c.category for c in await open_complaints(session, "C1")] == ["delivery"]


async def test_recent_interactions_are_newest_first_and_limited(session):
    session.add_all([call(n, 1, minutes_ago=n * 10) for n in range(1, 8)])
    await session.flush()

    recent = await recent_interactions(session, "C1", limit=3)
    assert [i.call_id for i in recent] == ["call-1", "call-2", "call-3"]


async def test_sticky_agent_is_who_answered_the_latest_call(session):
    session.add_all([call(1, 7, minutes_ago=90), call(2, 8, minutes_ago=30, score=3)])
    await session.flush()

    assert await last_good_agent(session, "C1") == 8


async def test_sticky_agent_skips_low_scores_complaints_and_unanswered_calls(session):
    session.add_all([
        call(1, 7, minutes_ago=100, score=4),
        call(2, 8, minutes_ago=40, score=2),
        call(3, 9, minutes_ago=30, flagged=True),
        call(4, None, minutes_ago=20, outcome="abandoned"),
        call(5, 10, minutes_ago=10, outcome="failed"),
    ])
    await session.flush()

    assert await last_good_agent(session, "C1") == 7


async def test_sticky_agent_is_not_an_agent_whose_later_call_went_badly(session):
    session.add_all([
        call(1, 5, minutes_ago=300),
        call(2, 7, minutes_ago=200, score=5),
        call(3, 7, minutes_ago=100, score=1),
    ])
    await session.flush()

    assert await last_good_agent(session, "C1") == 5


async def test_no_sticky_agent_without_a_good_answered_call(session):
    session.add_all([call(1, 7, minutes_ago=10, score=1), call(2, 8, minutes_ago=5, cid="C2")])
    await session.flush()

    assert await last_good_agent(session, "C1") is None
    assert await last_good_agent(session, "C3") is None


async def test_customer_profile_is_json_ready_with_iso_datetimes(session):
    session.add_all([
        call(1, 7, minutes_ago=10, score=5),
        Complaint(customer_id="C1", category="delivery", created_at=NOW,
                  sla_due_at=NOW + dt.timedelta(hours=48)),
    ])
    await session.flush()

    profile = await customer_profile(session, "C1")

    assert json.loads(json.dumps(profile)) == profile
    assert profile["name"] == "张伟"
    assert profile["phones"] == ["+8613800138000", "+12125550123"]
    assert profile["tags"] == ["vip"] and profile["tier"] == "standard"
    assert profile["last_agent_id"] == 7
    [complaint] = profile["open_complaints"]
    assert complaint["category"] == "delivery"
    assert dt.datetime.fromisoformat(complaint["sla_due_at"]) == NOW + dt.timedelta(hours=48)
    [interaction] = profile["recent_interactions"]
    assert interaction["call_id"] == "call-1"
    assert dt.datetime.fromisoformat(interaction["offered_at"]) == NOW - dt.timedelta(minutes=10)
    assert set(profile) >= {"email", "company", "abc_class", "rfm_segment", "rfm_score", "clv",
                            "clv_class", "lifecycle_stage", "churn_risk"}


async def test_customer_profile_of_an_unknown_customer_raises(session):
    with pytest.raises(NoSuchCustomer) as raised:
        await customer_profile(session, "nobody")
    assert raised.value.code == "no_such_customer"


@pytest.mark.parametrize("ani", ["+12125550123", "12125550123", "+86 138 0013 8000"])
async def test_the_screen_pop_profile_of_a_number_is_its_customers_profile(session, ani):
    session.add_all([call(1, 7, minutes_ago=30, score=5),
                     call(2, 8, minutes_ago=20, score=1),
                     call(3, None, minutes_ago=10, outcome="abandoned"),
                     Complaint(customer_id="C1", category="billing", created_at=NOW)])
    await session.flush()

    profile = await profile_by_phone(session, ani)

    assert profile == await customer_profile(session, "C1")
    assert profile["last_agent_id"] == 7  # agent 8's call went badly
    assert [i["call_id"] for i in profile["recent_interactions"]] == ["call-3", "call-2",
                                                                      "call-1"]
    assert [c["category"] for c in profile["open_complaints"]] == ["billing"]


async def test_a_number_nobody_has_has_no_screen_pop_profile(session):
    assert await profile_by_phone(session, "+8613999999999") is None
    assert await profile_by_phone(session, "not a number") is None


async def test_a_screen_pop_profile_is_read_in_one_statement(session):
    """The customer with its phones, its open complaints and its latest calls: one
    statement (it was three, each a round trip on PostgreSQL), the same profile."""
    session.add_all([call(1, 7, minutes_ago=30, score=5), call(2, 8, minutes_ago=20),
                     Complaint(customer_id="C1", category="billing", created_at=NOW),
                     Complaint(customer_id="C1", category="delivery",
                               created_at=NOW - dt.timedelta(hours=1)),
                     Complaint(customer_id="C1", category="closed one", created_at=NOW,
                               state="closed")])
    await session.flush()
    sent: list[str] = []
    engine = session.bind.sync_engine

    def listener(conn, cursor, statement, *rest):
        sent.append(statement)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        profile = await profile_by_phone(session, "+12125550123")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(sent) == 1
    assert profile["id"] == "C1"
    assert profile["phones"] == ["+8613800138000", "+12125550123"]
    assert [c["category"] for c in profile["open_complaints"]] == ["delivery", "billing"]
    assert [i["call_id"] for i in profile["recent_interactions"]] == ["call-2", "call-1"]
    assert profile["last_agent_id"] == 8


async def test_the_history_shows_five_calls_and_finds_the_sticky_agent_further_back(session):
    session.add_all([call(n, 9 if n == 0 else None, minutes_ago=60 - n,
                          outcome="answered" if n == 0 else "abandoned") for n in range(12)])
    await session.flush()
    profile = await profile_by_phone(session, "+8613800138000")
    assert [i["call_id"] for i in profile["recent_interactions"]] == [
        "call-11", "call-10", "call-9", "call-8", "call-7"]
    assert profile["last_agent_id"] == 9
