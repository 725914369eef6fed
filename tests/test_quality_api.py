"""Quality evaluations over REST, on SQLite and PostgreSQL: forms, evaluations scored as
docs/quality.md says, the agent's acknowledgement or dispute and its resolution, who may
do what, the audit log, and bad input refused with nothing half-stored."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt

import pytest
from sqlalchemy import func, select

from core.models import AuditEntry, QualityEvaluation, QualityForm
from tests.conftest import make_settings
from tests.quality_data import FORM, add_call
from tests.rest import request

ANSWERS = {"greet": "yes", "verify": "yes", "offer": "na"}  # 80 of 80: 100
NO_ON_30 = {"greet": "yes", "verify": "na", "offer": "no"}  # 50 of 70


@pytest.fixture
def settings(any_database_url, redis_url, redis_prefix, tmp_path):
    return make_settings(any_database_url, redis_url, redis_prefix, tmp_path)


async def people(center):
    sue = await center.login_token("sue", "supervisor")
    amy = await center.login_token("amy", "agent")
    bob = await center.login_token("bob", "agent")
    ids = {}
    for name in ("sue", "amy", "bob"):
        status, me = await request(center, "GET", "/api/v1/me", {"sue": sue, "amy": amy,
                                                                 "bob": bob}[name])
        ids[name] = me["agent_id"]
    return sue, amy, bob, ids


async def new_form(center, token, form=FORM):
    status, body = await request(center, "POST", "/api/v1/quality/forms", token, json=form)
    assert status == 201, body
    return body


async def evaluate(center, token, form_id, interaction_id, answers, **more):
    return await request(center, "POST", "/api/v1/quality/evaluations", token,
                         json={"form_id": form_id, "interaction_id": interaction_id,
                               "answers": answers, **more})


async def count(center, model):
    async with center.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def actions(center):
    async with center.sessions() as session:
        return [(a.action, a.actor) for a in await session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("quality%")).order_by(AuditEntry.id))]


async def test_a_supervisor_scores_a_recorded_call_and_the_agent_sees_and_acknowledges_it(center):
    sue, amy, bob, ids = await people(center)
    form = await new_form(center, sue)
    assert form["total_weight"] == 100 and form["version"] == 1
    call = await add_call(center, "call-1", ids["amy"])
    status, done = await evaluate(center, sue, form["id"], call,
                                  {"greet": "yes", "verify": "yes", "offer": "no"},
                                  comment="Good, but offer the follow-up")
    assert status == 201, done
    assert (done["score"], done["earned"], done["applicable"]) == (80, 80, 100)
    assert done["status"] == "submitted" and done["agent_name"] == "Amy"

    status, mine = await request(center, "GET", "/api/v1/quality/evaluations", amy)
    assert status == 200 and [e["id"] for e in mine["evaluations"]] == [done["id"]]
    assert (await request(center, "GET", "/api/v1/quality/evaluations", bob))[1] == \
        {"evaluations": []}
    assert (await request(center, "GET", f"/api/v1/quality/evaluations/{done['id']}",
                          bob))[0] == 404
    status, acked = await request(
        center, "POST", f"/api/v1/quality/evaluations/{done['id']}/acknowledge", amy,
        json={"comment": "Will do"})
    assert status == 200 and acked["status"] == "acknowledged"
    assert acked["agent_comment"] == "Will do"
    status, again = await request(
        center, "POST", f"/api/v1/quality/evaluations/{done['id']}/dispute", amy,
        json={"reason": "changed my mind"})
    assert status == 409 and again["error"]["code"] == "conflict"
    assert await actions(center) == [("quality_form_create", "sue"), ("quality_evaluate", "sue"),
                                     ("quality_acknowledge", "amy")]


async def test_not_applicable_answers_score_on_the_applicable_weight_only(center):
    sue, _, _, ids = await people(center)
    form = await new_form(center, sue)
    call = await add_call(center, "call-1", ids["amy"])
    # 50/30/20 with the 30 not applicable and the 20 "no": 50 of 70.
    status, done = await evaluate(center, sue, form["id"], call, NO_ON_30)
    assert status == 201 and (done["score"], done["applicable"]) == (71.43, 70)
    other = await add_call(center, "call-2", ids["amy"])
    status, failed = await evaluate(center, sue, form["id"], other,
                                    {"greet": "yes", "verify": "no", "offer": "yes"})
    assert status == 201 and failed["score"] == 0 and failed["critical_failed"] is True


async def test_a_dispute_is_resolved_by_a_supervisor_who_may_revise_the_score(center):
    sue, amy, _, ids = await people(center)
    form = await new_form(center, sue)
    call = await add_call(center, "call-1", ids["amy"])
    _, done = await evaluate(center, sue, form["id"], call,
                             {"greet": "no", "verify": "yes", "offer": "yes"})
    assert done["score"] == 50
    path = f"/api/v1/quality/evaluations/{done['id']}"
    status, body = await request(center, "POST", f"{path}/dispute", amy, json={"reason": ""})
    assert status == 400  # a dispute says why
    status, disputed = await request(center, "POST", f"{path}/dispute", amy,
                                     json={"reason": "I greeted her by name at 0:03"})
    assert status == 200 and disputed["status"] == "disputed"
    status, body = await request(center, "POST", f"{path}/resolve", amy,
                                 json={"outcome": "upheld"})
    assert status == 403
    status, body = await request(center, "POST", f"{path}/resolve", sue,
                                 json={"outcome": "revised", "note": "Agreed"})
    assert status == 400 and "new answers" in body["error"]["message"]
    status, resolved = await request(
        center, "POST", f"{path}/resolve", sue,
        json={"outcome": "revised", "note": "Agreed", "answers": {**ANSWERS, "offer": "yes"}})
    assert status == 200, resolved
    assert (resolved["status"], resolved["resolution"], resolved["score"],
            resolved["original_score"]) == ("resolved", "revised", 100, 50)
    status, body = await request(center, "POST", f"{path}/resolve", sue,
                                 json={"outcome": "upheld"})
    assert status == 409
    assert [a for a, _ in await actions(center)][-2:] == ["quality_dispute", "quality_resolve"]


async def test_acknowledge_and_dispute_at_once_exactly_one_wins(center):
    sue, amy, _, ids = await people(center)
    form = await new_form(center, sue)
    for round_ in range(5):
        call = await add_call(center, f"call-{round_}", ids["amy"])
        _, done = await evaluate(center, sue, form["id"], call, ANSWERS)
        path = f"/api/v1/quality/evaluations/{done['id']}"
        answers = await asyncio.gather(
            request(center, "POST", f"{path}/acknowledge", amy, json={}),
            request(center, "POST", f"{path}/dispute", amy, json={"reason": "no"}),
            request(center, "POST", f"{path}/acknowledge", amy, json={}))
        assert sorted(status for status, _ in answers) == [200, 409, 409], answers
        winner = next(body for status, body in answers if status == 200)
        _, now = await request(center, "GET", path, amy)
        assert now["status"] == winner["status"]
    audited = [a for a, _ in await actions(center) if a in ("quality_acknowledge",
                                                            "quality_dispute")]
    assert len(audited) == 5  # only the winners wrote an entry


async def test_editing_a_form_leaves_the_scores_already_given(center):
    sue, _, _, ids = await people(center)
    form = await new_form(center, sue)
    call = await add_call(center, "call-1", ids["amy"])
    _, done = await evaluate(center, sue, form["id"], call, ANSWERS)
    changed = copy.deepcopy(FORM)
    changed["sections"][0]["questions"][0]["weight"] = 10
    status, edited = await request(center, "PUT", f"/api/v1/quality/forms/{form['id']}", sue,
                                   json=changed)
    assert status == 200 and edited["version"] == 2 and edited["total_weight"] == 60
    _, kept = await request(center, "GET", f"/api/v1/quality/evaluations/{done['id']}", sue)
    assert kept["form"]["version"] == 1 and kept["score"] == done["score"]
    assert kept["form"]["sections"][0]["questions"][0]["weight"] == 50


async def test_bad_input_gets_a_clear_error_and_stores_nothing(center):
    sue, _, _, ids = await people(center)
    bad = copy.deepcopy(FORM)
    bad["sections"][1]["questions"][1]["weight"] = 0
    status, body = await request(center, "POST", "/api/v1/quality/forms", sue, json=bad)
    assert status == 400 and "weight" in body["error"]["message"]
    status, body = await request(center, "POST", "/api/v1/quality/forms", sue, data=b"{nope")
    assert status == 400 and body["error"]["code"] == "invalid"
    assert await count(center, QualityForm) == 0
    form = await new_form(center, sue)
    silent = await add_call(center, "call-silent", ids["amy"], recording=None)
    status, body = await evaluate(center, sue, form["id"], silent, ANSWERS)
    assert status == 400 and "no recording" in body["error"]["message"]
    call = await add_call(center, "call-1", ids["amy"])
    for answers, message in (({"greet": "yes"}, "not answered"),
                             ({**ANSWERS, "greet": "perhaps"}, "answers"),
                             ({**ANSWERS, "extra": "yes"}, "no question 'extra'")):
        status, body = await evaluate(center, sue, form["id"], call, answers)
        assert status == 400 and message in body["error"]["message"], body
    assert (await evaluate(center, sue, 999, call, ANSWERS))[0] == 404
    assert (await evaluate(center, sue, form["id"], 999, ANSWERS))[0] == 404
    assert await count(center, QualityEvaluation) == 0
    assert (await evaluate(center, sue, form["id"], call, ANSWERS))[0] == 201
    status, body = await evaluate(center, sue, form["id"], call, ANSWERS)
    assert status == 409 and "already" in body["error"]["message"]
    assert await count(center, QualityEvaluation) == 1
    for path in ("/api/v1/quality/evaluations/abc", "/api/v1/quality/forms/0",
                 "/api/v1/quality/evaluations/99999999999"):
        assert (await request(center, "GET", path, sue))[0] == 404


async def test_each_role_reaches_only_its_part(center):
    sue, amy, _, ids = await people(center)
    admin = await center.login_token("ada", "admin")
    form = await new_form(center, admin)
    call = await add_call(center, "call-1", ids["amy"])
    assert (await request(center, "POST", "/api/v1/quality/forms", amy, json=FORM))[0] == 403
    assert (await request(center, "GET", "/api/v1/quality/forms", amy))[0] == 403
    assert (await evaluate(center, amy, form["id"], call, ANSWERS))[0] == 403
    assert (await request(center, "GET", "/api/v1/quality/sample", amy))[0] == 403
    own = await add_call(center, "call-sue", ids["sue"])
    status, body = await evaluate(center, sue, form["id"], own, ANSWERS)
    assert status == 403 and "own call" in body["error"]["message"]
    _, done = await evaluate(center, sue, form["id"], call, ANSWERS)
    path = f"/api/v1/quality/evaluations/{done['id']}"
    assert (await request(center, "POST", f"{path}/acknowledge", sue, json={}))[0] == 403
    telephony = await center.telephony_token()
    assert (await request(center, "GET", path, telephony))[0] == 403
    assert (await request(center, "GET", path))[0] == 401


async def test_an_evaluation_outlives_its_call_record_deleted_by_retention(center, tmp_path):
    import datetime as dt

    from core.keys import Keys
    from core.redisconn import client_from_url
    from core.timers import Timers
    from privacy.retention import Policy, Retention

    sue, amy, _, ids = await people(center)
    form = await new_form(center, sue)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    call = await add_call(center, "call-old", ids["amy"], at=old)
    _, done = await evaluate(center, sue, form["id"], call, ANSWERS)
    redis = client_from_url(center.settings.redis_url)
    try:
        retention = Retention(center.sessions, Timers(redis, Keys("unused").timers),
                              Policy(calls_days=365), tmp_path)
        report = await retention.sweep(dt.datetime.now(dt.UTC))
    finally:
        await redis.aclose()
    assert report.interactions == 1
    status, kept = await request(center, "GET", f"/api/v1/quality/evaluations/{done['id']}", amy)
    assert status == 200 and kept["interaction_id"] is None and kept["score"] == 100
    span = f"from={old.date().isoformat()}&to={old.date().isoformat()}&by=agent"
    _, scores = await request(center, "GET", f"/api/v1/quality/stats?{span}", sue)
    assert [r["average"] for r in scores["rows"]] == [100]
    assert (await request(center, "GET", f"/api/v1/quality/calls/{call}", sue))[0] == 404


async def test_agents_reach_no_manager_endpoint_and_no_other_agents_evaluation(center):
    sue, amy, bob, ids = await people(center)
    form = await new_form(center, sue)
    call = await add_call(center, "call-1", ids["amy"])
    _, done = await evaluate(center, sue, form["id"], call, ANSWERS)
    evaluation = f"/api/v1/quality/evaluations/{done['id']}"
    for method, path, body in (
            ("GET", f"/api/v1/quality/forms/{form['id']}", None),
            ("PUT", f"/api/v1/quality/forms/{form['id']}", FORM),
            ("POST", f"{evaluation}/resolve", {"outcome": "upheld", "note": "x"}),
            ("GET", "/api/v1/quality/sample", None)):
        status, answer = await request(center, method, path, amy, json=body)
        assert status == 403, (method, path, answer)
    for method, path, body in (  # amy's evaluation and call, asked by bob
            ("GET", evaluation, None),
            ("POST", f"{evaluation}/acknowledge", {}),
            ("POST", f"{evaluation}/dispute", {"reason": "not me"}),
            ("GET", f"/api/v1/quality/calls/{call}", None),
            ("POST", f"/api/v1/quality/calls/{call}/recording-ticket", {})):
        status, answer = await request(center, method, path, bob, json=body)
        assert status in (403, 404), (method, path, answer)
    today = dt.date.today()
    stats = (f"/api/v1/quality/stats?from={today - dt.timedelta(days=60)}"
             f"&to={today + dt.timedelta(days=60)}&by=agent&interval=month")
    status, body = await request(center, "GET", stats, sue)
    assert status == 200 and {r["agent_id"] for r in body["rows"]} == {ids["amy"]}, body
    status, body = await request(center, "GET", stats, bob)
    assert status == 200 and body["rows"] == [], body  # amy's scores are not bob's to see
    assert (await request(center, "GET", evaluation, amy))[0] == 200  # amy's own
