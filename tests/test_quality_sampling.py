"""The sampler proposes every complaint-flagged call and N random calls per agent per
week, the same for the same seed; statistics by agent, queue and question over time."""

from __future__ import annotations

import datetime as dt

import pytest

from quality.sampler import Week, draw
from tests.conftest import make_settings
from tests.quality_data import FORM, add_call, add_complaint
from tests.rest import request

MONDAY = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)  # ISO week 2026-W48


@pytest.fixture
def settings(any_database_url, redis_url, redis_prefix, tmp_path):
    return make_settings(any_database_url, redis_url, redis_prefix, tmp_path)


def test_a_draw_is_the_same_for_the_same_seed_and_differs_for_another():
    week = Week(2026, 48, dt.UTC)
    calls = {7: list(range(1, 41)), 9: list(range(100, 140))}
    first = draw(calls, set(), 3, "s1", week)
    assert first == draw(calls, set(), 3, "s1", week)
    assert [len(p) for p in first.values()] == [3, 3]
    assert first != draw(calls, set(), 3, "s2", week)
    # One agent's new call changes only that agent's draw.
    more = {**calls, 9: [*calls[9], 140]}
    assert draw(more, set(), 3, "s1", week)[7] == first[7]
    # Flagged calls are not drawn again; an agent with fewer calls gets them all.
    assert draw({7: [1, 2, 3]}, {2}, 5, "s1", week) == {7: [1, 3]}


async def calls_for(center, agents):
    ids = {}
    for agent in agents:
        ids[agent] = await center.add_agent(agent)
    return ids


async def test_the_week_proposal_has_every_complaint_call_and_n_per_agent_reproducibly(center):
    sue = await center.login_token("sue", "supervisor")
    ids = await calls_for(center, ["amy", "bob"])
    made = {"amy": [], "bob": []}
    for n in range(12):
        for name in ("amy", "bob"):
            made[name].append(await add_call(center, f"{name}-{n}", ids[name],
                                             at=MONDAY + dt.timedelta(hours=n * 10)))
    flagged = await add_call(center, "amy-flag", ids["amy"], at=MONDAY, complaint_flag=True)
    complained = await add_call(center, "bob-complaint", ids["bob"], at=MONDAY)
    await add_complaint(center, complained)
    await add_call(center, "amy-silent", ids["amy"], at=MONDAY, recording=None)
    await add_call(center, "amy-next-week", ids["amy"], at=MONDAY + dt.timedelta(days=7))
    path = "/api/v1/quality/sample?week=2026-W48&per_agent=3&seed=42"
    status, first = await request(center, "GET", path, sue)
    assert status == 200, first
    assert first["week"] == "2026-W48" and first["seed"] == "42"
    reasons = {c["interaction_id"]: c["reason"] for c in first["calls"]}
    assert reasons[flagged] == "complaint" and reasons[complained] == "complaint"
    for name in ("amy", "bob"):
        drawn = [c for c in first["calls"] if c["agent_id"] == ids[name]
                 and c["reason"] == "random"]
        assert len(drawn) == 3 and {c["interaction_id"] for c in drawn} <= set(made[name])
    assert len(first["calls"]) == 8
    assert (await request(center, "GET", path, sue))[1] == first
    _, other = await request(center, "GET", path.replace("seed=42", "seed=43"), sue)
    assert other["calls"] != first["calls"]
    # Evaluating a proposed call marks it, and changes nothing else.
    _, form = await request(center, "POST", "/api/v1/quality/forms", sue, json=FORM)
    status, _ = await request(center, "POST", "/api/v1/quality/evaluations", sue, json={
        "form_id": form["id"], "interaction_id": flagged,
        "answers": {"greet": "yes", "verify": "yes", "offer": "yes"}})
    _, after = await request(center, "GET", path, sue)
    assert [c["evaluated"] for c in after["calls"] if c["interaction_id"] == flagged] == [True]
    assert [c["interaction_id"] for c in after["calls"]] == \
        [c["interaction_id"] for c in first["calls"]]


@pytest.mark.parametrize("query", ["week=2026-48", "week=2026-W54", "per_agent=0",
                                   "per_agent=101", "per_agent=x", "seed=" + "s" * 65])
async def test_a_sample_asked_for_wrongly_is_refused(center, query):
    sue = await center.login_token("sue", "supervisor")
    status, body = await request(center, "GET", f"/api/v1/quality/sample?{query}", sue)
    assert status == 400 and body["error"]["code"] == "invalid", body


async def test_scores_by_agent_queue_and_question_over_weeks(center):
    sue = await center.login_token("sue", "supervisor")
    amy = await center.login_token("amy", "agent")
    ids = await calls_for(center, ["bob"])
    _, me = await request(center, "GET", "/api/v1/me", amy)
    ids["amy"] = me["agent_id"]
    _, form = await request(center, "POST", "/api/v1/quality/forms", sue, json=FORM)
    plan = [("amy", "sales", 0, {"greet": "yes", "verify": "yes", "offer": "no"}),  # 80
            ("amy", "sales", 1, {"greet": "yes", "verify": "yes", "offer": "na"}),  # 100
            ("amy", "care", 7, {"greet": "no", "verify": "no", "offer": "yes"}),  # 0
            ("bob", "care", 7, {"greet": "no", "verify": "yes", "offer": "yes"})]  # 50
    for n, (name, queue, days, answers) in enumerate(plan):
        call = await add_call(center, f"c{n}", ids[name], queue=queue,
                              at=MONDAY + dt.timedelta(days=days))
        status, body = await request(center, "POST", "/api/v1/quality/evaluations", sue, json={
            "form_id": form["id"], "interaction_id": call, "answers": answers})
        assert status == 201, body
    span = "from=2026-11-23&to=2026-12-06&interval=week"
    _, by_agent = await request(center, "GET", f"/api/v1/quality/stats?{span}&by=agent", sue)
    assert [(r["period"], r["agent_name"], r["evaluations"], r["average"], r["critical_failed"])
            for r in by_agent["rows"]] == [("2026-W48", "Amy", 2, 90, 0),
                                           ("2026-W49", "Amy", 1, 0, 1),
                                           ("2026-W49", "Bob", 1, 50, 0)]
    _, by_queue = await request(center, "GET", f"/api/v1/quality/stats?{span}&by=queue", sue)
    assert [(r["period"], r["queue"], r["average"]) for r in by_queue["rows"]] == \
        [("2026-W48", "sales", 90), ("2026-W49", "care", 25)]
    _, by_question = await request(center, "GET",
                                   f"/api/v1/quality/stats?{span}&by=question", sue)
    offer = [(r["period"], r["answers"], r["average"]) for r in by_question["rows"]
             if r["question"] == "offer"]
    assert offer == [("2026-W48", 1, 0), ("2026-W49", 2, 100)]
    # An agent sees its own figures only.
    _, own = await request(center, "GET", f"/api/v1/quality/stats?{span}&by=agent", amy)
    assert {r["agent_name"] for r in own["rows"]} == {"Amy"}
    for bad in (f"{span}&by=team", "from=2026-13-01&to=2026-12-01",
                "from=2026-11-23&to=2026-12-06&interval=year", "to=2026-12-01"):
        status, body = await request(center, "GET", f"/api/v1/quality/stats?{bad}", sue)
        assert status == 400 and body["error"]["code"] == "invalid", (bad, body)
