"""Reports from a crafted day of calls driven through the real call path.

Every figure is computed by hand below. The center is in Asia/Shanghai (UTC+8); a
threshold of 20 s, short abandons under 5 s. Local times of day D = 2026-03-10:

  c1 07:30:00 answered 07:30:08 (8 s, within)   ended 07:33:08 talk 180  (UTC: day D-1)
              wrap-up done 07:33:28 (20 s)
  c2 09:05:00 answered 09:05:30 (30 s, beyond)  ended 09:07:30 talk 120  gold, CSAT 5
              wrap-up done 09:08:00 (30 s); Amy not ready (lunch) 09:08:00-09:12:40
  c3 09:10:00 abandoned 09:10:03 (3 s: short)
  c4 09:12:00 abandoned 09:12:40 (40 s: long)
  c5 09:14:50 answered 09:15:05 (15 s, within)  ended 09:20:05 talk 300  (spans 09:15)
              on hold 09:16:00-09:16:30 (30 s of the 300)
  c6 10:00:00 answered 10:00:10 by amy (10 s, within), transferred 10:02:00 to the queue,
              answered 10:02:50 by bob, ended 10:05:00 talk 130, CSAT 2
  c7 23:59:50 answered 00:00:15 (25 s, beyond)  ended 00:02:00 talk 105  (spans midnight)

A call counts in the period it was offered in; a transferred call once, with its
first answer. Other wrap-ups are done at the call's end (0 s); Amy's wrap-up of c6
runs from its transfer until her timer ends it at 11:30:00 (no wrap-up on the record:
the call was Bob's by then). Amy is available from 07:00:00; Bob from 10:00:10, not
ready (training) from 10:05:00 to the end of the day.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select

from core import db
from core.appkeys import CALLS, REDIS, ROUTER, WALLBOARD
from core.models import AgentStateChange, AuditEntry, ReportAgentState, ReportInterval
from tests.conftest import make_settings
from tests.rest import cli, request
from tests.waits import eventually

ZONE = ZoneInfo("Asia/Shanghai")
D = dt.date(2026, 3, 10)
GOLD_ANI = "+8613800000101"


# The clock jumps hours between calls: consoles must not look away (agent_away_s), nor
# rings or wrap-ups time out while a call is being worked.
@pytest.fixture
def settings(any_database_url, redis_url, redis_prefix, tmp_path):
    return make_settings(any_database_url, redis_url, redis_prefix, tmp_path,
                         center_timezone="Asia/Shanghai", ring_timeout_s=3600.0,
                         wrap_up_s=3600.0, agent_away_s=10.0**7)


def at(hhmmss: str, days: int = 0) -> float:
    clock = dt.time.fromisoformat(hhmmss)
    return dt.datetime.combine(D + dt.timedelta(days=days), clock, ZONE).timestamp()


def set_clock(center, moment: float) -> None:
    center.server.app[CALLS].clock = lambda: moment


async def answered(center, ivr, agent, call_id, ani, offered, answer, end,
                   wrapped=None, hold=()) -> None:
    set_clock(center, at(*offered))
    await ivr.offer(call_id, ani)
    await agent.inbox.expect("screen_pop", call_id=call_id)
    set_clock(center, at(*answer))
    await ivr.event("call.answered", call_id, agent_id=agent.agent_id)
    for moment, event in zip(hold, ("call.held", "call.resumed"), strict=False):
        set_clock(center, at(moment))
        await ivr.event(event, call_id)  # acknowledged once the call path applied it
    set_clock(center, at(*end))
    await ivr.event("call.ended", call_id)
    await wrap_up(agent, call_id, center, wrapped)


async def wrap_up(agent, call_id: str, center=None, wrapped=None) -> None:
    await agent.inbox.expect("call.ended", call_id=call_id)
    if wrapped is not None:
        set_clock(center, at(wrapped))
    reply = await agent.request("wrapup.done", call_id=call_id, disposition="resolved")
    assert reply["type"] == "ack", reply


async def abandoned(center, ivr, call_id, ani, offered, end, days: int = 0) -> None:
    set_clock(center, at(offered, days))
    await ivr.offer(call_id, ani)
    await ivr.inbox.expect("route.queued", call_id=call_id)
    set_clock(center, at(end, days))
    await ivr.event("call.ended", call_id, cause="caller_hangup")


async def crafted_day(center) -> tuple:
    await center.add_customer("gold-1", "Gold Person", GOLD_ANI, tier="gold")
    amy, bob = await center.agent("amy"), await center.agent("bob")
    set_clock(center, at("07:00:00"))
    await amy.available()
    ivr = await center.ivr()
    await answered(center, ivr, amy, "c1", "+8613800000001", ("07:30:00",), ("07:30:08",),
                   ("07:33:08",), wrapped="07:33:28")
    await answered(center, ivr, amy, "c2", GOLD_ANI, ("09:05:00",), ("09:05:30",),
                   ("09:07:30",), wrapped="09:08:00")
    await ivr.event("survey.result", "c2", score=5)
    await amy.not_ready("lunch")
    await abandoned(center, ivr, "c3", "+8613800000003", "09:10:00", "09:10:03")
    await abandoned(center, ivr, "c4", "+8613800000004", "09:12:00", "09:12:40")
    await amy.available()
    await answered(center, ivr, amy, "c5", "+8613800000005", ("09:14:50",), ("09:15:05",),
                   ("09:20:05",), hold=("09:16:00", "09:16:30"))
    await transferred_call(center, ivr, amy, bob)
    await answered(center, ivr, amy, "c7", "+8613800000007", ("23:59:50",), ("00:00:15", 1),
                   ("00:02:00", 1))
    return amy, bob


async def transferred_call(center, ivr, amy, bob) -> None:
    set_clock(center, at("10:00:00"))
    await ivr.offer("c6", "+8613800000006")
    await amy.inbox.expect("screen_pop", call_id="c6")
    set_clock(center, at("10:00:10"))
    await ivr.event("call.answered", "c6", agent_id=amy.agent_id)
    await bob.available()
    set_clock(center, at("10:02:00"))
    await ivr.event("call.transferred", "c6", to_queue="default")
    await bob.inbox.expect("screen_pop", call_id="c6")
    set_clock(center, at("10:02:50"))
    await ivr.event("call.answered", "c6", agent_id=bob.agent_id)
    set_clock(center, at("10:05:00"))
    await ivr.event("call.ended", "c6")
    await wrap_up(bob, "c6")
    await bob.not_ready("training")
    await ivr.event("survey.result", "c6", score=2)
    # Amy cannot end a wrap-up of a call now on another agent: her wrap-up timer does.
    set_clock(center, at("11:30:00"))
    await until_available(center, amy.agent_id)


async def until_available(center, agent_id: int) -> None:
    store = center.server.app[ROUTER].store
    async with asyncio.timeout(30):
        while (await store.agent(agent_id)).get("state") != "available":
            await asyncio.sleep(0.05)


DAY_D = {"offered": 7, "answered": 5, "answered_within": 3, "answered_beyond": 2,
         "abandoned": 1, "abandoned_short": 1, "failed": 0,
         "service_level": round(3 / 7, 4), "asa_s": 17.6, "longest_wait_s": 40.0,
         # talk 180+120+300+130+105 less c5's 30 s on hold, over 5 calls; hold 30 / 5
         "avg_talk_s": 161.0, "avg_hold_s": 6.0, "avg_wrap_up_s": 10.0, "aht_s": 177.0,
         "transfers": 1,
         "csat_responses": 2, "csat_average": 3.5,
         "csat_satisfied": 0.5, "abandon_rate": round(2 / 7, 4)}


# Amy on day D: available 07:00:00-07:30:00, 07:33:28-09:05:00, 09:12:40-09:14:50,
# 09:20:05-10:00:00 and 11:30:00-23:59:50; ringing 8+30+15+10+10 (c7 until midnight);
# on a call 180+120+300+110; wrap-up 20+30+0+5280 (c6, transfer to timer); lunch 280.
AMY_AVAILABLE = 1800 + 5492 + 130 + 2395 + 44990
AMY_WORKING = 73 + 710 + 5330
AMY_D = {"handled": 5, "transfers_made": 1, "avg_talk_s": 168.75, "avg_hold_s": 7.5,
         "avg_wrap_up_s": 12.5,
         "aht_s": 188.75, "csat_responses": 1, "csat_average": 5.0,
         "signed_in_s": 17 * 3600.0, "available_s": float(AMY_AVAILABLE),
         "on_call_s": 783.0, "wrap_up_s": 5330.0, "not_ready_s": 280.0,
         "not_ready_by_reason": {"lunch": 280.0},
         "occupancy": round(AMY_WORKING / (AMY_WORKING + AMY_AVAILABLE), 4)}
# Bob: available 10:00:10-10:02:00, ringing 50, on c6 130, wrap-up 0, then training.
BOB_D = {"handled": 1, "transfers_made": 0, "avg_talk_s": 130.0, "avg_wrap_up_s": 0.0,
         "aht_s": 130.0, "csat_responses": 1, "csat_average": 2.0,
         "signed_in_s": 50390.0, "available_s": 110.0, "on_call_s": 180.0, "wrap_up_s": 0.0,
         "not_ready_s": 50100.0, "not_ready_by_reason": {"training": 50100.0},
         "occupancy": round(180 / 290, 4)}


async def agent_log_stored(center, last: float) -> None:
    """The agent-log consumer stores state changes about once a second: wait for the last."""
    async def stored() -> bool:
        async with center.sessions() as session:
            newest = await session.scalar(select(func.max(AgentStateChange.at)))
        return newest is not None and newest.timestamp() >= last
    await eventually(stored, timeout=60, what="the agent state log in the database")


def figures(row: dict, names) -> dict:
    return {name: row[name] for name in names}


async def report(center, token, scope: str, **query) -> dict:
    status, body = await request(center, "GET", f"/api/v1/reports/{scope}", token,
                                 params=query)
    assert status == 200, body
    return body


async def test_a_crafted_day_gives_the_figures_worked_out_by_hand(center):
    await crafted_day(center)
    token = await center.login_token("sue")

    day = await report(center, token, "center", **{"from": "2026-03-10", "to": "2026-03-10"})
    assert [r["period"] for r in day["rows"]] == ["2026-03-10"]
    assert figures(day["rows"][0], DAY_D) == DAY_D
    assert day["timezone"] == "Asia/Shanghai"

    quarter = await report(center, token, "center", interval="15m",
                           **{"from": "2026-03-10", "to": "2026-03-10"})
    by_period = {r["period"]: r for r in quarter["rows"]}
    assert sorted(by_period) == ["2026-03-10T07:30", "2026-03-10T09:00", "2026-03-10T10:00",
                                 "2026-03-10T23:45"]
    nine = by_period["2026-03-10T09:00"]  # c2, c3, c4 and c5 (answered after 09:15)
    assert figures(nine, ["offered", "answered", "answered_within", "abandoned",
                          "abandoned_short", "service_level", "longest_wait_s"]) == {
        "offered": 4, "answered": 2, "answered_within": 1, "abandoned": 1,
        "abandoned_short": 1, "service_level": 0.25, "longest_wait_s": 40.0}
    late = by_period["2026-03-10T23:45"]  # c7, answered after midnight
    assert (late["offered"], late["answered"], late["answered_within"]) == (1, 1, 0)
    assert by_period["2026-03-10T10:00"]["transfers"] == 1

    tiers = await report(center, token, "tiers", **{"from": "2026-03-10", "to": "2026-03-10"})
    by_tier = {r["tier"]: r for r in tiers["rows"]}
    assert figures(by_tier["gold"], ["offered", "answered", "answered_within",
                                     "service_level", "csat_average"]) == {
        "offered": 1, "answered": 1, "answered_within": 0, "service_level": 0.0,
        "csat_average": 5.0}
    assert by_tier["standard"]["service_level"] == 0.5  # 3 within of 4 answered + 2 abandoned

    # The same calls by UTC day: c1 (07:30 in Shanghai) was 23:30 UTC the day before.
    utc = await report(center, token, "center", timezone="UTC",
                       **{"from": "2026-03-09", "to": "2026-03-10"})
    by_day = {r["period"]: r for r in utc["rows"]}
    assert (by_day["2026-03-09"]["offered"], by_day["2026-03-09"]["service_level"]) == (1, 1.0)
    assert (by_day["2026-03-10"]["offered"], by_day["2026-03-10"]["service_level"]) == (
        6, round(2 / 6, 4))

    await agent_log_stored(center, at("00:02:00", 1))
    agents = await report(center, token, "agents", **{"from": "2026-03-10", "to": "2026-03-10"})
    by_name = {r["name"]: r for r in agents["rows"]}
    assert figures(by_name["Amy"], AMY_D) == AMY_D
    assert figures(by_name["Bob"], BOB_D) == BOB_D

    # The wallboard's day D, read at its last second, agrees to the call.
    set_clock(center, at("23:59:59"))
    board = await center.server.app[WALLBOARD].snapshot()
    assert board["day"] == "2026-03-10"
    totals = board["totals"]
    assert (totals["offered"], totals["answered"], totals["answered_sl"], totals["abandoned"],
            totals["abandoned_short"], totals["sl"], totals["asa_s"], totals["abandon_rate"]) \
        == (7, 5, 3, 1, 1, DAY_D["service_level"], DAY_D["asa_s"], DAY_D["abandon_rate"])
    board_nine = next(r for r in board["intervals"] if r["start"] == "09:00")
    assert (board_nine["offered"], board_nine["sl"]) == (4, 0.25)

    # Redis holds no figure a report reads.
    redis = center.server.app[REDIS]
    keys = [k async for k in redis.scan_iter(f"{center.settings.redis_prefix}:*")]
    await redis.delete(*keys)
    again = await report(center, token, "center", **{"from": "2026-03-10", "to": "2026-03-10"})
    assert again["rows"] == day["rows"]

    # Rollups dropped and rebuilt from the records by the command give the same report.
    async with db.session_scope(center.sessions) as session:
        await session.execute(delete(ReportInterval))
        await session.execute(delete(ReportAgentState))
    code, _out, err = await cli(center, "report", "rebuild")
    assert code == 0, err
    rebuilt = await report(center, token, "center", **{"from": "2026-03-10", "to": "2026-03-10"})
    assert rebuilt["rows"] == day["rows"]

    await cdr_of_the_day(center, token)


async def cdr_of_the_day(center, token) -> None:
    records, cursor, pages = [], None, 0
    while True:
        params = {"from": "2026-03-09", "to": "2026-03-11", "limit": "3"}
        if cursor:
            params["cursor"] = cursor
        status, body = await request(center, "GET", "/api/v1/cdr", token, params=params)
        assert status == 200, body
        records += body["records"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [r["call_id"] for r in records] == ["c1", "c2", "c3", "c4", "c5", "c6", "c7"]
    assert pages == 3
    c6 = records[5]
    assert (c6["outcome"], c6["transfers"], c6["wait_s"]) == ("answered", 1, 10.0)
    assert [leg["agent_id"] for leg in c6["legs"]] == [c6["legs"][0]["agent_id"],
                                                       c6["agent_id"]]
    assert c6["legs"][0]["agent_id"] != c6["agent_id"]
    assert (records[2]["outcome"], records[2]["wait_s"]) == ("abandoned", 3.0)

    status, body = await request(center, "GET", "/api/v1/cdr", token,
                                 params={"from": "2026-03-10", "to": "2026-03-10",
                                         "format": "csv"})
    assert status == 200
    text = body.decode()
    # A number starting with "+" would be read as a formula by a spreadsheet.
    assert f"'{GOLD_ANI}" in text and f",{GOLD_ANI}" not in text
    async with center.sessions() as session:
        actions = set(await session.scalars(select(AuditEntry.action)))
    assert {"report", "cdr"} <= actions


async def one_answered_call(center) -> None:
    await center.add_customer("=cmd", "=HYPERLINK(\"x\")", "+8613800000199")
    amy = await center.agent("amy")
    set_clock(center, at("09:00:00"))
    await amy.available()
    ivr = await center.ivr()
    await answered(center, ivr, amy, "=1+1", "+8613800000199", ("09:00:00",), ("09:00:04",),
                   ("09:01:00",))


@pytest.mark.parametrize("role, status", [("agent", 403), ("supervisor", 200), ("admin", 200)])
async def test_reports_and_call_records_are_for_supervisors_and_admins(center, role, status):
    token = await center.login_token("someone", role=role)
    span = {"from": "2026-03-10", "to": "2026-03-10"}
    for path in ("/api/v1/reports/center", "/api/v1/reports/agents", "/api/v1/cdr"):
        got, body = await request(center, "GET", path, token, params=span)
        assert got == status, (path, body)
        got, _ = await request(center, "GET", path, None, params=span)
        assert got == 401
    got, _ = await request(center, "GET", "/api/v1/reports/center",
                           await center.telephony_token(), params=span)
    assert got == 403


@pytest.mark.parametrize("query, message", [
    ({"from": "2026-03-11", "to": "2026-03-10"}, "to must be after from"),
    ({"from": "2025-01-01", "to": "2026-03-10"}, "at most 400 days"),
    ({"from": "2026-03-10", "to": "2026-03-10", "interval": "fortnight"}, "unknown interval"),
    ({"from": "2026-03-10", "to": "2026-03-10", "queue": "nope"}, "unknown queue"),
    ({"from": "yesterday", "to": "2026-03-10"}, "from must be an ISO 8601"),
    ({"to": "2026-03-10"}, "from and to are required"),
    ({"from": "2026-03-10", "to": "2026-03-10", "format": "xml"}, "unknown format"),
    ({"from": "2026-03-10", "to": "2026-03-10", "timezone": "Mars/Olympus"},
     "unknown time zone"),
])
async def test_bad_report_parameters_are_answered_400_with_a_clear_message(center, query,
                                                                          message):
    token = await center.login_token("sue")
    status, body = await request(center, "GET", "/api/v1/reports/queues", token, params=query)
    assert status == 400, body
    assert body["error"]["code"] == "invalid" and message in body["error"]["message"], body


async def test_a_call_record_cursor_not_given_by_the_api_is_a_400(center):
    token = await center.login_token("sue")
    for cursor in ("garbage", "bm90IGEgY3Vyc29y", ""):
        params = {"from": "2026-03-10", "to": "2026-03-10", "cursor": cursor or "=="}
        status, body = await request(center, "GET", "/api/v1/cdr", token, params=params)
        assert status == 400 and "cursor" in body["error"]["message"], body
    status, body = await request(center, "GET", "/api/v1/cdr", token,
                                 params={"from": "2026-03-10", "to": "2026-03-10",
                                         "limit": "0"})
    assert status == 400 and "limit" in body["error"]["message"]


async def test_csv_exports_neutralise_formula_like_cells(center, tmp_path):
    await one_answered_call(center)
    token = await center.login_token("sue")
    status, body = await request(center, "GET", "/api/v1/reports/queues", token,
                                 headers={"Accept": "text/csv"},
                                 params={"from": "2026-03-10", "to": "2026-03-10"})
    assert status == 200
    lines = body.decode().splitlines()
    assert lines[0].startswith("period,queue,offered,answered")
    assert lines[1].startswith("2026-03-10,default,1,1,1,0,")

    out = tmp_path / "cdr.csv"
    code, stdout, err = await cli(center, "cdr", "export", "--from", "2026-03-10", "--to",
                                  "2026-03-10", "--output", str(out),
                                  env={"CALLCENTER_CENTER_TIMEZONE": "Asia/Shanghai"})
    assert code == 0, err
    assert "exported 1 call records" in stdout and "100%" in err  # the progress bar
    row = out.read_text().splitlines()[1]
    assert row.startswith("'=1+1,") and ",'=cmd," in row and ",'+8613800000199," in row

    lines = tmp_path / "cdr.jsonl"  # JSON is no spreadsheet: values as they are
    code, stdout, err = await cli(center, "cdr", "export", "--from", "2026-03-10", "--to",
                                  "2026-03-10", "--format", "jsonl", "--output", str(lines),
                                  env={"CALLCENTER_CENTER_TIMEZONE": "Asia/Shanghai"})
    assert code == 0, err
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [(r["call_id"], r["ani"], r["outcome"]) for r in records] == [
        ("=1+1", "+8613800000199", "answered")]

    code, stdout, err = await cli(center, "report", "show", "center", "--from", "2026-03-10",
                                  "--to", "2026-03-10", "--format", "csv",
                                  env={"CALLCENTER_CENTER_TIMEZONE": "Asia/Shanghai"})
    assert code == 0, err
    assert stdout.splitlines()[1].startswith("2026-03-10,center,1,1,1,0,0,0,0,1.0,")
    async with center.sessions() as session:
        rows = (await session.execute(select(AuditEntry.actor, AuditEntry.action))).all()
    assert {("sue", "report")} <= set(rows)
    assert {a for actor, a in rows if actor.startswith("cli:")} == {"report", "cdr"}

    code, _, err = await cli(center, "report", "show", "center", "--from", "2026-03-10",
                             "--to", "2026-03-01")
    assert code == 1 and "to must be after from" in err


async def test_a_replayed_event_adds_nothing_and_rollups_equal_a_rebuild(settings, sessions):
    from sqlalchemy.ext.asyncio import AsyncEngine

    from core.writer import RecordWriter
    from cti import records
    from reports.rollup import Rollups

    engine: AsyncEngine = sessions.kw["bind"]
    writer = RecordWriter(engine, hooks=[Rollups()])
    offered = at("09:00:00")
    ended = [records.event_op("e1", "r1", "call.ended"),
             records.interaction_op("r1", ended_at=records.at(offered + 30), wait_s=30.0,
                                    outcome="abandoned", end_cause="caller_hangup")]
    await writer.write(records.offer_ops(
        event_id="o1", call_id="r1", queue="default", ani="+86", dnis="", customer_id=None,
        tier="standard", ivr={}, offered_at=offered, node_id="n", integration="pbx"))
    await writer.write(ended)
    await writer.write(ended)  # the same event again, as a replay writes it

    async def counts() -> list[tuple]:
        async with sessions() as session:
            return (await session.execute(select(
                ReportInterval.offered, ReportInterval.abandoned, ReportInterval.wait_max,
                ReportInterval.wait_sum))).all()

    assert await counts() == [(1, 1, 30.0, 0.0)]
    async with engine.begin() as conn:
        await conn.run_sync(Rollups().rebuild, records.at(offered - 3600),
                            records.at(offered + 3600))
    assert await counts() == [(1, 1, 30.0, 0.0)]


async def test_handle_time_is_talk_without_hold_plus_hold_plus_wrap_up(settings, sessions):
    """One call: 100 s of talk of which 30 s on hold, then 10 s of wrap-up."""
    from core.servicelevel import DEFAULT
    from core.writer import RecordWriter
    from cti import records
    from reports.agents import agent_report
    from reports.periods import Interval, Range
    from reports.queries import Scope, interval_report
    from reports.rollup import Rollups

    engine = sessions.kw["bind"]
    writer = RecordWriter(engine, hooks=[Rollups()])
    offered = at("09:00:00")
    await writer.write(records.offer_ops(
        event_id="o1", call_id="h1", queue="default", ani="+86", dnis="", customer_id=None,
        tier="standard", ivr={}, offered_at=offered, node_id="n", integration="pbx"))
    await writer.write([records.interaction_op(
        "h1", answered_at=records.at(offered + 5), wait_s=5.0, agent_id=7, agent_ids=[7])])
    await writer.write([records.event_op("e1", "h1", "call.ended"), records.interaction_op(
        "h1", ended_at=records.at(offered + 105), outcome="answered", end_cause="normal",
        talk_s=100.0, hold_s=30.0, hold_count=2)])
    await writer.write([records.interaction_op("h1", wrap_up_s=10.0, disposition="resolved")])

    rng = Range(records.at(offered - 60), records.at(offered + 3600), Interval.day, ZONE)
    handle = {"avg_talk_s": 70.0, "avg_hold_s": 30.0, "avg_wrap_up_s": 10.0, "aht_s": 110.0}
    async with engine.connect() as conn:
        center = await conn.run_sync(interval_report, rng, Scope.center, DEFAULT)
        agents = await conn.run_sync(agent_report, rng)
    assert figures(center["rows"][0], handle) == handle
    assert figures(agents["rows"][0], handle) == handle
